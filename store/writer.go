package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"

	badger "github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// Outcome says what a commit did.
type Outcome int

const (
	// Stored: the instance is new; it is indexed and queued.
	Stored Outcome = iota + 1
	// Duplicate: the same SOP Instance UID with the same bytes is already
	// held; nothing new was stored and the written bytes are dropped.
	Duplicate
	// Conflict: the UID is held with different bytes. The new copy is kept
	// under its own key, flagged, listed with its study, and not forwarded;
	// the accepted copy is unchanged.
	Conflict
	// Repaired: the same bytes as the accepted copy, which was found
	// damaged: they replace it and are queued again where it did not
	// arrive (see repair).
	Repaired
)

func (o Outcome) String() string {
	switch o {
	case Stored:
		return "stored"
	case Duplicate:
		return "duplicate"
	case Conflict:
		return "conflict"
	case Repaired:
		return "repaired"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Result is what Commit did and the record that now holds the bytes (for a
// duplicate, the copy already held).
type Result struct {
	Outcome  Outcome
	Instance Instance
	// Space is the disk as the commit found it, before its record: callers
	// watching the disk need no statfs of their own.
	Space Space

	unchecked bool // a duplicate of Instance, not committed: read it first
}

// writeBuffer is how many bytes a writer gathers before a write(2): a few
// system calls per MiB, and at most this much memory per writer whatever the
// instance's size.
const writeBuffer = 256 << 10

// syncAhead: every this many bytes written, a background fdatasync makes
// them durable while the rest arrives, so that the one at commit has only the
// tail left. On this VM's disk a flush costs in proportion to the bytes
// written since the last one, whether or not their writeback had started:
// a 262 MB file arriving at 500 MB/s (2026-12-02, medians of 2) waited
// 195 ms in its final fdatasync with nothing ahead, 144 ms with
// sync_file_range every 8 MiB (what this did before), 3 ms with an
// fdatasync every 8 MiB, 25 ms every 32 MiB. Instances smaller than this
// never pay for it.
var syncAhead int64 = 8 << 20

// Writer streams one instance into the store. Write it the bytes as they
// arrive, then Commit or Abort. A Writer is not safe for concurrent use.
//
// A full buffer is hashed and written to the file in the background while
// the next one fills: the sender's next bytes arrive meanwhile, instead of
// after SHA-256 and write(2) of the last ones (a CT slice of 0.5 MB spent
// about 0.6 ms in SHA-256 alone before its next fragment was read).
type Writer struct {
	s      *Store
	id     uint64
	buf    []byte   // bytes not yet handed to the file (all of them, while none is)
	spare  []byte   // the other buffer, free once the background write ends
	f      *os.File // nil until the bytes outgrow InlineMax
	ticket uint64   // covers the file's name (dirSyncer)
	inFile int64    // bytes handed to the file
	sum    hash.Hash

	// The background write: at most one runs, and the Writer waits for it
	// before it touches the file, the hash or the buffer it writes.
	writing bool
	wrote   chan error
	// The background fdatasync (syncAhead): the background writes own
	// these; at most one runs, and syncFile and Abort wait for it
	// (waitAhead) before they sync or close the file.
	ahead   chan error
	aheadOn bool
	synced  int64 // bytes in the file when the last one started

	// sealed: Seal runs syncFile in the background; Commit and Abort take
	// its result before anything else.
	sealed chan error
	// dirDone: the sync of the file's name, started when it was created;
	// syncFile or Abort take its result.
	dirDone chan error

	size int64
	err  error // sticky
	done bool
}

var (
	errWriterDone   = errors.New("store: writer already committed or aborted")
	errWriterSealed = errors.New("store: writer sealed: no more bytes")
)

// NewWriter starts an instance. Its bytes stay in memory up to InlineMax and
// go to their own file beyond.
func (s *Store) NewWriter() (*Writer, error) {
	if _, err := s.room(0, forData); err != nil {
		return nil, fmt.Errorf("new writer: %w", err)
	}
	return &Writer{s: s, id: s.newID(), sum: sha256.New(), buf: s.getBuf()}, nil
}

// Write appends p to the instance. After an error (ErrFull, for one) every
// later call fails: Abort the writer.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errWriterDone
	}
	if w.sealed != nil {
		return 0, errWriterSealed
	}
	if w.err != nil {
		return 0, w.err
	}
	n := 0
	for len(p) > 0 {
		k := min(cap(w.buf)-len(w.buf), len(p))
		w.buf = append(w.buf, p[:k]...)
		w.size += int64(k)
		n += k
		p = p[k:]
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// Size is the number of bytes written so far.
func (w *Writer) Size() int64 { return w.size }

// flush hands the buffer to the file, creating it first (even empty: an
// empty instance that is not inline has an empty file), and goes on with the
// other buffer while this one is hashed and written.
func (w *Writer) flush() error {
	if len(w.buf) == 0 && w.f != nil {
		return nil
	}
	if err := w.waitWrite(); err != nil {
		return err
	}
	_, err := w.s.room(int64(len(w.buf)), forData)
	if err == nil && w.f == nil {
		w.f, w.ticket, err = w.s.createFile(w.id)
		if err == nil {
			// The name syncs while the bytes arrive: by the commit it is
			// usually on disk, and the fdatasync waits alone.
			w.dirDone = make(chan error, 1)
			go func(ticket uint64) { w.dirDone <- w.s.dirs.wait(ticket) }(w.ticket)
		}
	}
	if err != nil {
		w.err = fmt.Errorf("write: %w", err)
		return w.err
	}
	out := w.buf
	w.buf = w.spare
	if w.buf == nil {
		w.buf = w.s.getBuf()
	}
	w.spare = out // free again once waitWrite returns
	w.inFile += int64(len(out))
	if w.wrote == nil {
		w.wrote = make(chan error, 1)
	}
	w.writing = true
	f, inFile := w.f, w.inFile
	go func() {
		w.sum.Write(out)
		_, err := f.Write(out)
		if err == nil {
			err = w.syncAheadOf(f, inFile)
		}
		w.wrote <- err
	}()
	return nil
}

// syncAheadOf starts a background fdatasync of f once syncAhead bytes were
// written since the last one started, if none runs, and returns the error of
// one that ended: a writeback error is reported once per file, so the one
// at commit could not see it again.
func (w *Writer) syncAheadOf(f *os.File, inFile int64) error {
	var err error
	if w.aheadOn {
		select {
		case err = <-w.ahead:
			w.aheadOn = false
		default:
		}
	}
	if err == nil && !w.aheadOn && syncAhead > 0 && inFile-w.synced >= syncAhead {
		if w.ahead == nil {
			w.ahead = make(chan error, 1)
		}
		w.aheadOn, w.synced = true, inFile
		go func() {
			err := unix.Fdatasync(int(f.Fd()))
			if err != nil {
				err = fmt.Errorf("sync ahead: %w", err)
			}
			w.ahead <- err
		}()
	}
	return err
}

// waitAhead waits for the background fdatasync, if one runs, and returns its
// error. The background write must have ended.
func (w *Writer) waitAhead() error {
	if !w.aheadOn {
		return nil
	}
	w.aheadOn = false
	return <-w.ahead
}

// waitWrite waits for the background write, if one runs, and returns its
// error (sticky).
func (w *Writer) waitWrite() error {
	if !w.writing {
		return w.err
	}
	w.writing = false
	if err := <-w.wrote; err != nil && w.err == nil {
		w.err = fmt.Errorf("write: %w", err)
	}
	w.spare = w.spare[:0]
	return w.err
}

// Seal says the last byte is in. A copy bound for a file starts being made
// durable at once, while the caller reads what it needs for Commit (the
// header): the parse no longer waits in line before the fdatasync. Commit and
// Abort wait for it; Write fails after Seal.
func (w *Writer) Seal() {
	if w.done || w.sealed != nil {
		return
	}
	w.sealed = make(chan error, 1)
	if w.err != nil || w.inline() {
		w.sealed <- w.err
		return
	}
	go func() { w.sealed <- w.syncFile() }()
}

// inline says whether the copy goes into its record rather than a file.
func (w *Writer) inline() bool { return w.f == nil && w.size <= int64(w.s.opts.InlineMax) }

// unseal waits for Seal's work, if any, and returns its error.
func (w *Writer) unseal() error {
	if w.sealed == nil {
		return nil
	}
	err := <-w.sealed
	w.sealed = nil
	return err
}

// Commit makes the instance, its index rows and one queue entry per
// destination visible in one transaction, and returns once it is on disk,
// after the file holding the bytes. Commits running at the same time share
// their syncs. meta carries the header fields; ID, Size, SHA256, Inline,
// Conflict and Destinations are set by the store. On error nothing is
// visible and the writer is finished.
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
	w.Seal() // if the caller did not: a file copy syncs now
	if err := w.unseal(); err != nil {
		return Result{}, err
	}
	if w.err != nil {
		return Result{}, w.err
	}
	if err := meta.validate(); err != nil {
		return Result{}, err
	}
	inline := w.inline()
	if inline {
		if _, err := w.s.room(w.size, forData); err != nil {
			return Result{}, fmt.Errorf("write: %w", err)
		}
		w.sum.Write(w.buf)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	space, err := w.s.room(0, forCommit)
	if err != nil {
		return Result{}, err
	}
	rec := meta
	rec.ID = w.id
	rec.Size = w.size
	rec.SHA256 = hex.EncodeToString(w.sum.Sum(nil))
	rec.Inline = inline
	rec.Conflict = false
	rec.Destinations = dedupe(destinations)
	if rec.ReceivedAt.IsZero() {
		rec.ReceivedAt = w.s.now()
	}
	var bytes []byte
	if inline {
		bytes = w.buf
	}
	res, err := w.s.commitSynced(&rec, bytes, false)
	if err == nil && res.unchecked {
		// The same bytes again: commit them as the held copy's duplicate
		// once it is read, or as its repair if it is found damaged.
		w.s.checkHeld(ctx, &res.Instance)
		res, err = w.s.commitSynced(&rec, bytes, true)
	}
	if errors.Is(err, ErrWriteFailed) {
		// The record may be visible (and on disk): its file stays, and
		// its id open, so the next Open keeps the file if the record is
		// there and removes it if not.
		w.done = true
		w.putBufs()
		return Result{}, err
	}
	if err != nil {
		return Result{}, err
	}
	res.Space = space
	w.done = true
	w.putBufs()
	w.s.settle(w.id)
	if res.Outcome == Duplicate && !inline {
		// Its doomed marker is on disk: the file may go now, or with the
		// next purge or Open if this fails.
		if err := w.s.removeDoomedIDs([]uint64{w.id}); err != nil {
			w.s.opts.Logger.Warn("store: remove a duplicate's file", "err", err)
		}
	}
	return res, nil
}

// commitSynced runs commitTxn for rec in a synced change.
func (s *Store) commitSynced(rec *Instance, inline []byte, checked bool) (Result, error) {
	var res Result
	err := s.changeSynced(func(txn *badger.Txn) error {
		r := *rec // a change may run again: each run starts from the same record
		var err error
		res, err = s.commitTxn(txn, &r, inline, checked)
		return err
	})
	return res, err
}

// syncFile writes what remains to the file and makes the file and its name
// durable.
func (w *Writer) syncFile() error {
	if err := w.flush(); err != nil {
		return err
	}
	if err := w.waitWrite(); err != nil {
		return err
	}
	err := w.waitAhead()
	if err == nil {
		err = unix.Fdatasync(int(w.f.Fd()))
	}
	dirErr := <-w.dirDone
	w.dirDone = nil
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	if err == nil {
		err = dirErr
	}
	if err != nil {
		w.err = fmt.Errorf("sync file of copy %d: %w", w.id, err)
		return w.err
	}
	w.s.dirSynced(w.s.fileDir(w.id))
	return nil
}

// Abort discards the instance: nothing becomes visible, and its file is
// removed. Abort after Commit does nothing, so it can be deferred.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.unseal()
	if w.dirDone != nil {
		<-w.dirDone
	}
	w.done = true
	w.waitWrite()
	w.waitAhead()
	w.putBufs()
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	if w.inFile == 0 && w.ticket == 0 {
		w.s.settle(w.id)
		return
	}
	// The id stays open until the removal is on disk; if it cannot be,
	// the next Open removes the file.
	ticket, err := w.s.removeFile(w.id)
	if err == nil {
		err = w.s.dirs.wait(ticket)
	}
	if err != nil {
		w.s.opts.Logger.Warn("store: remove an aborted instance's file", "err", err)
		return
	}
	w.s.settle(w.id)
}

// putBufs returns the writer's buffers to the pool; no write may be running.
func (w *Writer) putBufs() {
	w.s.putBuf(w.buf)
	if w.spare != nil {
		w.s.putBuf(w.spare)
	}
	w.buf, w.spare = nil, nil
}

// getBuf returns an empty write buffer. Buffers are pooled: allocating one
// per instance would make the garbage collector the bottleneck at a few
// thousand small instances per second.
func (s *Store) getBuf() []byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, s.bufSize())
}

func (s *Store) putBuf(b []byte) {
	if cap(b) == s.bufSize() {
		s.bufs.Put(&b)
	}
}

// bufSize holds an inline instance whole, and at least writeBuffer.
func (s *Store) bufSize() int { return max(writeBuffer, s.opts.InlineMax+1) }

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
