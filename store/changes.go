package store

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Group commit of the store's changes.
//
// Badger runs with SyncWrites on: a transaction is on disk when its commit
// completes, and a new transaction waits for every commit before it to
// complete (its read timestamp covers them). The store's changes read what
// they modify (counts, study sums, queue entries), so they run one after the
// other; a Badger transaction each would cost one disk sync each, in a row,
// and concurrent senders would not go faster than one. Instead the changes
// that arrive while a transaction is being synced are applied together, in
// arrival order, in the next one: many changes, one sync.

// maxBatch bounds the changes in one transaction. A batch that does not fit
// Badger's transaction limit is split anyway (see commitBatch).
const maxBatch = 128

// change is one caller's read-modify-write, waiting to be applied.
type change struct {
	fn     func(txn *badger.Txn) error
	synced bool // the caller waits until it is on disk, not only visible
	done   bool // under changes.mu
	err    error
}

type changes struct {
	mu      sync.Mutex
	cond    sync.Cond
	queue   []*change
	running bool // a leader is applying a batch

	txns, applied atomic.Int64 // transactions sent, changes in them (benchmarks report the ratio)
	visible       atomic.Int64 // transactions visible to every later read (Generation)
}

// change applies fn in a read-write transaction, serialized with every other
// change, and returns once it is visible to every later read. It is on disk
// once the transaction's sync completes, which every later transaction
// waits for: queue changes and events need no more. fn may run more than
// once (when a change batched with it fails); only its last run counts, so
// it must not keep state across runs.
func (s *Store) change(fn func(txn *badger.Txn) error) error { return s.apply(fn, false) }

// changeSynced is change, returning only once the transaction is on disk.
func (s *Store) changeSynced(fn func(txn *badger.Txn) error) error { return s.apply(fn, true) }

func (s *Store) apply(fn func(txn *badger.Txn) error, synced bool) error {
	if f := s.writeFailed.Load(); f != nil {
		return f.err
	}
	g := &s.changes
	c := &change{fn: fn, synced: synced}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.queue = append(g.queue, c)
	for !c.done {
		if g.running || len(g.queue) == 0 { // applied, its sync pending; or another leads
			g.cond.Wait()
			continue
		}
		// Lead one batch. Wait first for the transaction being synced, so
		// that the changes arriving meanwhile join this batch.
		g.running = true
		g.mu.Unlock()
		s.awaitCommits()
		g.mu.Lock()
		batch := g.queue[:min(len(g.queue), maxBatch)]
		g.queue = append([]*change(nil), g.queue[len(batch):]...)
		g.mu.Unlock()
		rest := s.commitBatch(batch)
		g.mu.Lock()
		g.queue = append(append([]*change(nil), rest...), g.queue...)
		g.running = false
		g.cond.Broadcast()
	}
	return c.err
}

// awaitCommits returns once every transaction committed before the call is
// on disk: a new transaction waits for them.
func (s *Store) awaitCommits() {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if !s.closed {
		s.db.NewTransaction(false).Discard()
	}
}

// commitBatch applies batch in one transaction and sends it to Badger. A
// change that fails gets its error and the changes before it are applied
// again without it; a change that does not fit goes back to the queue with
// those after it. It returns the changes it did not finish.
func (s *Store) commitBatch(batch []*change) (rest []*change) {
	n, err := s.tryBatch(batch)
	if n == len(batch) {
		return nil
	}
	if n == 0 || !errors.Is(err, badger.ErrTxnTooBig) {
		s.finish([]*change{batch[n]}, err)
		rest = batch[n+1:]
	} else {
		rest = batch[n:]
	}
	if n == 0 {
		return rest
	}
	return append(append([]*change(nil), s.commitBatch(batch[:n])...), rest...)
}

// tryBatch runs batch in one transaction. If all succeed it sends the
// transaction, finishes the changes that need not wait for the disk and
// leaves the others to the commit's callback, and returns len(batch).
// Otherwise it discards the transaction and returns the index of the change
// that failed, and its error.
func (s *Store) tryBatch(batch []*change) (int, error) {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.closed {
		s.finish(batch, ErrClosed)
		return len(batch), nil
	}
	txn := s.db.NewTransaction(true)
	// The mark first: the changes do not open ids, and a batch too big
	// then splits at a change, never at the mark.
	if err := s.markSwept(txn); err != nil {
		txn.Discard()
		s.notDue.clear()
		s.markFailed()
		s.finish(batch, err)
		return len(batch), nil
	}
	for i, c := range batch {
		if err := c.fn(txn); err != nil {
			txn.Discard()
			s.notDue.clear() // what the batch noted was never so
			s.markFailed()   // written into a discarded transaction
			return i, err
		}
	}
	var synced, visible []*change
	for _, c := range batch {
		if c.synced {
			synced = append(synced, c)
		} else {
			visible = append(visible, c)
		}
	}
	s.changes.txns.Add(1)
	s.changes.applied.Add(int64(len(batch)))
	txn.CommitWith(func(err error) {
		if err != nil {
			s.opts.Logger.Error("store: commit failed", "dir", s.dir, "err", err)
			s.notDue.clear()
			s.markFailed()
			err = s.failWrites(err)
		}
		s.finish(synced, err)
	})
	// The transaction has its commit timestamp: every later read waits for
	// it, so it is visible to whoever reads next.
	s.changes.visible.Add(1)
	s.finish(visible, nil)
	return len(batch), nil
}

// failWrites stops every later change after the disk failed a write: a
// commit of Badger's (unless its failure left nothing in doubt) or a
// directory's sync (see ErrWriteFailed). It returns the error to give.
func (s *Store) failWrites(err error) error {
	if errors.Is(err, badger.ErrConflict) || errors.Is(err, badger.ErrBlockedWrites) || errors.Is(err, badger.ErrDBClosed) {
		return err
	}
	f := &writeFailure{err: fmt.Errorf("%w (%v)", ErrWriteFailed, err), cause: err, at: time.Now()}
	if s.writeFailed.CompareAndSwap(nil, f) {
		s.opts.Logger.Error("store: the disk failed a write; the store writes nothing more until the box restarts", "dir", s.dir, "err", err)
	}
	return s.writeFailed.Load().err
}

func (s *Store) finish(cs []*change, err error) {
	if len(cs) == 0 {
		return
	}
	g := &s.changes
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range cs {
		c.done, c.err = true, err
	}
	g.cond.Broadcast()
}

// Generation counts the transactions made visible since Open. An answer built
// from reads made after taking it holds every change it counts, so the
// answer stays true while Generation has not moved (a change may also
// leave it true: it says "maybe changed", never "unchanged" wrongly).
func (s *Store) Generation() int64 { return s.changes.visible.Load() }
