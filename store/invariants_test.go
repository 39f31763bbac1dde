package store

import (
	"context"
	"io"
	"maps"
	"reflect"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
)

// checkConsistent asserts what must hold after any crash, once Open ran:
// every record reads back with its hash, every file and inline value
// belongs to a record, the index and the queue agree with the records,
// nothing is in flight.
func checkConsistent(t testing.TB, s *Store) map[string]Instance {
	t.Helper()
	recs := map[string]Instance{} // by record key
	byID := map[uint64]string{}   // id → record key
	onDisk := map[uint64]bool{}
	for _, id := range files(t, s) {
		onDisk[id] = true
	}
	err := s.view(func(txn *badger.Txn) error {
		for _, tag := range []byte{tagInstance, tagConflict} {
			err := scanJSON(context.Background(), txn, []byte{tag}, func(k []byte, r *Instance) (bool, error) {
				recs[string(k)] = *r
				if other, ok := byID[r.ID]; ok {
					t.Errorf("records %q and %q share id %d", other, k, r.ID)
				}
				byID[r.ID] = string(k)
				if onDisk[r.ID] == r.Inline {
					t.Errorf("record %q (inline %v) has a file: %v", k, r.Inline, onDisk[r.ID])
				}
				return true, nil
			})
			if err != nil {
				return err
			}
		}
		for id := range onDisk {
			if _, ok := byID[id]; !ok {
				t.Errorf("file of copy %d has no record", id)
			}
		}
		copies := 0
		err := scan(context.Background(), txn, []byte{tagCopy}, false, func(item *badger.Item) (bool, error) {
			copies++
			v, err := item.ValueCopy(nil)
			if k := byID[idFromKey(item.Key())]; k != string(v) {
				t.Errorf("copy row %d points to %q, the record is %q", idFromKey(item.Key()), v, k)
			}
			return true, err
		})
		if err != nil {
			return err
		}
		if copies != len(recs) {
			t.Errorf("%d copy rows, %d records", copies, len(recs))
		}
		err = scan(context.Background(), txn, []byte{tagInline}, false, func(item *badger.Item) (bool, error) {
			id := idFromKey(item.Key())
			switch r, ok := recs[byID[id]]; {
			case !ok:
				t.Errorf("inline bytes of copy %d, which has no record", id)
			case !r.Inline:
				t.Errorf("inline bytes of copy %d, whose record %s has a file", id, r.SOPInstanceUID)
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		for _, tag := range []byte{tagDoomed, tagChunk, tagPending} {
			if n := countIn(txn, tag); n != 0 {
				t.Errorf("%d keys %q left after Open", n, tag)
			}
		}
		// Index rows and study sums.
		indexed := map[string]bool{}
		sums := map[string]Study{}
		err = scan(context.Background(), txn, []byte{tagStudyInstance}, false, func(item *badger.Item) (bool, error) {
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
		err = scanJSON(context.Background(), txn, []byte{tagStudy}, func(_ []byte, st *Study) (bool, error) {
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
		err = scan(context.Background(), txn, []byte{tagWaiting}, false, func(item *badger.Item) (bool, error) {
			waiting[string(item.KeyCopy(nil))] = true
			return true, nil
		})
		if err != nil {
			return err
		}
		entries := 0
		err = scanJSON(context.Background(), txn, []byte{tagQueue}, func(_ []byte, e *Entry) (bool, error) {
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
	checkCounts(t, s)
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
	scan(context.Background(), txn, []byte{tag}, false, func(*badger.Item) (bool, error) { n++; return true, nil })
	return n
}

// recount computes from the records alone, by a full scan, what Stats must
// report (the way Stats counted before the counts were kept), the index
// rows and study tallies the records call for, and the error rows they
// call for with the errors those may hold.
func recount(t testing.TB, s *Store) (Stats, map[string]string, map[string]map[string]bool) {
	t.Helper()
	st := Stats{States: map[State]Tally{}, Queues: map[string]QueueStats{}}
	rows := map[string]string{}          // key → value
	studies := map[string]Tally{}        // study tally key → counter
	errs := map[string]map[string]bool{} // error row key → the errors of its entries
	err := s.view(func(txn *badger.Txn) error {
		st.Studies, st.Patients = countIn(txn, tagStudy), countIn(txn, tagPatient)
		err := scanJSON(context.Background(), txn, []byte{tagInstance}, func(_ []byte, r *Instance) (bool, error) {
			st.Instances.add(1, r.Size)
			if len(r.Destinations) == 0 {
				rows[string(heldKey(r.SOPInstanceUID))] = ""
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		err = scanJSON(context.Background(), txn, []byte{tagConflict}, func(_ []byte, r *Instance) (bool, error) {
			st.Conflicts.add(1, r.Size)
			return true, nil
		})
		if err != nil {
			return err
		}
		return scanJSON(context.Background(), txn, []byte{tagQueue}, func(_ []byte, e *Entry) (bool, error) {
			q := st.Queues[e.Dest]
			if q.States == nil {
				q.States = map[State]Tally{}
			}
			t := q.States[e.State]
			t.add(1, e.Size)
			q.States[e.State] = t
			all := st.States[e.State]
			all.add(1, e.Size)
			st.States[e.State] = all
			if e.State.waiting() {
				q.Depth++
				if q.OldestWaiting.IsZero() || e.ReceivedAt.Before(q.OldestWaiting) {
					q.OldestWaiting = e.ReceivedAt
				}
				w := string(waitingSinceKey(e))
				rows[w] = ""
				if o, ok := rows[string(oldestKey(e.Dest))]; !ok || w < o {
					rows[string(oldestKey(e.Dest))] = w
				}
			}
			if e.State == Delivered {
				rows[string(deliveredKey(e))] = ""
			}
			if e.State == Parked {
				rows[string(parkedKey(e.Dest, e.SOPInstanceUID))] = ""
			}
			addCount(studies, studyTallyKey(e.StudyInstanceUID, e.Dest, e.State), e.Size)
			if e.State.failing() {
				k := string(studyErrorKey(e.StudyInstanceUID, e.Dest))
				if errs[k] == nil {
					errs[k] = map[string]bool{}
				}
				errs[k][e.LastError] = true
			}
			st.Queues[e.Dest] = q
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, c := range studies {
		rows[k] = string(encodeTally(c))
	}
	return st, rows, errs
}

// checkCounts asserts that the kept counts equal a full recount, that the
// derived indexes (and the parked list) and the study tallies hold exactly
// the rows the records call for, and that each study's failing entries at
// a destination, and only those, have an error row. Which error it holds
// depends on the order of the failures, which the entries do not keep.
func checkCounts(t testing.TB, s *Store) {
	t.Helper()
	want, wantRows, wantErrs := recount(t, s)
	got, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if got.Studies != want.Studies || got.Patients != want.Patients ||
		got.Instances != want.Instances || got.Conflicts != want.Conflicts {
		t.Errorf("kept totals: %d studies, %d patients, instances %+v, conflicts %+v; recount: %d, %d, %+v, %+v",
			got.Studies, got.Patients, got.Instances, got.Conflicts,
			want.Studies, want.Patients, want.Instances, want.Conflicts)
	}
	if !reflect.DeepEqual(got.States, want.States) {
		t.Errorf("kept states %v, recount %v", got.States, want.States)
	}
	dests := maps.Collect(maps.All(got.Queues))
	maps.Copy(dests, want.Queues)
	for dest := range dests {
		g, w := got.Queues[dest], want.Queues[dest]
		if g.Depth != w.Depth || !reflect.DeepEqual(g.States, w.States) || !g.OldestWaiting.Equal(w.OldestWaiting) {
			t.Errorf("queue %s kept %+v, recount %+v", dest, g, w)
		}
	}
	gotRows := map[string]string{}
	gotErrs := map[string]string{}
	err = s.view(func(txn *badger.Txn) error {
		if err := readRows(txn, gotErrs, tagStudyError); err != nil {
			return err
		}
		return readRows(txn, gotRows, tagHeld, tagWaitingSince, tagOldest, tagDelivered, tagParked, tagStudyTally)
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range gotRows {
		if w, ok := wantRows[k]; !ok {
			t.Errorf("index row %q has no record calling for it", k)
		} else if v != w {
			t.Errorf("index row %q holds %q, want %q", k, v, w)
		}
	}
	for k := range wantRows {
		if _, ok := gotRows[k]; !ok {
			t.Errorf("index row %q is missing", k)
		}
	}
	for k, v := range gotErrs {
		if _, ok := wantErrs[k]; !ok {
			t.Errorf("error row %q (%q) has no failing entry calling for it", k, v)
		} else if v == "" {
			t.Errorf("error row %q is empty", k)
		}
	}
	for k, errs := range wantErrs {
		if _, ok := gotErrs[k]; !ok {
			t.Errorf("error row %q is missing (its entries failed with %v)", k, errs)
		}
	}
}

// readRows adds the keys and values under tags to rows.
func readRows(txn *badger.Txn, rows map[string]string, tags ...byte) error {
	for _, tag := range tags {
		err := scan(context.Background(), txn, []byte{tag}, false, func(item *badger.Item) (bool, error) {
			v, err := item.ValueCopy(nil)
			rows[string(item.KeyCopy(nil))] = string(v)
			return true, err
		})
		if err != nil {
			return err
		}
	}
	return nil
}
