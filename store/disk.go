package store

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrFull is returned (wrapped) when a write would eat into the reserved free
// space. The write changed nothing; the store stays usable, and writes succeed
// again once a purge or the operator frees space. The SCP answers it with
// Out of Resources (A700).
var ErrFull = errors.New("store: disk full")

// Disk is the space of the filesystem holding the store.
type Disk struct {
	Total uint64 // bytes
	Free  uint64 // bytes available to the store (statfs f_bavail)
}

// Used is the fraction of the filesystem in use, 0 to 1.
func (d Disk) Used() float64 {
	if d.Total == 0 {
		return 0
	}
	return float64(d.Total-d.Free) / float64(d.Total)
}

func statfs(dir string) (Disk, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Disk{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return Disk{Total: st.Blocks * uint64(st.Bsize), Free: st.Bavail * uint64(st.Bsize)}, nil
}

// room returns ErrFull unless n bytes can be written leaving keep bytes free.
func (s *Store) room(n, keep int64) error {
	d, err := s.statfs(s.dir)
	if err != nil {
		return err
	}
	if int64(d.Free) < n+keep {
		return fmt.Errorf("%w: %d bytes free, %d needed with the reserve", ErrFull, d.Free, n+keep)
	}
	return nil
}
