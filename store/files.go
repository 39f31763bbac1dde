package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	badger "github.com/dgraph-io/badger/v4"
)

// Instance bytes in files.
//
// Each copy's bytes (but a small one's, kept in its record's transaction: see
// Options.InlineMax) are a plain file, files/<id/4096>/<id> in hex, written
// with write(2) and fdatasync(2). No mmap: Badger's memory-mapped value log
// took a page fault on every fresh page, and its mapped pages counted as the
// process's memory. Ids grow, so writers at the same time write into the same
// directory and one directory sync covers them all, and the files that Open
// checks are in the last directories.
//
// A copy exists once its record commits, which is after its file and the
// file's name are on disk. Every file without a record is found again:
//   - a writer's file has an id above the swept mark until its record (or,
//     for a duplicate, a doomed marker) commits or the file is removed for
//     good; the mark is written with every transaction, below the lowest
//     id of an open writer, and Open checks the files above it;
//   - a file whose record is deleted (purge, a conflict resolved) has a
//     doomed marker, written in the same transaction, until it is removed.
const (
	filesDir = "files"
	dirShift = 12 // 4096 ids per directory
)

func (s *Store) fileDir(id uint64) string {
	return filepath.Join(s.dir, filesDir, strconv.FormatUint(id>>dirShift, 16))
}

func (s *Store) filePath(id uint64) string {
	return filepath.Join(s.fileDir(id), strconv.FormatUint(id, 16))
}

// newID hands out an id, open until settle: its file, if it gets one, may
// lack a record until then.
func (s *Store) newID() uint64 {
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	s.lastID++
	s.live[s.lastID] = true
	return s.lastID
}

// settle closes id: its file is recorded, doomed, or durably gone.
func (s *Store) settle(id uint64) {
	s.liveMu.Lock()
	delete(s.live, id)
	s.liveMu.Unlock()
}

// markSwept writes in txn the swept mark, when it moved: the highest id below
// every open one. Called by tryBatch, one batch at a time. An id closed
// before txn commits is settled on disk by then (see settle's callers).
func (s *Store) markSwept(txn *badger.Txn) error {
	s.liveMu.Lock()
	mark := s.lastID
	for id := range s.live {
		mark = min(mark, id-1)
	}
	issued := s.lastID
	s.liveMu.Unlock()
	if mark != s.swept.Load() {
		if err := txn.Set(sweptKey(), binary.BigEndian.AppendUint64(nil, mark)); err != nil {
			return err
		}
		s.swept.Store(mark)
	}
	// Every key holding an id is written after the id was issued, so the
	// counter on disk is at least every id the disk holds: no id is issued
	// twice across a crash (an inline copy leaves no file to find it by).
	if issued != s.issued.Load() {
		if err := txn.Set(issuedKey(), binary.BigEndian.AppendUint64(nil, issued)); err != nil {
			return err
		}
		s.issued.Store(issued)
	}
	return nil
}

// markFailed makes the next batch write the swept mark and the counter
// again: the commit that carried them failed.
func (s *Store) markFailed() {
	s.swept.Store(0)
	s.issued.Store(0)
}

// createFile creates copy id's file and returns it with a ticket that covers
// its name (and its directory's, for the first file there since Open).
func (s *Store) createFile(id uint64) (*os.File, uint64, error) {
	dir := s.fileDir(id)
	var ticket uint64
	s.dirsMu.Lock()
	fresh := !s.dirsSeen[dir]
	s.dirsMu.Unlock()
	if fresh {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, 0, fmt.Errorf("create %s: %w", dir, err)
		}
		// Its name is synced with this file's, whoever made it: it may be
		// in the page cache only, left by a process killed a moment ago.
		s.dirs.add(filepath.Dir(dir))
	}
	f, err := os.OpenFile(s.filePath(id), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("create file of copy %d: %w", id, err)
	}
	ticket = s.dirs.add(dir)
	return f, ticket, nil
}

// dirSynced notes that dir's name is on disk (a ticket covering it came
// back), so the files after need not sync its parent again.
func (s *Store) dirSynced(dir string) {
	s.dirsMu.Lock()
	s.dirsSeen[dir] = true
	s.dirsMu.Unlock()
}

// removeFile removes copy id's file, if any, and returns a ticket covering
// its removal.
func (s *Store) removeFile(id uint64) (uint64, error) {
	if err := os.Remove(s.filePath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("remove file of copy %d: %w", id, err)
	}
	return s.dirs.add(s.fileDir(id)), nil
}

// dropBytes, in the transaction that deletes rec's record, deletes its
// bytes: inline ones at once, a file by a doomed marker (see removeDoomed);
// and its damage mark, if any.
func dropBytes(txn *badger.Txn, rec *Instance) error {
	if err := txn.Delete(copyKey(rec.ID)); err != nil {
		return err
	}
	if err := dropDamage(txn, rec); err != nil {
		return err
	}
	if rec.Inline {
		return txn.Delete(inlineKey(rec.ID))
	}
	return txn.Set(doomedKey(rec.ID), nil)
}

// removeDoomed removes the files of doomed markers, syncs their directories,
// then deletes the markers. Reading the markers waits for the transactions
// that wrote them to be on disk, so no file goes before its record.
func (s *Store) removeDoomed() error {
	const page = 1000
	for {
		var ids []uint64
		err := s.view(func(txn *badger.Txn) error {
			return scan(context.Background(), txn, []byte{tagDoomed}, false, func(item *badger.Item) (bool, error) {
				ids = append(ids, idFromKey(item.Key()))
				return len(ids) < page, nil
			})
		})
		if err == nil {
			err = s.removeDoomedIDs(ids)
		}
		if err != nil || len(ids) < page {
			return err
		}
	}
}

// removeDoomedIDs removes the files of ids, whose doomed markers are on
// disk, then the markers once the removals are.
func (s *Store) removeDoomedIDs(ids []uint64) error {
	if len(ids) == 0 {
		return nil
	}
	var ticket uint64
	var err error
	for _, id := range ids {
		if ticket, err = s.removeFile(id); err != nil {
			return err
		}
	}
	if err := s.dirs.wait(ticket); err != nil {
		return err
	}
	return s.change(func(txn *badger.Txn) error {
		for _, id := range ids {
			if err := txn.Delete(doomedKey(id)); err != nil {
				return err
			}
		}
		return nil
	})
}

// sweepFiles runs at Open, before any writer: it removes the files above the
// swept mark that no record holds (writers cut by a crash) and the doomed
// ones, and finds the highest id in use so that no id is handed out twice.
// Ids come from a counter, not the clock: a box without a battery-backed
// clock may boot in 1970.
func (s *Store) sweepFiles() error {
	if err := os.MkdirAll(filepath.Join(s.dir, filesDir), 0o700); err != nil {
		return err
	}
	swept, err := s.readID(sweptKey())
	if err != nil {
		return err
	}
	issued, err := s.readID(issuedKey())
	if err != nil {
		return err
	}
	last := max(swept, issued)
	err = s.db.View(func(txn *badger.Txn) error {
		for _, tag := range []byte{tagCopy, tagDoomed} {
			err := scan(context.Background(), txn, []byte{tag}, true, func(item *badger.Item) (bool, error) {
				last = max(last, idFromKey(item.Key()))
				return false, nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	above, err := s.filesAbove(swept)
	if err != nil {
		return err
	}
	var orphans []uint64
	err = s.db.View(func(txn *badger.Txn) error {
		for _, id := range above {
			last = max(last, id)
			_, err := txn.Get(copyKey(id))
			if errors.Is(err, badger.ErrKeyNotFound) {
				orphans = append(orphans, id)
			} else if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	ticket := s.dirs.add(filepath.Join(s.dir, filesDir))
	s.dirs.add(s.dir)
	for _, id := range orphans {
		if ticket, err = s.removeFile(id); err != nil {
			return err
		}
	}
	if err := s.dirs.wait(ticket); err != nil {
		return err
	}
	if len(orphans) > 0 {
		s.opts.Logger.Info("removed files no record holds (writers cut by a crash)", "dir", s.dir, "files", len(orphans))
	}
	if err := s.removeDoomed(); err != nil {
		return err
	}
	s.lastID = last
	return s.changeSynced(func(*badger.Txn) error { return nil }) // writes the mark: last
}

// filesAbove lists the ids of the files above id.
func (s *Store) filesAbove(id uint64) ([]uint64, error) {
	root := filepath.Join(s.dir, filesDir)
	dirs, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for _, d := range dirs {
		n, err := strconv.ParseUint(d.Name(), 16, 64)
		if err != nil || !d.IsDir() || n < id>>dirShift {
			continue
		}
		files, err := os.ReadDir(filepath.Join(root, d.Name()))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if n, err := strconv.ParseUint(f.Name(), 16, 64); err == nil && n > id {
				ids = append(ids, n)
			}
		}
	}
	return ids, nil
}
