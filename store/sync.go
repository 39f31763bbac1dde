package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// syncer makes written data durable, sharing one round of fsyncs among all
// the commits waiting for it (group commit).
//
// Badger runs with SyncWrites off, and its own DB.Sync covers only the current
// memtable log and value log file: a chunk written before a file rotation
// would not be covered. So a round fsyncs every value log (.vlog) and memtable
// log (.mem) file that may hold unsynced writes: the newest of each kind every
// time, older ones once (after rotation Badger never writes them again), and
// the directory when files appeared. Tables (.sst) and the manifest are
// synced by Badger itself.
type syncer struct {
	dir string

	mu      sync.Mutex
	cond    sync.Cond
	issued  uint64 // tickets handed out
	done    uint64 // every ticket up to done is durable
	running bool
	err     error // sticky: after a failed fsync nothing can be promised

	// Only the goroutine running a round touches these.
	sealed map[string]bool // synced after it stopped being written
	known  map[string]bool // names present at the last round
}

func newSyncer(dir string) *syncer {
	y := &syncer{dir: dir, sealed: map[string]bool{}, known: map[string]bool{}}
	y.cond.L = &y.mu
	return y
}

// wait returns once everything written before the call is on disk.
func (y *syncer) wait() error {
	y.mu.Lock()
	defer y.mu.Unlock()
	y.issued++
	ticket := y.issued
	for y.done < ticket && y.err == nil {
		if y.running {
			y.cond.Wait()
			continue
		}
		// Lead a round. It starts after every write of the tickets issued so
		// far completed, so it covers them all.
		y.running = true
		target := y.issued
		y.mu.Unlock()
		err := y.round()
		y.mu.Lock()
		y.running = false
		if err != nil {
			y.err = err
		} else {
			y.done = target
		}
		y.cond.Broadcast()
	}
	return y.err
}

func (y *syncer) round() error {
	entries, err := os.ReadDir(y.dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", y.dir, err)
	}
	newest := map[string]int{}
	var names []string
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if ext != ".vlog" && ext != ".mem" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(e.Name(), ext))
		if err != nil {
			continue
		}
		names = append(names, e.Name())
		if n > newest[ext] {
			newest[ext] = n
		}
	}
	appeared := false
	present := make(map[string]bool, len(names))
	var todo []string
	for _, name := range names {
		present[name] = true
		if !y.known[name] {
			appeared = true
		}
		if !y.sealed[name] {
			todo = append(todo, name)
		}
	}
	// fsync the files at once: the filesystem can fold them into one
	// journal commit.
	errs := make([]error, len(todo))
	var wg sync.WaitGroup
	for i, name := range todo {
		wg.Go(func() { errs[i] = fsyncFile(filepath.Join(y.dir, name)) })
	}
	wg.Wait()
	for i, name := range todo {
		if errs[i] != nil {
			if errors.Is(errs[i], fs.ErrNotExist) {
				continue // a memtable flushed to a (synced) table meanwhile
			}
			return errs[i]
		}
		ext := filepath.Ext(name)
		if n, _ := strconv.Atoi(strings.TrimSuffix(name, ext)); n < newest[ext] {
			y.sealed[name] = true
		}
	}
	for name := range y.sealed {
		if !present[name] {
			delete(y.sealed, name)
		}
	}
	y.known = present
	if appeared {
		return fsyncFile(y.dir)
	}
	return nil
}

func fsyncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return nil
}
