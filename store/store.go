// Package store keeps every received instance durably in an embedded Badger
// database, with the index, the forwarding queue and the event log that the
// rest of the box needs. It imports nothing else of the project.
//
// Durability: an instance, its index rows and its queue entries become
// visible in one transaction, and Writer.Commit returns only after that
// transaction is on disk. Queue changes and events are written without
// waiting for the disk; they are made durable by the next commit's sync or
// by Close, and losing the last few after a power cut only repeats work
// (a resend, a commitment request), it never loses an instance.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

var (
	// ErrNotFound is returned when no instance, study or entry has the key.
	ErrNotFound = errors.New("store: not found")
	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("store: closed")
)

// Store is the durable store. Its methods are safe for concurrent use.
type Store struct {
	dir  string
	opts Options
	db   *badger.DB
	sync *syncer
	now  func() time.Time

	// statfs is replaced in tests to pretend a fuller disk.
	statfs func(dir string) (Disk, error)

	// gate is held shared by every Badger write and exclusively by
	// DropPrefix, which makes Badger refuse writes while it runs.
	gate   sync.RWMutex
	closed bool // under gate

	// mu serializes read-modify-write transactions (commits, queue changes,
	// purges). They are small and do not wait for the disk while holding it.
	mu sync.Mutex

	purgeMu sync.Mutex // one purge at a time
	bufs    sync.Pool  // *[]byte chunk buffers of writers

	ids    atomic.Uint64 // last instance id handed out
	liveMu sync.Mutex
	live   map[uint64]bool // ids of open writers: their chunks are not orphans

	// queued names every destination that may have queue entries, so that
	// Stats reads their tallies by key: a scan of the tally rows would pass
	// over every version of them written since the last compaction.
	queuedMu sync.Mutex
	queued   map[string]bool

	eventMu     sync.Mutex
	eventSeq    uint64
	eventCounts map[Kind]int // stored events per kind, as kept in Badger
}

// Open opens (or creates) the store in dir. A store written by an older
// version gets its counts and indexes built once (see checkFormat); one
// written by a newer version is refused with ErrNewerFormat. Open drops
// chunks that no committed instance owns (a crash or an abort left them) and
// returns the leases of in-flight queue entries to pending, so a forward cut
// by a crash is resent.
func Open(dir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	if err := removeEmptyLogs(dir); err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	db, err := badger.Open(opts.badger(dir))
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s := &Store{
		dir:    dir,
		opts:   opts,
		db:     db,
		sync:   newSyncer(dir),
		now:    opts.Now,
		statfs: statfs,
		live:   map[uint64]bool{},

		eventCounts: map[Kind]int{},
		queued:      map[string]bool{},
	}
	for _, step := range []struct {
		what string
		fn   func() error
	}{
		{"check format", s.checkFormat},
		{"find last id", s.loadLastID},
		{"list destinations", s.loadQueued},
		{"sweep orphan chunks", s.dropOrphans},
		{"release leases", s.releaseLeases},
		{"load event counts", s.loadEventCounts},
		{"sync", s.sync.wait},
	} {
		if err := step.fn(); err != nil {
			db.Close()
			return nil, fmt.Errorf("open store %s: %s: %w", dir, step.what, err)
		}
	}
	return s, nil
}

// removeEmptyLogs deletes empty memtable and value log files. Badger
// creates such a file and then sizes it; killed in between, it leaves an
// empty file that makes its next Open fail ("Create a new file"). An empty
// file holds nothing, so removing it loses nothing.
func removeEmptyLogs(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if ext != ".mem" && ext != ".vlog" {
			continue
		}
		info, err := e.Info()
		if err == nil && info.Size() == 0 {
			err = os.Remove(filepath.Join(dir, e.Name()))
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Close makes everything written durable and closes the database. Writers
// still open are abandoned; their chunks are dropped at the next Open.
func (s *Store) Close() error {
	s.gate.Lock()
	defer s.gate.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.dir, err)
	}
	return nil
}

// Dir is the directory holding the store.
func (s *Store) Dir() string { return s.dir }

// write runs fn in a read-write transaction, holding the gate shared.
func (s *Store) write(fn func(txn *badger.Txn) error) error {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.db.Update(fn)
}

// change runs a read-modify-write transaction, serialized with the others.
func (s *Store) change(fn func(txn *badger.Txn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.write(fn)
}

// view runs a read-only transaction.
func (s *Store) view(fn func(txn *badger.Txn) error) error {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.db.View(fn)
}

func getJSON(txn *badger.Txn, k []byte, v any) (bool, error) {
	item, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, item.Value(func(b []byte) error { return json.Unmarshal(b, v) })
}

func setJSON(txn *badger.Txn, k []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return txn.Set(k, b)
}

// scanCheck is how many keys a scan reads between looks at its context:
// a key costs microseconds, so a cancelled scan stops within a millisecond
// or so, and the look costs nothing beside the reads.
const scanCheck = 256

// scan calls fn for each key under prefix, in order (or reverse order),
// until fn says no more or ctx ends (then it returns ctx's error). Values
// are decoded only when fn asks for them with item.Value. Every scan goes
// through here, so a request or loop that is cancelled stops its reads.
func scan(ctx context.Context, txn *badger.Txn, prefix []byte, reverse bool, fn func(item *badger.Item) (more bool, err error)) error {
	start := prefix
	if reverse {
		start = append(append([]byte(nil), prefix...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	}
	return scanFrom(ctx, txn, prefix, start, reverse, fn)
}

// scanFrom is scan from the key start on (start included, if present).
func scanFrom(ctx context.Context, txn *badger.Txn, prefix, start []byte, reverse bool, fn func(item *badger.Item) (more bool, err error)) error {
	o := badger.DefaultIteratorOptions
	o.PrefetchValues = false
	o.Prefix = prefix
	o.Reverse = reverse
	it := txn.NewIterator(o)
	defer it.Close()
	n := 0
	for it.Seek(start); it.Valid(); it.Next() {
		if n%scanCheck == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		n++
		more, err := fn(it.Item())
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// scanJSON decodes each value under prefix into a fresh T and calls fn.
func scanJSON[T any](ctx context.Context, txn *badger.Txn, prefix []byte, fn func(k []byte, v *T) (bool, error)) error {
	return scan(ctx, txn, prefix, false, func(item *badger.Item) (bool, error) {
		v := new(T)
		if err := item.Value(func(b []byte) error { return json.Unmarshal(b, v) }); err != nil {
			return false, fmt.Errorf("decode %q: %w", item.Key(), err)
		}
		return fn(item.KeyCopy(nil), v)
	})
}

// loadLastID finds the highest id in use so new ids never reuse one whose
// chunks may still exist. Ids come from a counter, not the clock, because a
// box without a battery-backed clock may boot in 1970.
func (s *Store) loadLastID() error {
	return s.db.View(func(txn *badger.Txn) error {
		var last uint64
		for _, tag := range []byte{tagChunk, tagPending} {
			err := scan(context.Background(), txn, []byte{tag}, true, func(item *badger.Item) (bool, error) {
				last = max(last, idFromKey(item.Key()))
				return false, nil
			})
			if err != nil {
				return err
			}
		}
		s.ids.Store(last)
		return nil
	})
}
