package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"

	badger "github.com/dgraph-io/badger/v4"
)

// Outcome says what a commit did.
type Outcome int

const (
	// Stored: the instance is new; it is indexed and queued.
	Stored Outcome = iota + 1
	// Duplicate: the same SOP Instance UID with the same bytes is already
	// held; nothing new was stored and the written chunks are dropped.
	Duplicate
	// Conflict: the UID is held with different bytes. The new copy is kept
	// under its own key, flagged, listed with its study, and not forwarded;
	// the accepted copy is unchanged.
	Conflict
)

func (o Outcome) String() string {
	switch o {
	case Stored:
		return "stored"
	case Duplicate:
		return "duplicate"
	case Conflict:
		return "conflict"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Result is what Commit did and the record that now holds the bytes (for a
// duplicate, the copy already held).
type Result struct {
	Outcome  Outcome
	Instance Instance
}

// Writer streams one instance into the store. Write it the bytes as they
// arrive, then Commit or Abort. A Writer is not safe for concurrent use.
type Writer struct {
	s    *Store
	id   uint64
	seq  uint32 // chunks written
	buf  []byte
	sum  hash.Hash
	size int64
	err  error // sticky
	done bool
}

var errWriterDone = errors.New("store: writer already committed or aborted")

// NewWriter starts an instance. An instance that fits in one chunk is
// written by its commit alone, in one transaction; a larger one writes, with
// its first chunk, a marker that makes its chunks orphans to sweep after a
// crash until the instance commits.
func (s *Store) NewWriter() (*Writer, error) {
	if err := s.room(0, forData); err != nil {
		return nil, fmt.Errorf("new writer: %w", err)
	}
	id := s.ids.Add(1)
	s.liveMu.Lock()
	s.live[id] = true
	s.liveMu.Unlock()
	return &Writer{s: s, id: id, sum: sha256.New()}, nil
}

func (s *Store) forget(id uint64) {
	s.liveMu.Lock()
	delete(s.live, id)
	s.liveMu.Unlock()
}

// Write appends p to the instance. Bytes are buffered up to one chunk and
// written to the database as each chunk fills. After an error (ErrFull, for
// one) every later call fails: Abort the writer.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errWriterDone
	}
	if w.err != nil {
		return 0, w.err
	}
	chunk := w.s.opts.ChunkSize
	n := 0
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = w.s.getBuf()
		}
		k := min(chunk-len(w.buf), len(p))
		w.buf = append(w.buf, p[:k]...)
		w.sum.Write(p[:k])
		w.size += int64(k)
		n += k
		p = p[k:]
		if len(w.buf) == chunk {
			if err := w.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// Size is the number of bytes written so far.
func (w *Writer) Size() int64 { return w.size }

func (w *Writer) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.s.room(int64(len(w.buf)), forData)
	if err == nil {
		err = w.s.write(func(txn *badger.Txn) error {
			if w.seq == 0 {
				if err := txn.Set(pendingKey(w.id), nil); err != nil {
					return err
				}
			}
			return txn.Set(chunkKey(w.id, w.seq), w.buf)
		})
	}
	if err != nil {
		w.err = fmt.Errorf("write chunk %d: %w", w.seq, err)
		return w.err
	}
	w.seq++
	w.buf = w.buf[:0] // Badger copied or wrote the value before Update returned
	return nil
}

// Commit makes the instance, its index rows and one queue entry per
// destination visible in one transaction, and returns once it is on disk.
// Commits running at the same time share their fsyncs. meta carries the
// header fields; ID, Size, SHA256, Chunks, Conflict and Destinations are set
// by the store. On error nothing is visible and the writer is finished.
func (w *Writer) Commit(ctx context.Context, meta Instance, destinations []string) (Result, error) {
	if w.done {
		return Result{}, errWriterDone
	}
	res, err := w.commit(ctx, meta, destinations)
	if err != nil {
		w.Abort()
		return Result{}, fmt.Errorf("commit %s: %w", meta.SOPInstanceUID, err)
	}
	return res, nil
}

func (w *Writer) commit(ctx context.Context, meta Instance, destinations []string) (Result, error) {
	if w.err != nil {
		return Result{}, w.err
	}
	if err := meta.validate(); err != nil {
		return Result{}, err
	}
	// A single chunk goes into the commit's own transaction (and nowhere for
	// a duplicate): one write instead of three for a small instance.
	inline := w.seq == 0 && len(w.buf) > 0
	if !inline {
		if err := w.flush(); err != nil {
			return Result{}, err
		}
	} else if err := w.s.room(int64(len(w.buf)), forData); err != nil {
		return Result{}, fmt.Errorf("write chunk 0: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if err := w.s.room(0, forCommit); err != nil {
		return Result{}, err
	}
	rec := meta
	rec.ID = w.id
	rec.Size = w.size
	rec.SHA256 = hex.EncodeToString(w.sum.Sum(nil))
	rec.Chunks = int(w.seq)
	if inline {
		rec.Chunks = 1
	}
	rec.Conflict = false
	rec.Destinations = dedupe(destinations)
	if rec.ReceivedAt.IsZero() {
		rec.ReceivedAt = w.s.now()
	}
	var res Result
	err := w.s.change(func(txn *badger.Txn) error {
		var err error
		res, err = w.s.commitTxn(txn, &rec)
		if err == nil && inline && res.Outcome != Duplicate {
			err = txn.Set(chunkKey(w.id, 0), w.buf)
		}
		return err
	})
	if err != nil {
		return Result{}, err
	}
	w.done = true
	w.s.putBuf(w.buf)
	w.buf = nil
	// A duplicate's chunks stay behind their pending marker; the next purge
	// or Open drops them. Anything else now owns its chunks.
	w.s.forget(w.id)
	// Wait for the disk even for a duplicate: the copy it matched may have
	// been committed a moment ago by a writer still waiting for its sync.
	if err := w.s.sync.wait(); err != nil {
		return Result{}, fmt.Errorf("sync: %w", err)
	}
	return res, nil
}

// Abort discards the instance. Nothing becomes visible; the chunks already
// written are dropped by the next purge or Open. Abort after Commit does
// nothing, so it can be deferred.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.s.putBuf(w.buf)
	w.buf = nil
	w.s.forget(w.id)
}

// getBuf returns an empty chunk buffer. Buffers are pooled: allocating a
// chunk per instance would make the garbage collector the bottleneck at a
// few thousand small instances per second.
func (s *Store) getBuf() []byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, s.opts.ChunkSize)
}

func (s *Store) putBuf(b []byte) {
	if cap(b) == s.opts.ChunkSize {
		s.bufs.Put(&b)
	}
}

func dedupe(ss []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
