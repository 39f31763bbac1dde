package store

import (
	"fmt"
	"os"
	"sync"
)

// dirSyncer makes directory entries durable (a new file's name, a removed
// one's absence), sharing one round of fsyncs among every caller waiting for
// it: each directory named since the last round is synced once (group
// commit). File data is synced by whoever wrote it; Badger syncs its own.
type dirSyncer struct {
	mu      sync.Mutex
	cond    sync.Cond
	dirty   map[string]bool // named since the last round began
	issued  uint64          // tickets handed out
	done    uint64          // every ticket up to done is durable
	running bool
	err     error // sticky: after a failed fsync nothing can be promised
	failed  func(error)
}

// newDirSyncer returns a syncer that calls failed, once, when a sync fails.
func newDirSyncer(failed func(error)) *dirSyncer {
	y := &dirSyncer{dirty: map[string]bool{}, failed: failed}
	y.cond.L = &y.mu
	return y
}

// add notes that dir has changed and returns a ticket for wait.
func (y *dirSyncer) add(dir string) uint64 {
	y.mu.Lock()
	defer y.mu.Unlock()
	y.dirty[dir] = true
	y.issued++
	return y.issued
}

// wait returns once the directories named up to ticket are on disk. Tickets
// grow: waiting for one covers every one before it.
func (y *dirSyncer) wait(ticket uint64) error {
	y.mu.Lock()
	defer y.mu.Unlock()
	for y.done < ticket && y.err == nil {
		if y.running {
			y.cond.Wait()
			continue
		}
		// Lead a round: it covers every ticket issued so far, as their
		// directories are all in dirty.
		y.running = true
		target, dirs := y.issued, y.dirty
		y.dirty = map[string]bool{}
		y.mu.Unlock()
		err := syncDirs(dirs)
		y.mu.Lock()
		y.running = false
		if err != nil {
			y.err = err
			y.failed(err)
		} else {
			y.done = target
		}
		y.cond.Broadcast()
	}
	return y.err
}

// syncDirs fsyncs dirs at once: a journaling filesystem can fold them into
// one commit, and no sync waits behind another.
func syncDirs(dirs map[string]bool) error {
	errs := make(chan error, len(dirs))
	var wg sync.WaitGroup
	for dir := range dirs {
		wg.Go(func() { errs <- fsyncPath(dir) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func fsyncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	err = f.Sync() // its error names the path ("sync /…: …")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
