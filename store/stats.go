package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Tally counts instances and their bytes.
type Tally struct {
	Count int
	Bytes int64
}

func (t *Tally) add(n int, bytes int64) { t.Count += n; t.Bytes += bytes }

// QueueStats describes one destination's queue.
type QueueStats struct {
	States        map[State]Tally
	Depth         int       // entries still to deliver (pending, in flight, failed)
	OldestWaiting time.Time // receive time of the oldest of them; zero if none
}

// Stats is a snapshot for the console.
type Stats struct {
	Patients  int
	Studies   int
	Instances Tally // accepted copies
	Conflicts Tally // flagged copies
	Damaged   Tally // accepted copies found damaged (see DamagedCopies)
	States    map[State]Tally
	Queues    map[string]QueueStats
	Space     Space // the disk, and the store's model of it, from this read's statfs
	LSMBytes  int64 // Badger's tables (records, small instances)
	VlogBytes int64 // Badger's value log (values above ValueThreshold: little)
}

// OldestWaitingAge is how long the oldest undelivered entry of dest has
// waited, at now.
func (st Stats) OldestWaitingAge(dest string, now time.Time) time.Duration {
	q := st.Queues[dest]
	if q.OldestWaiting.IsZero() {
		return 0
	}
	return now.Sub(q.OldestWaiting)
}

// Stats returns what the store holds. It reads the kept counters (see
// counts.go): a few keys per destination, however large the store, so the
// console may poll it every second.
func (s *Store) Stats() (Stats, error) {
	st := Stats{States: map[State]Tally{}, Queues: map[string]QueueStats{}}
	err := s.view(func(txn *badger.Txn) error {
		st.LSMBytes, st.VlogBytes = s.db.Size()
		if err := readTotals(txn, &st); err != nil {
			return err
		}
		return s.readQueues(txn, &st)
	})
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	if st.Space, err = s.Space(); err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	return st, nil
}

func readTotals(txn *badger.Txn, st *Stats) error {
	var studies, patients Tally
	for _, c := range []struct {
		name string
		t    *Tally
	}{
		{totalStudies, &studies}, {totalPatients, &patients},
		{totalInstances, &st.Instances}, {totalConflicts, &st.Conflicts}, {totalDamaged, &st.Damaged},
	} {
		t, err := readTally(txn, totalKey(c.name))
		if err != nil {
			return err
		}
		*c.t = t
	}
	st.Studies, st.Patients = studies.Count, patients.Count
	return nil
}

// readQueues reads the tallies of every destination that may have entries,
// and for those with waiting entries the pointer to the oldest.
func (s *Store) readQueues(txn *badger.Txn, st *Stats) error {
	for _, dest := range s.queuedDests() {
		q := QueueStats{States: map[State]Tally{}}
		for state := range stateNames {
			t, err := readTally(txn, tallyKey(dest, state))
			if err != nil {
				return err
			}
			if t == (Tally{}) {
				continue
			}
			q.States[state] = t
			if state.waiting() {
				q.Depth += t.Count
			}
			all := st.States[state]
			all.add(t.Count, t.Bytes)
			st.States[state] = all
		}
		if len(q.States) == 0 {
			continue
		}
		if q.Depth > 0 {
			k, err := getRaw(txn, oldestKey(dest))
			if err != nil {
				return err
			}
			if k != nil {
				_, at, _ := destTimeUID(k)
				q.OldestWaiting = time.Unix(0, at)
			}
		}
		st.Queues[dest] = q
	}
	return nil
}

// StudyAtDest is a study's queue entries at one destination.
type StudyAtDest struct {
	Dest      string
	States    map[State]Tally
	LastError string // the last one recorded by its failed or parked entries, while it has any
}

// StudyProgress returns a study's entries at each destination it is queued
// for, by destination name, counted by state. It reads the study's kept
// tallies (see retally): a few keys, however many instances the study has.
func (s *Store) StudyProgress(ctx context.Context, study string) ([]StudyAtDest, error) {
	var out []StudyAtDest
	prefix := studyTallyPrefix(study)
	err := s.view(func(txn *badger.Txn) error {
		err := scan(ctx, txn, prefix, false, func(item *badger.Item) (bool, error) {
			dest, rest := readStr(item.Key()[len(prefix):])
			if len(rest) != 1 {
				return false, fmt.Errorf("study tally key %q", item.Key())
			}
			t, err := itemTally(item)
			if err != nil {
				return false, err
			}
			if n := len(out); n == 0 || out[n-1].Dest != dest {
				out = append(out, StudyAtDest{Dest: dest, States: map[State]Tally{}})
			}
			out[len(out)-1].States[State(rest[0])] = t
			return true, nil
		})
		if err != nil {
			return err
		}
		for i, d := range out {
			if d.States[Failed].Count+d.States[Parked].Count == 0 {
				continue
			}
			v, err := getRaw(txn, studyErrorKey(study, d.Dest))
			if err != nil {
				return err
			}
			out[i].LastError = string(v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("progress of study %s: %w", study, err)
	}
	// Keys order names by length first.
	slices.SortFunc(out, func(a, b StudyAtDest) int { return strings.Compare(a.Dest, b.Dest) })
	return out, nil
}
