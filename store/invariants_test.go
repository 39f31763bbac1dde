package store

import (
	"context"
	"io"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
)

// checkConsistent asserts what must hold after any crash, once Open ran:
// every record reads back with its hash, every chunk belongs to a record,
// the index and the queue agree with the records, nothing is in flight.
func checkConsistent(t testing.TB, s *Store) map[string]Instance {
	t.Helper()
	recs := map[string]Instance{} // by record key
	owned := map[uint64]int{}     // id → chunks
	err := s.view(func(txn *badger.Txn) error {
		for _, tag := range []byte{tagInstance, tagConflict} {
			err := scanJSON(txn, []byte{tag}, func(k []byte, r *Instance) (bool, error) {
				recs[string(k)] = *r
				owned[r.ID] = r.Chunks
				return true, nil
			})
			if err != nil {
				return err
			}
		}
		chunks := map[uint64]int{}
		err := scan(txn, []byte{tagChunk}, false, func(item *badger.Item) (bool, error) {
			chunks[idFromKey(item.Key())]++
			return true, nil
		})
		if err != nil {
			return err
		}
		for id, n := range chunks {
			if want, ok := owned[id]; !ok || want != n {
				t.Errorf("id %d has %d chunks, its record says %d (owned %v)", id, n, want, ok)
			}
		}
		if n := countIn(txn, tagPending); n != 0 {
			t.Errorf("%d pending markers left after Open", n)
		}
		// Index rows and study sums.
		indexed := map[string]bool{}
		sums := map[string]Study{}
		err = scan(txn, []byte{tagStudyInstance}, false, func(item *badger.Item) (bool, error) {
			v, err := item.ValueCopy(nil)
			r, ok := recs[string(v)]
			if !ok {
				t.Errorf("index row %q points to missing %q", item.Key(), v)
			}
			indexed[string(v)] = true
			sd := sums[r.StudyInstanceUID]
			if r.Conflict {
				sd.Conflicts++
			} else {
				sd.Instances++
				sd.Bytes += r.Size
			}
			sums[r.StudyInstanceUID] = sd
			return true, err
		})
		if err != nil {
			return err
		}
		err = scanJSON(txn, []byte{tagStudy}, func(_ []byte, st *Study) (bool, error) {
			sd := sums[st.StudyInstanceUID]
			if sd.Instances != st.Instances || sd.Bytes != st.Bytes || sd.Conflicts != st.Conflicts {
				t.Errorf("study %s sums %d/%d/%d, rows %d/%d/%d", st.StudyInstanceUID,
					st.Instances, st.Bytes, st.Conflicts, sd.Instances, sd.Bytes, sd.Conflicts)
			}
			delete(sums, st.StudyInstanceUID)
			return true, nil
		})
		if err != nil {
			return err
		}
		if len(sums) != 0 {
			t.Errorf("index rows of studies without a study row: %v", sums)
		}
		// Queue: one entry per destination, waiting rows exactly for waiting entries.
		waiting := map[string]bool{}
		err = scan(txn, []byte{tagWaiting}, false, func(item *badger.Item) (bool, error) {
			waiting[string(item.KeyCopy(nil))] = true
			return true, nil
		})
		if err != nil {
			return err
		}
		entries := 0
		err = scanJSON(txn, []byte{tagQueue}, func(_ []byte, e *Entry) (bool, error) {
			entries++
			if e.State == InFlight {
				t.Errorf("entry %s/%s in flight after Open", e.Dest, e.SOPInstanceUID)
			}
			if e.State.waiting() != waiting[string(waitingKey(e))] {
				t.Errorf("entry %s/%s state %v, waiting row %v", e.Dest, e.SOPInstanceUID, e.State, !e.State.waiting())
			}
			delete(waiting, string(waitingKey(e)))
			if _, ok := recs[string(instanceKey(e.SOPInstanceUID))]; !ok {
				t.Errorf("queue entry for missing instance %s", e.SOPInstanceUID)
			}
			return true, nil
		})
		if len(waiting) != 0 {
			t.Errorf("%d waiting rows without an entry", len(waiting))
		}
		want := 0
		for k, r := range recs {
			if !indexed[k] {
				t.Errorf("record %q is not in the study index", k)
			}
			want += len(r.Destinations)
		}
		if entries != want {
			t.Errorf("%d queue entries, records ask for %d", entries, want)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, r := range recs {
		rd := s.OpenInstance(context.Background(), r)
		if _, err := io.Copy(io.Discard, rd); err != nil {
			t.Errorf("record %q: %v", k, err)
		}
	}
	return recs
}

func countIn(txn *badger.Txn, tag byte) int {
	n := 0
	scan(txn, []byte{tag}, false, func(*badger.Item) (bool, error) { n++; return true, nil })
	return n
}
