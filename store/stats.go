package store

import (
	"fmt"
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
	States    map[State]Tally
	Queues    map[string]QueueStats
	Disk      Disk
	LSMBytes  int64 // Badger's tables
	VlogBytes int64 // Badger's value log (instance bytes, live and dead)
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

// Stats counts what the store holds. It reads every study and queue entry,
// which takes well under a second for the tens of thousands of studies an
// edge box keeps; call it for a console refresh, not per instance.
func (s *Store) Stats() (Stats, error) {
	st := Stats{States: map[State]Tally{}, Queues: map[string]QueueStats{}}
	err := s.view(func(txn *badger.Txn) error {
		st.LSMBytes, st.VlogBytes = s.db.Size()
		err := scanJSON(txn, []byte{tagStudy}, func(_ []byte, sd *Study) (bool, error) {
			st.Studies++
			st.Instances.add(sd.Instances, sd.Bytes)
			return true, nil
		})
		if err != nil {
			return err
		}
		err = scanJSON(txn, []byte{tagConflict}, func(_ []byte, r *Instance) (bool, error) {
			st.Conflicts.add(1, r.Size)
			return true, nil
		})
		if err != nil {
			return err
		}
		err = scan(txn, []byte{tagPatient}, false, func(*badger.Item) (bool, error) {
			st.Patients++
			return true, nil
		})
		if err != nil {
			return err
		}
		return scanJSON(txn, []byte{tagQueue}, func(_ []byte, e *Entry) (bool, error) {
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
			}
			st.Queues[e.Dest] = q
			return true, nil
		})
	})
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	if st.Disk, err = s.statfs(s.dir); err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	return st, nil
}
