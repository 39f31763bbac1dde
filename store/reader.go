package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	badger "github.com/dgraph-io/badger/v4"
)

// ErrCorrupt is returned (wrapped) by a reader whose bytes do not match the
// size or SHA-256 recorded at commit.
var ErrCorrupt = errors.New("store: instance bytes do not match their hash")

// Open streams the accepted copy of a SOP Instance UID.
func (s *Store) Open(ctx context.Context, uid string) (io.ReadCloser, error) {
	rec, err := s.Instance(uid)
	if err != nil {
		return nil, err
	}
	return s.OpenInstance(ctx, rec), nil
}

// OpenInstance streams the bytes of a stored copy (an accepted one or a
// flagged conflict), one chunk in memory at a time. The SHA-256 is checked
// at the end: the last Read returns ErrCorrupt instead of io.EOF when the
// bytes differ from those committed. Reading a copy purged meanwhile fails.
func (s *Store) OpenInstance(ctx context.Context, rec Instance) io.ReadCloser {
	return &reader{ctx: ctx, s: s, rec: rec, sum: sha256.New()}
}

type reader struct {
	ctx context.Context
	s   *Store
	rec Instance
	seq int
	buf []byte
	off int
	n   int64
	sum hash.Hash
	err error
}

func (r *reader) Read(p []byte) (int, error) {
	for r.off == len(r.buf) {
		if r.err != nil {
			return 0, r.err
		}
		r.err = r.next()
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}

// next loads the next chunk into buf, or returns io.EOF after checking the
// hash. Each chunk is read in its own short transaction so that a slow
// forward does not pin old versions in the database.
func (r *reader) next() error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	if r.seq == r.rec.Chunks {
		got := hex.EncodeToString(r.sum.Sum(nil))
		if r.n != r.rec.Size || got != r.rec.SHA256 {
			return fmt.Errorf("read %s: %w: %d bytes sha256 %s, want %d bytes %s",
				r.rec.SOPInstanceUID, ErrCorrupt, r.n, got, r.rec.Size, r.rec.SHA256)
		}
		return io.EOF
	}
	err := r.s.view(func(txn *badger.Txn) error {
		item, err := txn.Get(chunkKey(r.rec.ID, uint32(r.seq)))
		if err != nil {
			return err
		}
		r.buf, err = item.ValueCopy(r.buf[:0])
		return err
	})
	if err != nil {
		return fmt.Errorf("read %s chunk %d: %w", r.rec.SOPInstanceUID, r.seq, err)
	}
	r.seq++
	r.off = 0
	r.n += int64(len(r.buf))
	r.sum.Write(r.buf)
	return nil
}

func (r *reader) Close() error {
	r.buf = nil
	if r.err == nil {
		r.err = errors.New("store: reader closed")
	}
	return nil
}
