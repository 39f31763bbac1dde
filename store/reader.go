package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"syscall"

	badger "github.com/dgraph-io/badger/v4"
)

// ErrCorrupt is returned (wrapped) by a reader whose bytes do not match the
// size or SHA-256 recorded at commit.
var ErrCorrupt = errors.New("store: instance bytes do not match their hash")

// ErrMissing is returned (wrapped) by a reader whose record remains but
// whose bytes are gone (a file removed by hand, a disk that lost it).
// errors.Is(err, ErrCorrupt) holds for it too: a missing copy is a damaged one.
var ErrMissing error = missing{}

type missing struct{}

func (missing) Error() string        { return "store: instance bytes are missing" }
func (missing) Is(target error) bool { return target == ErrCorrupt }

// Open streams the accepted copy of a SOP Instance UID.
func (s *Store) Open(ctx context.Context, uid string) (io.ReadCloser, error) {
	rec, err := s.Instance(uid)
	if err != nil {
		return nil, err
	}
	return s.OpenInstance(ctx, rec), nil
}

// OpenInstance streams the bytes of a stored copy (an accepted one or a
// flagged conflict) with plain reads of its file. The SHA-256 is checked at
// the end: the last Read returns ErrCorrupt instead of io.EOF when the bytes
// differ from those committed, so a caller that sends what it read only once
// the next Read succeeds never passes on damaged bytes. A missing or
// damaged copy is also written to the event log. Reading a copy purged
// before the first Read fails with ErrNotFound.
func (s *Store) OpenInstance(ctx context.Context, rec Instance) io.ReadCloser {
	return &reader{ctx: ctx, s: s, rec: rec, sum: sha256.New()}
}

type reader struct {
	ctx    context.Context
	s      *Store
	rec    Instance
	opened bool
	f      *os.File // nil for an inline copy
	buf    []byte   // an inline copy's bytes not yet read
	n      int64    // bytes read
	sum    hash.Hash
	err    error // sticky
}

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.read(p)
	if err != nil {
		r.err = err
		r.close()
	}
	return n, err
}

func (r *reader) read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	if !r.opened {
		if err := r.open(); err != nil {
			return 0, err
		}
		r.opened = true
	}
	if r.n == r.rec.Size {
		return 0, r.check()
	}
	p = p[:min(int64(len(p)), r.rec.Size-r.n)]
	var n int
	var err error
	if r.f != nil {
		n, err = r.f.Read(p)
	} else {
		n = copy(p, r.buf)
		r.buf = r.buf[n:]
	}
	r.n += int64(n)
	r.sum.Write(p[:n])
	if errors.Is(err, io.EOF) { // shorter than at open: cut meanwhile
		err = r.damaged(fmt.Errorf("%w: %d bytes, want %d", ErrCorrupt, r.n, r.rec.Size))
	}
	if err != nil && !errors.Is(err, ErrCorrupt) {
		err = fmt.Errorf("read %s: %w", r.rec.SOPInstanceUID, err)
	}
	return n, err
}

// open opens the file, or loads an inline copy's bytes, and checks the size.
func (r *reader) open() error {
	if r.rec.Inline {
		var found bool
		err := r.s.view(func(txn *badger.Txn) error {
			item, err := txn.Get(inlineKey(r.rec.ID))
			if errors.Is(err, badger.ErrKeyNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			found = true
			r.buf, err = item.ValueCopy(nil)
			return err
		})
		if err != nil {
			return fmt.Errorf("read %s: %w", r.rec.SOPInstanceUID, err)
		}
		if !found {
			return r.gone()
		}
		if int64(len(r.buf)) != r.rec.Size {
			return r.damaged(fmt.Errorf("%w: %d bytes, want %d", ErrCorrupt, len(r.buf), r.rec.Size))
		}
		return nil
	}
	f, err := openNoAtime(r.s.filePath(r.rec.ID))
	if errors.Is(err, fs.ErrNotExist) {
		return r.gone()
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", r.rec.SOPInstanceUID, err)
	}
	r.f = f
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("read %s: %w", r.rec.SOPInstanceUID, err)
	}
	if st.Size() != r.rec.Size {
		return r.damaged(fmt.Errorf("%w: the file has %d bytes, want %d", ErrCorrupt, st.Size(), r.rec.Size))
	}
	return nil
}

// check compares the hash once every byte is read.
func (r *reader) check() error {
	if got := hex.EncodeToString(r.sum.Sum(nil)); got != r.rec.SHA256 {
		return r.damaged(fmt.Errorf("%w: %d bytes sha256 %s, want %s", ErrCorrupt, r.n, got, r.rec.SHA256))
	}
	return io.EOF
}

// gone tells a copy purged meanwhile (its record is gone too) from one
// whose bytes are missing.
func (r *reader) gone() error {
	held := false
	err := r.s.view(func(txn *badger.Txn) error {
		_, err := txn.Get(copyKey(r.rec.ID))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		held = err == nil
		return err
	})
	switch {
	case err != nil:
		return fmt.Errorf("read %s: %w", r.rec.SOPInstanceUID, err)
	case !held:
		return fmt.Errorf("read %s: copy %d: %w (purged or discarded)", r.rec.SOPInstanceUID, r.rec.ID, ErrNotFound)
	}
	return r.damaged(ErrMissing)
}

// damaged wraps err and reports the damage (see reportDamage).
func (r *reader) damaged(err error) error {
	err = fmt.Errorf("read %s (copy %d): %w", r.rec.SOPInstanceUID, r.rec.ID, err)
	r.s.reportDamage(r.rec, err)
	return err
}

func (r *reader) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	r.buf = nil
}

func (r *reader) Close() error {
	r.close()
	if r.err == nil {
		r.err = errors.New("store: reader closed")
	}
	return nil
}

// openNoAtime opens an instance's file for reading without updating its
// access time: under relatime, the first read after the write changes the
// inode, metadata written back behind every other sync on the disk (the
// destination's, when it shares it; the next instance received).
func openNoAtime(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOATIME, 0)
	if errors.Is(err, fs.ErrPermission) { // O_NOATIME needs the file's owner
		return os.Open(path)
	}
	return f, err
}
