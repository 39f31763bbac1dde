// Package store keeps every received instance durably: its bytes in a
// plain file (a small one's in the database), and its record, the index, the
// forwarding queue and the event log in an embedded Badger database. It
// imports nothing else of the project.
//
// Durability: an instance, its index rows and its queue entries become
// visible in one transaction, after its file is on disk, and Writer.Commit
// returns only after that transaction is on disk. Badger syncs every
// transaction (SyncWrites); concurrent changes share transactions, and so
// syncs (see changes.go). Queue changes and events return once visible,
// without waiting for their sync: the next transaction waits for it.
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
	// ErrWriteFailed is returned by every change after the disk failed a
	// commit of Badger's, or a directory's sync. What that commit held is
	// visible to reads but not known to be on disk (the names in that
	// directory likewise): Linux reports a writeback error once, so a later
	// sync could succeed over it, and an instance sent again would be found
	// held and acknowledged. Nothing more is written until the store is
	// opened again, after a reboot: what it reads then is what the disk
	// holds.
	ErrWriteFailed = errors.New("store: the disk failed a write; nothing more is written until the box restarts")
)

// Store is the durable store. Its methods are safe for concurrent use.
type Store struct {
	dir     string
	opts    Options
	db      *badger.DB
	changes changes    // group commit of transactions
	dirs    *dirSyncer // group commit of directory entries
	now     func() time.Time

	// statfs is replaced in tests to pretend a fuller disk.
	statfs func(dir string) (Disk, error)

	// gate is held shared by every Badger call and exclusively by Close.
	gate   sync.RWMutex
	closed bool // under gate

	// The swept mark and the highest id issued as last written (see
	// markSwept); zeroed by a failed commit, so that the next one writes
	// them again.
	swept, issued atomic.Uint64

	purgeMu sync.Mutex // one purge at a time
	bufs    sync.Pool  // *[]byte write buffers of writers

	liveMu sync.Mutex
	lastID uint64          // the last id handed out
	live   map[uint64]bool // ids whose files may lack a record (see newID)

	dirsMu   sync.Mutex
	dirsSeen map[string]bool // file directories whose name is on disk

	damagedMu sync.Mutex
	damaged   map[uint64]bool // copies found damaged, reported once

	// queued names every destination that may have queue entries, so that
	// Stats reads their tallies by key: a scan of the tally rows would pass
	// over every version of them written since the last compaction.
	queuedMu sync.Mutex
	queued   map[string]bool

	eventMu     sync.Mutex
	eventSeq    uint64
	eventCounts map[Kind]int // stored events per kind, as kept in Badger

	writeFailed atomic.Pointer[writeFailure] // once a commit failed on the disk

	notDue *notDue // queue entries Lease may pass over unread
}

// writeFailure is the first commit the disk failed (see ErrWriteFailed).
type writeFailure struct {
	err   error // what every change gets: ErrWriteFailed, with the cause
	cause error // Badger's
	at    time.Time
}

// WriteFailure returns, once the disk failed a commit (so that every change
// now fails with ErrWriteFailed), when and Badger's error; nil before.
func (s *Store) WriteFailure() (time.Time, error) {
	if f := s.writeFailed.Load(); f != nil {
		return f.at, f.cause
	}
	return time.Time{}, nil
}

// Open opens (or creates) the store in dir. A store written by an older
// version is upgraded once (see checkFormat); one written by a newer version
// is refused with ErrNewerFormat. Open removes files that no record holds
// (a crash cut their writer) and returns the leases of in-flight queue
// entries to pending, so a forward cut by a crash is resent.
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
		dir:      dir,
		opts:     opts,
		db:       db,
		now:      opts.Now,
		statfs:   statfs,
		live:     map[uint64]bool{},
		dirsSeen: map[string]bool{},
		notDue:   newNotDue(),
		damaged:  map[uint64]bool{},

		eventCounts: map[Kind]int{},
		queued:      map[string]bool{},
	}
	s.changes.cond.L = &s.changes.mu
	// A directory whose sync failed holds names in doubt: nothing more is
	// written, as after a failed commit.
	s.dirs = newDirSyncer(func(err error) { s.failWrites(err) })
	var up upgrade
	for _, step := range []struct {
		what string
		fn   func() error
	}{
		{"check format", func() (err error) { up, err = s.checkFormat(); return err }},
		{"list destinations", s.loadQueued},
		{"sweep files", s.sweepFiles},
		{"release leases", s.releaseLeases},
		{"load event counts", s.loadEventCounts},
		{"add the events kept aside", s.addAside},
		{"report the upgrade", func() error { return s.reportUpgrade(up) }},
	} {
		if err := step.fn(); err != nil {
			s.Close()
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
// still open are abandoned; their files are removed at the next Open.
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
