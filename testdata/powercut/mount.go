package powercut

import (
	"log"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// cacheFor is how long the kernel may cache names and attributes: the
// kernel is the only way in, so what it caches stays true.
const cacheFor = time.Hour

// mount is one mount of the filesystem (one boot): the live namespace and
// the files' unsynced bytes, over the durable state. Its operations run
// under server.mu; those not here answer ENOSYS, which the kernel takes as
// "not supported" (links, symlinks, extended attributes, locks: flock and
// fcntl locks are then kept by the kernel itself).
type mount struct {
	fuse.RawFileSystem
	s      *server
	server *fuse.Server
	cut    bool                       // the power is off: syncs make nothing durable
	nodes  map[uint64]*node           // by inode number, which is the FUSE node id
	dirs   map[uint64][]fuse.DirEntry // listings of open directories, by handle
	// journal holds the journaled entries changed since the last sync, by
	// directory.
	journal map[*node]map[string]bool
	lastFh  uint64
}

// node is a file or directory as the running system sees it.
type node struct {
	d     *inode
	name  string // the name it was created or last renamed under, for FailSyncs
	nlink int    // names in the live namespace
	open  int    // kernel file handles
	mtime time.Time

	// A file's bytes: dirty pages over d's durable bytes (see pages.go).
	size  int64
	valid int64
	dirty map[int64][]byte

	entries map[string]*node // a directory's live entries
}

// newMount builds a boot's live namespace from the durable one.
func newMount(s *server) *mount {
	m := &mount{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		s:             s,
		nodes:         map[uint64]*node{},
		dirs:          map[uint64][]fuse.DirEntry{},
		journal:       map[*node]map[string]bool{},
	}
	m.add(s.root)
	return m
}

func (m *mount) add(d *inode) *node {
	if n := m.nodes[d.ino]; n != nil {
		n.nlink++ // a file durably under two names: a rename synced on one side only
		return n
	}
	n := &node{d: d, nlink: 1, mtime: d.mtime, size: d.size, valid: d.size}
	m.nodes[d.ino] = n
	if d.isDir() {
		n.entries = map[string]*node{}
		for _, name := range sortedNames(d.entries) {
			c := d.entries[name]
			if c.isDir() && m.nodes[c.ino] != nil {
				// A directory durably in two places (or in itself):
				// like fsck, keep the first.
				delete(d.entries, name)
				continue
			}
			n.entries[name] = m.add(c)
			n.entries[name].name = name
		}
	}
	return n
}

func (m *mount) String() string { return "powercut" }

func (m *mount) lock() func() {
	m.s.mu.Lock()
	return m.s.mu.Unlock
}

func (m *mount) node(id uint64) (*node, fuse.Status) {
	n := m.nodes[id]
	if n == nil {
		return nil, fuse.Status(syscall.ESTALE)
	}
	return n, fuse.OK
}

func (m *mount) dir(id uint64) (*node, fuse.Status) {
	n, st := m.node(id)
	if st == fuse.OK && !n.d.isDir() {
		return nil, fuse.ENOTDIR
	}
	return n, st
}

func (m *mount) file(id uint64) (*node, fuse.Status) {
	n, st := m.node(id)
	if st == fuse.OK && n.d.isDir() {
		return nil, fuse.Status(syscall.EISDIR)
	}
	return n, st
}

func (m *mount) attr(n *node, a *fuse.Attr) {
	*a = fuse.Attr{
		Ino:     n.d.ino,
		Size:    uint64(n.size),
		Blocks:  uint64(n.size+511) / 512,
		Mode:    n.d.mode,
		Nlink:   uint32(max(n.nlink, 1)),
		Owner:   fuse.Owner{Uid: n.d.uid, Gid: n.d.gid},
		Blksize: pageSize,
	}
	if n.d.isDir() {
		a.Nlink = 2
	}
	a.SetTimes(&n.mtime, &n.mtime, &n.mtime)
}

func (m *mount) entry(n *node, out *fuse.EntryOut) {
	out.NodeId = n.d.ino
	out.SetEntryTimeout(cacheFor)
	out.SetAttrTimeout(cacheFor)
	m.attr(n, &out.Attr)
}

// forgetIfGone drops a node with no name and no open handle.
func (m *mount) forgetIfGone(n *node) {
	if n.nlink <= 0 && n.open <= 0 && n.d.ino != fuse.FUSE_ROOT_ID {
		delete(m.nodes, n.d.ino)
		n.dirty = nil
	}
}

func (m *mount) Lookup(_ <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	defer m.lock()()
	p, st := m.dir(h.NodeId)
	if st != fuse.OK {
		return st
	}
	c := p.entries[name]
	if c == nil {
		return fuse.ENOENT
	}
	m.entry(c, out)
	return fuse.OK
}

func (m *mount) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer m.lock()()
	n, st := m.node(in.NodeId)
	if st != fuse.OK {
		return st
	}
	out.SetTimeout(cacheFor)
	m.attr(n, &out.Attr)
	return fuse.OK
}

func (m *mount) SetAttr(_ <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer m.lock()()
	n, st := m.node(in.NodeId)
	if st != fuse.OK {
		return st
	}
	if size, ok := in.GetSize(); ok {
		if n.d.isDir() {
			return fuse.Status(syscall.EISDIR)
		}
		n.truncate(int64(size))
		n.mtime = time.Now()
	}
	if mode, ok := in.GetMode(); ok {
		n.d.mode = n.d.mode&syscall.S_IFMT | mode&0o7777
	}
	if uid, ok := in.GetUID(); ok {
		n.d.uid = uid
	}
	if gid, ok := in.GetGID(); ok {
		n.d.gid = gid
	}
	if mtime, ok := in.GetMTime(); ok {
		n.mtime = mtime
	}
	out.SetTimeout(cacheFor)
	m.attr(n, &out.Attr)
	return fuse.OK
}

// create adds a new file or directory named name to directory id, and
// describes it in out.
func (m *mount) create(id uint64, name string, mode uint32, owner fuse.Owner, out *fuse.EntryOut) (*node, fuse.Status) {
	p, st := m.dir(id)
	if st != fuse.OK {
		return nil, st
	}
	if p.entries[name] != nil {
		return nil, fuse.Status(syscall.EEXIST)
	}
	d := m.s.newInode(mode, owner)
	n := &node{d: d, name: name, nlink: 1, mtime: d.mtime}
	if d.isDir() {
		n.entries = map[string]*node{}
	}
	m.nodes[d.ino] = n
	p.entries[name] = n
	m.changed(p, name)
	p.mtime = d.mtime
	m.entry(n, out)
	return n, fuse.OK
}

func (m *mount) Mknod(_ <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	defer m.lock()()
	if in.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return fuse.Status(syscall.EPERM) // regular files only
	}
	_, st := m.create(in.NodeId, name, syscall.S_IFREG|in.Mode&0o7777, in.Owner, out)
	return st
}

func (m *mount) Mkdir(_ <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	defer m.lock()()
	_, st := m.create(in.NodeId, name, syscall.S_IFDIR|in.Mode&0o7777, in.Owner, out)
	return st
}

func (m *mount) Create(_ <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	defer m.lock()()
	p, st := m.dir(in.NodeId)
	if st != fuse.OK {
		return st
	}
	n := p.entries[name]
	switch {
	case n != nil && in.Flags&syscall.O_EXCL != 0:
		return fuse.Status(syscall.EEXIST)
	case n != nil && n.d.isDir():
		return fuse.Status(syscall.EISDIR)
	case n == nil:
		n, st = m.create(in.NodeId, name, syscall.S_IFREG|in.Mode&0o7777, in.Owner, &out.EntryOut)
		if st != fuse.OK {
			return st
		}
	default:
		if in.Flags&syscall.O_TRUNC != 0 {
			n.truncate(0)
			n.mtime = time.Now()
		}
		m.entry(n, &out.EntryOut)
	}
	n.open++
	out.OpenFlags = fuse.FOPEN_KEEP_CACHE
	return fuse.OK
}

func (m *mount) Open(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	defer m.lock()()
	n, st := m.file(in.NodeId)
	if st != fuse.OK {
		return st
	}
	if in.Flags&syscall.O_TRUNC != 0 {
		n.truncate(0)
		n.mtime = time.Now()
	}
	n.open++
	out.OpenFlags = fuse.FOPEN_KEEP_CACHE
	return fuse.OK
}

func (m *mount) Release(_ <-chan struct{}, in *fuse.ReleaseIn) {
	defer m.lock()()
	if n := m.nodes[in.NodeId]; n != nil {
		n.open--
		m.forgetIfGone(n)
	}
}

func (m *mount) Unlink(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return m.remove(h.NodeId, name, false)
}

func (m *mount) Rmdir(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return m.remove(h.NodeId, name, true)
}

func (m *mount) remove(id uint64, name string, dir bool) fuse.Status {
	defer m.lock()()
	p, st := m.dir(id)
	if st != fuse.OK {
		return st
	}
	c := p.entries[name]
	switch {
	case c == nil:
		return fuse.ENOENT
	case dir && !c.d.isDir():
		return fuse.ENOTDIR
	case !dir && c.d.isDir():
		return fuse.Status(syscall.EISDIR)
	case dir && len(c.entries) > 0:
		return fuse.Status(syscall.ENOTEMPTY)
	}
	delete(p.entries, name)
	m.changed(p, name)
	p.mtime = time.Now()
	c.nlink--
	m.forgetIfGone(c)
	return fuse.OK
}

func (m *mount) Rename(_ <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	defer m.lock()()
	op, st := m.dir(in.NodeId)
	if st != fuse.OK {
		return st
	}
	np, st := m.dir(in.Newdir)
	if st != fuse.OK {
		return st
	}
	c := op.entries[oldName]
	if c == nil {
		return fuse.ENOENT
	}
	if in.Flags&unix.RENAME_EXCHANGE != 0 || in.Flags&^uint32(unix.RENAME_NOREPLACE) != 0 {
		return fuse.EINVAL
	}
	// (The kernel itself refuses to move a directory into itself.)
	if t := np.entries[newName]; t != nil {
		switch {
		case in.Flags&unix.RENAME_NOREPLACE != 0:
			return fuse.Status(syscall.EEXIST)
		case t == c:
			return fuse.OK
		case c.d.isDir() && !t.d.isDir():
			return fuse.ENOTDIR
		case !c.d.isDir() && t.d.isDir():
			return fuse.Status(syscall.EISDIR)
		case t.d.isDir() && len(t.entries) > 0:
			return fuse.Status(syscall.ENOTEMPTY)
		}
		t.nlink--
		m.forgetIfGone(t)
	}
	delete(op.entries, oldName)
	np.entries[newName] = c
	c.name = newName
	m.changed(op, oldName)
	m.changed(np, newName)
	op.mtime, np.mtime = time.Now(), time.Now()
	return fuse.OK
}

func (m *mount) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	defer m.lock()()
	n, st := m.file(in.NodeId)
	if st != fuse.OK {
		return nil, st
	}
	b, err := n.read(m.s, buf[:min(len(buf), int(in.Size))], int64(in.Offset))
	if err != nil {
		log.Printf("read inode %d: %v", n.d.ino, err)
		return nil, fuse.EIO
	}
	return fuse.ReadResultData(b), fuse.OK
}

func (m *mount) Write(_ <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	defer m.lock()()
	n, st := m.file(in.NodeId)
	if st != fuse.OK {
		return 0, st
	}
	if err := n.write(m.s, data, int64(in.Offset)); err != nil {
		log.Printf("write inode %d: %v", n.d.ino, err)
		return 0, fuse.EIO
	}
	n.mtime = time.Now()
	return uint32(len(data)), fuse.OK
}

func (m *mount) Fallocate(_ <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	defer m.lock()()
	n, st := m.file(in.NodeId)
	if st != fuse.OK {
		return st
	}
	switch in.Mode {
	case 0: // allocate, growing the file: the new bytes read as zeros
		if end := int64(in.Offset + in.Length); end > n.size {
			n.truncate(end)
		}
	case unix.FALLOC_FL_KEEP_SIZE: // space only: nothing to do
	default:
		return fuse.Status(syscall.EOPNOTSUPP)
	}
	return fuse.OK
}

func (m *mount) Flush(_ <-chan struct{}, _ *fuse.FlushIn) fuse.Status { return fuse.OK }

// Fsync makes a file's data and size durable (fsync and fdatasync alike),
// and the journaled entries' changes.
func (m *mount) Fsync(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	defer m.lock()()
	n, st := m.file(in.NodeId)
	if st != fuse.OK || m.cut {
		return st
	}
	if m.s.failSync(n.name) {
		return fuse.EIO
	}
	if err := n.sync(m.s); err != nil {
		log.Printf("sync inode %d: %v", n.d.ino, err)
		return fuse.EIO
	}
	m.commitJournaled()
	return fuse.OK
}

// FsyncDir makes a directory's entries durable: its durable entries become
// the live ones, whatever the entries' own state (a file never synced is
// durably empty). And the journaled entries' changes.
func (m *mount) FsyncDir(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	defer m.lock()()
	n, st := m.dir(in.NodeId)
	if st != fuse.OK || m.cut {
		return st
	}
	if m.s.failSync(n.name + "/") {
		return fuse.EIO
	}
	n.d.entries = make(map[string]*inode, len(n.entries))
	for name, c := range n.entries {
		n.d.entries[name] = c.d
	}
	n.d.mtime = n.mtime
	delete(m.journal, n)
	m.commitJournaled()
	return fuse.OK
}

// changed notes that directory p's entry name changed: if it is a
// journaled name, the next sync makes the change durable.
func (m *mount) changed(p *node, name string) {
	if m.s.journaled == nil || !m.s.journaled.MatchString(name) {
		return
	}
	if m.journal[p] == nil {
		m.journal[p] = map[string]bool{}
	}
	m.journal[p][name] = true
}

// commitJournaled makes the journaled entries' changes durable: what the
// journal commit forced by a sync does.
func (m *mount) commitJournaled() {
	for p, names := range m.journal {
		for name := range names {
			if c := p.entries[name]; c != nil {
				p.d.entries[name] = c.d
			} else {
				delete(p.d.entries, name)
			}
		}
	}
	clear(m.journal)
}

func (m *mount) OpenDir(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	defer m.lock()()
	if _, st := m.dir(in.NodeId); st != fuse.OK {
		return st
	}
	m.lastFh++
	m.dirs[m.lastFh] = nil // listed at the first read: most opens are for fsync
	out.Fh = m.lastFh
	return fuse.OK
}

func (m *mount) ReadDir(_ <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	defer m.lock()()
	n, st := m.dir(in.NodeId)
	if st != fuse.OK {
		return st
	}
	// The listing is a snapshot taken at the first read, so that reading
	// it in several calls sees each entry once.
	list := m.dirs[in.Fh]
	if in.Offset == 0 {
		list = make([]fuse.DirEntry, 0, len(n.entries))
		for _, name := range sortedNames(n.entries) {
			c := n.entries[name]
			list = append(list, fuse.DirEntry{Name: name, Mode: c.d.mode, Ino: c.d.ino})
		}
		m.dirs[in.Fh] = list
	}
	for i := in.Offset; i < uint64(len(list)); i++ {
		e := list[i]
		e.Off = i + 1
		if !out.AddDirEntry(e) {
			break
		}
	}
	return fuse.OK
}

func (m *mount) ReleaseDir(in *fuse.ReleaseIn) {
	defer m.lock()()
	delete(m.dirs, in.Fh)
}

// StatFs reports the backing filesystem's space: what a program checking
// for room (the store does) should see.
func (m *mount) StatFs(_ <-chan struct{}, _ *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.s.objects, &st); err != nil {
		return fuse.ToStatus(err)
	}
	*out = fuse.StatfsOut{
		Blocks: st.Blocks, Bfree: st.Bfree, Bavail: st.Bavail,
		Files: st.Files, Ffree: st.Ffree,
		Bsize: uint32(st.Bsize), Frsize: uint32(st.Frsize), NameLen: uint32(st.Namelen),
	}
	return fuse.OK
}

var _ fuse.RawFileSystem = (*mount)(nil)
