package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// The upgrade from format 2: instance bytes were chunks in Badger (tagChunk,
// a piece of up to 1 MiB each, in the value log), with a pending marker
// (tagPending) for the chunks of a writer not yet committed. They move to
// files once, at the first Open, in id order and a batch at a time: each
// batch's files are synced, then the batch is recorded as moved (movedKey),
// then its chunks are dropped and the value log collected. So the upgrade
// needs little more free space than one batch, and one cut short goes on
// from the last batch recorded.

// Bounds of one batch of the move (variables: tests make batches small).
var (
	moveBatchCopies       = 1000
	moveBatchBytes  int64 = 64 << 20
)

// tagMoved is the upgrade's progress: every copy up to that id is in its file.
const tagMoved = 'm' // m → id, 8 bytes

func movedKey() key { return newKey(tagMoved) }

// moveChunks moves the bytes of every copy held as chunks into its file, and
// returns how many it moved. total is the number of copies, for the log.
func (s *Store) moveChunks(total int) (int, error) {
	moved, err := s.writeCopyRows()
	if err != nil {
		return 0, err
	}
	done, err := s.readID(movedKey())
	if err != nil {
		return 0, err
	}
	swept, err := s.readID(sweptKey())
	if err != nil {
		return 0, err
	}
	start, first := time.Now(), true
	for {
		ids, n, err := s.moveBatch(done)
		if err != nil || len(ids) == 0 {
			if moved > 0 && err == nil {
				s.opts.Logger.Info("instances moved to files", "dir", s.dir, "moved", moved, "took", time.Since(start).Round(time.Millisecond))
			}
			return moved, err
		}
		if first {
			first = false
			s.opts.Logger.Info(fmt.Sprintf("moving instance bytes from the database to files: %d instances…", total), "dir", s.dir)
		}
		if err := syncFS(s.dir); err != nil {
			return moved, err
		}
		done = ids[len(ids)-1]
		swept = max(swept, done) // every file up to done has its record
		err = s.db.Update(func(txn *badger.Txn) error {
			if err := txn.Set(sweptKey(), binary.BigEndian.AppendUint64(nil, swept)); err != nil {
				return err
			}
			return txn.Set(movedKey(), binary.BigEndian.AppendUint64(nil, done))
		})
		if err != nil {
			return moved, err
		}
		var prefixes [][]byte
		for _, id := range ids {
			prefixes = append(prefixes, chunkPrefix(id))
		}
		if err := s.db.DropPrefix(prefixes...); err != nil {
			return moved, fmt.Errorf("drop moved chunks: %w", err)
		}
		s.gcValueLog()
		moved += n
		s.opts.Logger.Info(fmt.Sprintf("moved %d of %d instances to files", moved, total), "dir", s.dir)
	}
}

// writeCopyRows writes the copy row of every record (format 3 finds a
// copy's record by its id), and the empty file of an empty copy (format 2
// had no chunk for it).
func (s *Store) writeCopyRows() (empty int, err error) {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	err = s.db.View(func(txn *badger.Txn) error {
		for _, tag := range []byte{tagInstance, tagConflict} {
			err := scanJSON(context.Background(), txn, []byte{tag}, func(k []byte, r *Instance) (bool, error) {
				if r.Size == 0 && !r.Inline {
					made, err := writeEmpty(s.fileDir(r.ID), s.filePath(r.ID))
					if err != nil {
						return false, err
					}
					if made {
						empty++
					}
				}
				return true, wb.Set(copyKey(r.ID), k)
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = wb.Flush()
	}
	if err != nil {
		return 0, fmt.Errorf("write copy rows: %w", err)
	}
	return empty, nil
}

// moveBatch writes the files of the copies held as chunks after id done, up
// to a batch, without syncing them. It returns the ids whose chunks it read
// (chunks no record holds are skipped: an aborted writer's) and how many
// files it wrote.
func (s *Store) moveBatch(done uint64) (ids []uint64, files int, err error) {
	var f *os.File
	var bytes int64
	closeFile := func() error {
		if f == nil {
			return nil
		}
		err := f.Close()
		f = nil
		return err
	}
	defer closeFile()
	err = s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.PrefetchValues = false
		o.Prefix = []byte{tagChunk}
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Seek(chunkPrefix(done + 1)); it.Valid(); it.Next() {
			item := it.Item()
			id := idFromKey(item.Key())
			if len(ids) == 0 || ids[len(ids)-1] != id {
				if len(ids) >= moveBatchCopies || bytes >= moveBatchBytes {
					return nil
				}
				if err := closeFile(); err != nil {
					return err
				}
				ids = append(ids, id)
				_, err := txn.Get(copyKey(id))
				if errors.Is(err, badger.ErrKeyNotFound) {
					continue // no record: an aborted writer's chunks
				}
				if err != nil {
					return err
				}
				if err := os.MkdirAll(s.fileDir(id), 0o700); err != nil {
					return err
				}
				if f, err = os.Create(s.filePath(id)); err != nil {
					return err
				}
				files++
			}
			if f == nil {
				continue
			}
			err := item.Value(func(b []byte) error {
				bytes += int64(len(b))
				_, err := f.Write(b)
				return err
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = closeFile()
	}
	return ids, files, err
}

// writeEmpty creates an empty file at path unless there is one.
func writeEmpty(dir, path string) (bool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, f.Close()
}

// dropChunks drops what is left of format 2's keys, if anything.
func (s *Store) dropChunks() error {
	left := false
	err := s.db.View(func(txn *badger.Txn) error {
		for _, tag := range []byte{tagChunk, tagPending} {
			err := scan(context.Background(), txn, []byte{tag}, false, func(*badger.Item) (bool, error) {
				left = true
				return false, nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || !left {
		return err
	}
	if err := s.db.DropPrefix([]byte{tagChunk}, []byte{tagPending}); err != nil {
		return fmt.Errorf("drop chunks: %w", err)
	}
	s.gcValueLog()
	return nil
}

// readID reads an 8-byte id under k, 0 if there is none.
func (s *Store) readID(k key) (uint64, error) {
	id, _, err := s.readUint64(k)
	return id, err
}

// readUint64 reads an 8-byte number under k, and whether there is one.
func (s *Store) readUint64(k key) (v uint64, found bool, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(k)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error {
			if len(b) != 8 {
				return fmt.Errorf("%q: %d bytes, want 8", k, len(b))
			}
			v, found = binary.BigEndian.Uint64(b), true
			return nil
		})
	})
	return v, found, err
}

// syncFS makes every file written on dir's filesystem durable, names
// included: one call for a whole batch of the upgrade's files.
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}
