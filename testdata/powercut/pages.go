package powercut

import (
	"fmt"
	"maps"
	"slices"

	"golang.org/x/sys/unix"
)

// A file's live bytes are its durable bytes (its inode's object file, of
// the inode's size) overlaid with the pages written since its last sync.
// Invariants, for a node n:
//   - n.valid <= n.size, and n.valid <= n.d.size: the durable bytes below
//     n.valid are still the file's; above it (a truncation cut them off)
//     the file reads zeros where no page was written;
//   - a dirty page's bytes beyond n.size are zeros, so growing the file
//     again reads zeros there.

// pageSize is the overlay's unit: the kernel's page, which is what a shared
// mapping's write-back sends.
const pageSize = 4096

// read copies the file's bytes at off into p and returns them: fewer than
// len(p) at the end of the file.
func (n *node) read(s *server, p []byte, off int64) ([]byte, error) {
	if off >= n.size {
		return p[:0], nil
	}
	p = p[:min(int64(len(p)), n.size-off)]
	end := off + int64(len(p))
	for at := off; at < end; {
		idx := at / pageSize
		if pg, ok := n.dirty[idx]; ok {
			at += int64(copy(p[at-off:], pg[at-idx*pageSize:]))
			continue
		}
		// A run of clean pages: one read of the durable bytes.
		runEnd := (idx + 1) * pageSize
		for runEnd < end && !n.isDirty(runEnd/pageSize) {
			runEnd += pageSize
		}
		runEnd = min(runEnd, end)
		run := p[at-off : runEnd-off]
		k := max(0, min(runEnd, n.valid)-at)
		if err := n.readDurable(s, run[:k], at); err != nil {
			return nil, err
		}
		clear(run[k:])
		at = runEnd
	}
	return p, nil
}

func (n *node) isDirty(idx int64) bool {
	_, ok := n.dirty[idx]
	return ok
}

func (n *node) readDurable(s *server, p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	o, err := s.object(n.d)
	if err != nil {
		return err
	}
	if _, err := o.ReadAt(p, off); err != nil {
		return fmt.Errorf("read %d bytes of object at %d: %w", len(p), off, err)
	}
	return nil
}

// write writes p at off into the overlay.
func (n *node) write(s *server, p []byte, off int64) error {
	for len(p) > 0 {
		idx := off / pageSize
		in := off - idx*pageSize
		k := min(int64(len(p)), pageSize-in)
		pg, err := n.page(s, idx, k == pageSize)
		if err != nil {
			return err
		}
		copy(pg[in:], p[:k])
		p, off = p[k:], off+k
		n.size = max(n.size, off)
	}
	return nil
}

// page returns dirty page idx, making it from the file's current bytes
// unless the caller overwrites all of it.
func (n *node) page(s *server, idx int64, whole bool) ([]byte, error) {
	if pg, ok := n.dirty[idx]; ok {
		return pg, nil
	}
	pg := make([]byte, pageSize)
	if !whole {
		start := idx * pageSize
		k := max(0, min(start+pageSize, n.valid)-start)
		if err := n.readDurable(s, pg[:k], start); err != nil {
			return nil, err
		}
	}
	if n.dirty == nil {
		n.dirty = map[int64][]byte{}
	}
	n.dirty[idx] = pg
	return pg, nil
}

// truncate sets the file's size; bytes it cuts off read as zeros if the
// file grows again.
func (n *node) truncate(size int64) {
	if size < n.size {
		for idx := range n.dirty {
			if idx*pageSize >= size {
				delete(n.dirty, idx)
			}
		}
		if pg, ok := n.dirty[size/pageSize]; ok {
			clear(pg[size%pageSize:])
		}
		n.valid = min(n.valid, size)
	}
	n.size = size
}

// sync makes the file's live bytes its durable bytes.
func (n *node) sync(s *server) error {
	d := n.d
	if len(n.dirty) == 0 && n.valid == d.size && n.size == d.size {
		return nil
	}
	o, err := s.object(d)
	if err != nil {
		return err
	}
	if n.valid < d.size {
		if err := o.Truncate(n.valid); err != nil {
			return err
		}
	}
	// Runs of consecutive pages go out in one pwritev each.
	idxs := slices.Sorted(maps.Keys(n.dirty))
	for len(idxs) > 0 {
		k := 1
		for k < len(idxs) && k < 1024 && idxs[k] == idxs[0]+int64(k) {
			k++
		}
		iov := make([][]byte, k)
		want := 0
		for i, idx := range idxs[:k] {
			iov[i] = n.dirty[idx][:min(pageSize, n.size-idx*pageSize)]
			want += len(iov[i])
		}
		got, err := unix.Pwritev(int(o.Fd()), iov, idxs[0]*pageSize)
		if err == nil && got != want {
			err = fmt.Errorf("short write: %d of %d bytes", got, want)
		}
		if err != nil {
			return fmt.Errorf("write object at %d: %w", idxs[0]*pageSize, err)
		}
		idxs = idxs[k:]
	}
	// The backing disk does not lose power: no fsync of the object.
	if err := o.Truncate(n.size); err != nil {
		return err
	}
	d.size, n.valid, n.dirty = n.size, n.size, nil
	d.mtime = n.mtime
	return nil
}
