package powercut

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// server is the child process's side: the durable state and the mounts
// serving it.
type server struct {
	dir       string         // the mount point
	objects   string         // the backing directory
	journaled *regexp.Regexp // entries any sync makes durable (nil: none)

	// mu guards everything below and every mount's state: one lock is
	// plenty for tests, and it makes each operation atomic against a cut.
	mu      sync.Mutex
	root    *inode
	inodes  map[uint64]*inode // every durable inode not yet collected
	lastIno uint64
	live    *mount

	// The syncs to fail (FS.FailSyncs): of names matching failNames, the
	// next failLeft.
	failNames *regexp.Regexp
	failLeft  int
}

// failSync says whether a sync of the node named name (a directory's with a
// "/" after it) is to fail, and counts it. s.mu is held.
func (s *server) failSync(name string) bool {
	if s.failLeft == 0 || !s.failNames.MatchString(name) {
		return false
	}
	s.failLeft--
	log.Printf("failing a sync of %s as asked", name)
	return true
}

// inode is a file or directory as it is durably: what a reboot finds.
type inode struct {
	ino     uint64
	mode    uint32 // type and permission bits
	uid     uint32
	gid     uint32
	mtime   time.Time
	size    int64             // a file's durable length: its object file's length
	obj     *os.File          // the object file, opened when first needed
	entries map[string]*inode // a directory's durable entries
}

func (d *inode) isDir() bool { return d.mode&syscall.S_IFMT == syscall.S_IFDIR }

// serve runs the child: it mounts an empty filesystem at dir, says "ok",
// and answers the parent's requests, one a line, until "close" or the end
// of its input (the test process ended).
func serve(dir, backing string, journaled *regexp.Regexp, in io.Reader, out io.Writer) int {
	log.SetPrefix("power-cut filesystem: ")
	s := &server{
		dir:       dir,
		objects:   backing,
		journaled: journaled,
		root:      &inode{ino: fuse.FUSE_ROOT_ID, mode: syscall.S_IFDIR | 0o755, mtime: time.Now(), entries: map[string]*inode{}},
		inodes:    map[uint64]*inode{},
		lastIno:   fuse.FUSE_ROOT_ID,
	}
	s.inodes[s.root.ino] = s.root
	answer := func(v string, err error) {
		if err != nil {
			fmt.Fprintf(out, "error %v\n", err)
		} else {
			fmt.Fprintf(out, "ok %s\n", v)
		}
	}
	err := s.mount()
	answer("", err)
	if err != nil {
		return 1
	}
	lines := bufio.NewScanner(in)
	for lines.Scan() {
		req := lines.Text()
		if arg, ok := strings.CutPrefix(req, "failsync "); ok {
			answer("", s.setFailSync(arg))
			continue
		}
		switch req {
		case "cut":
			s.mu.Lock()
			s.live.cut = true
			s.mu.Unlock()
			answer("", nil)
		case "remount":
			answer("", s.remount())
		case "unsynced":
			answer(strconv.FormatInt(s.unsynced(), 10), nil)
		case "close":
			err := s.unmount()
			answer("", err)
			if err != nil {
				s.live.server.Wait() // serve the detached mount until it is let go
			}
			return 0
		default:
			answer("", fmt.Errorf("unknown request %q", req))
		}
	}
	if err := s.unmount(); err != nil {
		s.live.server.Wait()
	}
	return 0
}

// setFailSync reads FS.FailSyncs's request: a count, a space, a pattern.
func (s *server) setFailSync(arg string) error {
	count, pattern, _ := strings.Cut(arg, " ")
	n, err := strconv.Atoi(count)
	if err != nil {
		return fmt.Errorf("failsync: %w", err)
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return fmt.Errorf("failsync: %w", err)
	}
	s.mu.Lock()
	s.failNames, s.failLeft = re, n
	s.mu.Unlock()
	return nil
}

func (s *server) remount() error {
	s.mu.Lock()
	s.live.cut = true
	s.mu.Unlock()
	if err := s.unmount(); err != nil {
		// Not fatal: the old mount was cut, nothing it does lasts.
		log.Printf("remount: %v", err)
	}
	return s.mount()
}

func (s *server) unsynced() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, nd := range s.live.nodes {
		n += int64(len(nd.dirty)) * pageSize
	}
	return n
}

// mount serves the durable state at s.dir, after dropping the objects of
// inodes the durable namespace no longer reaches.
func (s *server) mount() error {
	s.mu.Lock()
	m := newMount(s)
	err := s.collect(m)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	srv, err := fuse.NewServer(m, s.dir, &fuse.MountOptions{
		FsName:      "powercut",
		Name:        "powercut",
		DirectMount: true, // as root: no fusermount needed
		MaxWrite:    1 << 20,
		// Nothing changes the files behind the kernel's back: its page
		// cache needs no invalidation.
		ExplicitDataCacheControl: true,
		DisableXAttrs:            true,
		DisableReadDirPlus:       true,
	})
	if err != nil {
		return err
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		srv.Unmount()
		return err
	}
	s.mu.Lock()
	m.server = srv
	s.live = m
	s.mu.Unlock()
	return nil
}

// unmount unmounts the current mount. If files are still open on it, it is
// detached instead, and keeps answering them until they are closed.
func (s *server) unmount() error {
	err := s.live.server.Unmount()
	if err == nil {
		return nil
	}
	if derr := syscall.Unmount(s.dir, syscall.MNT_DETACH); derr != nil {
		return fmt.Errorf("unmount %s: %v; detach: %v", s.dir, err, derr)
	}
	return fmt.Errorf("unmount %s: files are still open on it (%v): detached, it serves them until they are closed", s.dir, err)
}

// collect forgets the inodes that m, just built from the durable
// namespace, does not reach, and removes their object files: a reboot
// frees them.
func (s *server) collect(m *mount) error {
	for ino, d := range s.inodes {
		if m.nodes[ino] != nil {
			continue
		}
		delete(s.inodes, ino)
		if d.obj != nil {
			d.obj.Close()
			d.obj = nil
		}
		if err := os.Remove(s.objectPath(ino)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func (s *server) objectPath(ino uint64) string {
	return filepath.Join(s.objects, strconv.FormatUint(ino, 10))
}

// object returns d's object file, creating it when d has none yet.
func (s *server) object(d *inode) (*os.File, error) {
	if d.obj == nil {
		o, err := os.OpenFile(s.objectPath(d.ino), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		d.obj = o
	}
	return d.obj, nil
}

// newInode makes an inode that exists on no durable path yet.
func (s *server) newInode(mode uint32, owner fuse.Owner) *inode {
	s.lastIno++
	d := &inode{ino: s.lastIno, mode: mode, uid: owner.Uid, gid: owner.Gid, mtime: time.Now()}
	if d.isDir() {
		d.entries = map[string]*inode{}
	}
	s.inodes[d.ino] = d
	return d
}

// sortedNames returns a map's keys in order, so that what a remount keeps
// of an odd durable namespace does not depend on map order.
func sortedNames[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
