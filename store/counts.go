package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	badger "github.com/dgraph-io/badger/v4"
)

// Counts kept current. Every transaction that adds, removes or changes a
// record also updates, in the same transaction, the totals (tagTotal) and
// the per-destination tallies (tagTally) that describe it. These
// transactions are serialized, one batch at a time (see change), so each
// read-modify-write of a counter sees the one before it; being in the same Badger transaction,
// a counter is exactly as durable as the change it counts, after a crash
// too. Stats then reads a few keys instead of decoding the whole store.

// tallyLen is the encoded size of a Tally: count and bytes, 8 bytes each.
const tallyLen = 16

func encodeTally(t Tally) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, tallyLen), uint64(t.Count))
	return binary.BigEndian.AppendUint64(b, uint64(t.Bytes))
}

func decodeTally(b []byte) (Tally, error) {
	if len(b) != tallyLen {
		return Tally{}, fmt.Errorf("counter of %d bytes, want %d", len(b), tallyLen)
	}
	return Tally{Count: int(int64(binary.BigEndian.Uint64(b))), Bytes: int64(binary.BigEndian.Uint64(b[8:]))}, nil
}

// readTally returns the counter under k; a missing key counts zero.
func readTally(txn *badger.Txn, k []byte) (Tally, error) {
	item, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Tally{}, nil
	}
	if err != nil {
		return Tally{}, err
	}
	return itemTally(item)
}

// itemTally decodes the counter item holds.
func itemTally(item *badger.Item) (Tally, error) {
	var t Tally
	err := item.Value(func(b []byte) error {
		var err error
		t, err = decodeTally(b)
		return err
	})
	if err != nil {
		return Tally{}, fmt.Errorf("read counter %q: %w", item.Key(), err)
	}
	return t, nil
}

// bump adds n and bytes to the counter under k. A counter back at zero is
// deleted, so a destination that holds nothing any more has no tally rows.
// Call it only inside change, where no other transaction writes counters.
func bump(txn *badger.Txn, k []byte, n int, bytes int64) error {
	t, err := readTally(txn, k)
	if err != nil {
		return err
	}
	t.add(n, bytes)
	if t == (Tally{}) {
		return txn.Delete(k)
	}
	return txn.Set(k, encodeTally(t))
}

func bumpTotal(txn *badger.Txn, name string, n int, bytes int64) error {
	return bump(txn, totalKey(name), n, bytes)
}

// entryTallies are the counters an entry counts in: its destination's
// tally of its state, and its study's at that destination (which the
// console's list of studies reads instead of the study's entries).
func entryTallies(e *Entry) []key {
	return []key{tallyKey(e.Dest, e.State), studyTallyKey(e.StudyInstanceUID, e.Dest, e.State)}
}

// retally moves an entry's count from its old state to its new one (old is
// nil for a new entry, e nil for a removed one), and keeps its study's
// error row.
func retally(txn *badger.Txn, old, e *Entry) error {
	same := old != nil && e != nil && old.Dest == e.Dest && old.StudyInstanceUID == e.StudyInstanceUID &&
		old.State == e.State && old.Size == e.Size
	if !same && old != nil {
		for _, k := range entryTallies(old) {
			if err := bump(txn, k, -1, -old.Size); err != nil {
				return err
			}
		}
	}
	if !same && e != nil {
		for _, k := range entryTallies(e) {
			if err := bump(txn, k, 1, e.Size); err != nil {
				return err
			}
		}
	}
	return keepStudyError(txn, old, e)
}

// A study's failed and parked entries at a destination share one error row
// (tagStudyError), shown beside their counts: the error most recently
// recorded by one of them, kept until none of them is left (the row of a
// purged study goes with its last entry). Which one failed last is not in
// the entries, so the row is the only place that knows.
func keepStudyError(txn *badger.Txn, old, e *Entry) error {
	if e != nil && e.State.failing() {
		if old != nil && old.State.failing() && old.LastError == e.LastError && old.Attempts == e.Attempts {
			return nil // no new failure (marked urgent, say)
		}
		return txn.Set(studyErrorKey(e.StudyInstanceUID, e.Dest), []byte(e.LastError))
	}
	if old == nil || !old.State.failing() {
		return nil
	}
	for _, st := range []State{Failed, Parked} {
		t, err := readTally(txn, studyTallyKey(old.StudyInstanceUID, old.Dest, st))
		if err != nil || t.Count > 0 {
			return err
		}
	}
	return txn.Delete(studyErrorKey(old.StudyInstanceUID, old.Dest))
}

// The oldest waiting entry of each destination (tagOldest) is a pointer to
// the first row of its receive-time index (tagWaitingSince), kept so that
// Stats reads one key. Seeking that index from its start instead would pass
// over the deletion markers of every entry delivered since the last
// compaction reached the bottom level: the head of a queue is where rows
// are deleted. Moving the pointer when its row goes seeks from that row,
// so each marker is passed over about once.

// oldestAdded notes the new waiting row k: it may be its destination's
// oldest.
func oldestAdded(txn *badger.Txn, k []byte) error {
	dest, _, _ := destTimeUID(k)
	cur, err := getRaw(txn, oldestKey(dest))
	if err != nil {
		return err
	}
	if cur != nil && bytes.Compare(cur, k) <= 0 {
		return nil
	}
	return txn.Set(oldestKey(dest), k)
}

// oldestRemoved notes that the waiting row k was deleted: if it was its
// destination's oldest, the next row is. It opens an iterator, so it must
// not run inside a scan of the same transaction.
func oldestRemoved(txn *badger.Txn, k []byte) error {
	dest, _, _ := destTimeUID(k)
	cur, err := getRaw(txn, oldestKey(dest))
	if err != nil || !bytes.Equal(cur, k) {
		return err
	}
	var next []byte
	err = scanFrom(context.Background(), txn, waitingSincePrefix(dest), append(bytes.Clone(k), 0), false, func(item *badger.Item) (bool, error) {
		next = item.KeyCopy(nil)
		return false, nil
	})
	if err != nil {
		return err
	}
	if next == nil {
		return txn.Delete(oldestKey(dest))
	}
	return txn.Set(oldestKey(dest), next)
}

// getRaw returns the value under k, nil if there is none.
func getRaw(txn *badger.Txn, k []byte) ([]byte, error) {
	item, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// noteQueued records that dest may have queue entries. Call it before the
// transaction that queues the first one: a name noted for nothing costs
// Stats a few reads of missing keys.
func (s *Store) noteQueued(dest string) {
	s.queuedMu.Lock()
	s.queued[dest] = true
	s.queuedMu.Unlock()
}

// queuedDests lists the destinations noted.
func (s *Store) queuedDests() []string {
	s.queuedMu.Lock()
	defer s.queuedMu.Unlock()
	return slices.Collect(maps.Keys(s.queued))
}

// loadQueued notes, at Open, the destinations that have tallies: every one
// with queue entries has at least one.
func (s *Store) loadQueued() error {
	return s.db.View(func(txn *badger.Txn) error {
		return scan(context.Background(), txn, []byte{tagTally}, false, func(item *badger.Item) (bool, error) {
			dest, _ := readStr(item.Key()[1:])
			s.noteQueued(dest)
			return true, nil
		})
	})
}
