package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// State is where a queue entry stands for one destination.
type State uint8

const (
	Pending   State = iota + 1 // waiting to be sent
	InFlight                   // leased to a forwarder until LeaseUntil
	Delivered                  // the destination answered C-STORE Success
	Committed                  // the destination confirmed Storage Commitment
	Failed                     // the last attempt failed; retried at NextAttempt
)

var stateNames = map[State]string{
	Pending: "pending", InFlight: "in flight", Delivered: "delivered",
	Committed: "committed", Failed: "failed",
}

func (st State) String() string {
	if n, ok := stateNames[st]; ok {
		return n
	}
	return fmt.Sprintf("State(%d)", uint8(st))
}

// waiting entries still have to reach their destination.
func (st State) waiting() bool { return st == Pending || st == InFlight || st == Failed }

// Entry is one instance queued for one destination.
type Entry struct {
	Dest               string
	SOPInstanceUID     string
	StudyInstanceUID   string
	SeriesInstanceUID  string
	SeriesNumber       int
	InstanceNumber     int
	Size               int64
	ReceivedAt         time.Time
	StudyFirstReceived time.Time // orders studies in the queue
	Urgent             bool

	State       State
	Attempts    int       // leases so far
	LastError   string    // of the last failed attempt
	NextAttempt time.Time // Failed: not leased before; zero: parked until RetryNow
	LeaseUntil  time.Time // InFlight: leased to a forwarder until then
}

// Destination holds what the store needs to know about a destination.
type Destination struct {
	// NoCommitment: the destination does not do Storage Commitment, so an
	// instance Delivered there counts as done for retention. Otherwise (the
	// default, and the safe side) only Committed counts.
	NoCommitment bool
}

// SetDestination records a destination's settings; they persist.
func (s *Store) SetDestination(name string, d Destination) error {
	err := s.change(func(txn *badger.Txn) error { return setJSON(txn, destKey(name), &d) })
	if err != nil {
		return fmt.Errorf("set destination %s: %w", name, err)
	}
	return nil
}

// putEntry writes e and keeps the waiting index in step with its state.
// old is e as it was before the change, or nil for a new entry.
func putEntry(txn *badger.Txn, old, e *Entry) error {
	if old != nil && old.State.waiting() {
		if err := txn.Delete(waitingKey(old)); err != nil {
			return err
		}
	}
	if e.State.waiting() {
		if err := txn.Set(waitingKey(e), []byte(e.SOPInstanceUID)); err != nil {
			return err
		}
	}
	return setJSON(txn, queueKey(e.Dest, e.SOPInstanceUID), e)
}

// updateEntry applies fn to the entry of uid for dest.
func (s *Store) updateEntry(txn *badger.Txn, dest, uid string, fn func(e *Entry)) error {
	var e Entry
	found, err := getJSON(txn, queueKey(dest, uid), &e)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%s for %s: %w", uid, dest, ErrNotFound)
	}
	old := e
	fn(&e)
	if e == old {
		return nil
	}
	return putEntry(txn, &old, &e)
}

// Lease hands out up to max entries for dest whose time has come: the most
// urgent study first, then the oldest, and within a study in series and
// instance order. Entries waiting for a retry later (or parked) are passed
// over, so one failing instance does not hold back the rest. Leased entries
// are InFlight until Delivered or Failed is called, or until leaseFor passes,
// after which they can be leased again.
func (s *Store) Lease(ctx context.Context, dest string, max int, leaseFor time.Duration) ([]Entry, error) {
	max = min(max, entryBatch)
	var out []Entry
	err := s.change(func(txn *badger.Txn) error {
		out = out[:0]
		now := s.now()
		var uids []string
		err := scanWaiting(txn, waitingPrefix(dest), func(e *Entry) (bool, error) {
			if err := ctx.Err(); err != nil {
				return false, err
			}
			if e.leasable(now) {
				uids = append(uids, e.SOPInstanceUID)
			}
			return len(uids) < max, nil
		})
		if err != nil {
			return err
		}
		for _, uid := range uids {
			err := s.updateEntry(txn, dest, uid, func(e *Entry) {
				e.State = InFlight
				e.Attempts++
				e.LeaseUntil = now.Add(leaseFor)
				out = append(out, *e)
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lease %s: %w", dest, err)
	}
	return out, nil
}

func (e *Entry) leasable(now time.Time) bool {
	switch e.State {
	case Pending:
		return true
	case InFlight:
		return !now.Before(e.LeaseUntil)
	case Failed:
		return !e.NextAttempt.IsZero() && !now.Before(e.NextAttempt)
	}
	return false
}

// Delivered records that dest answered Success for uid.
func (s *Store) Delivered(dest, uid string) error {
	return s.setEntries("delivered", dest, []string{uid}, func(e *Entry) {
		if e.State != Committed {
			e.State = Delivered
		}
		e.LeaseUntil = time.Time{}
	})
}

// Committed records that dest confirmed Storage Commitment for uids.
func (s *Store) Committed(dest string, uids ...string) error {
	return s.setEntries("committed", dest, uids, func(e *Entry) {
		e.State = Committed
		e.LeaseUntil = time.Time{}
	})
}

// Failed records a failed attempt; the entry is leased again from retryAt.
// A zero retryAt parks it until RetryNow.
func (s *Store) Failed(dest, uid string, cause error, retryAt time.Time) error {
	msg := ""
	if cause != nil {
		msg = cause.Error()
	}
	return s.setEntries("failed", dest, []string{uid}, func(e *Entry) {
		if !e.State.waiting() {
			return // a late failure report for an entry already delivered
		}
		e.State = Failed
		e.LastError = msg
		e.NextAttempt = retryAt
		e.LeaseUntil = time.Time{}
	})
}

// RetryNow makes failed and parked entries of dest leasable at once: those of
// uids, or all of them when uids is empty.
func (s *Store) RetryNow(dest string, uids ...string) error {
	if len(uids) == 0 {
		err := s.view(func(txn *badger.Txn) error {
			var err error
			uids, err = waitingUIDs(txn, dest)
			return err
		})
		if err != nil {
			return fmt.Errorf("retry %s: %w", dest, err)
		}
	}
	return s.setEntries("retry", dest, uids, func(e *Entry) {
		if e.State == Failed {
			e.State = Pending
			e.NextAttempt = time.Time{}
		}
	})
}

// scanWaiting calls fn with the entry of each waiting row under prefix.
func scanWaiting(txn *badger.Txn, prefix []byte, fn func(e *Entry) (bool, error)) error {
	return scan(txn, prefix, false, func(item *badger.Item) (bool, error) {
		k := item.Key()
		dest := string(k[3 : 3+(int(k[1])<<8|int(k[2]))])
		uid, err := item.ValueCopy(nil)
		if err != nil {
			return false, err
		}
		var e Entry
		found, err := getJSON(txn, queueKey(dest, string(uid)), &e)
		if err != nil || !found {
			return err == nil, err
		}
		return fn(&e)
	})
}

func waitingUIDs(txn *badger.Txn, dest string) ([]string, error) {
	var uids []string
	err := scan(txn, waitingPrefix(dest), false, func(item *badger.Item) (bool, error) {
		v, err := item.ValueCopy(nil)
		uids = append(uids, string(v))
		return true, err
	})
	return uids, err
}

// setEntries applies fn to the entries of uids for dest. Many entries are
// changed in several transactions, each atomic, to stay under Badger's
// transaction size limit.
func (s *Store) setEntries(what, dest string, uids []string, fn func(e *Entry)) error {
	for len(uids) > 0 {
		batch := uids[:min(len(uids), entryBatch)]
		uids = uids[len(batch):]
		err := s.change(func(txn *badger.Txn) error {
			for _, uid := range batch {
				if err := s.updateEntry(txn, dest, uid, fn); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s %s: %w", what, dest, err)
		}
	}
	return nil
}

// entryBatch entries fit in one transaction even with the smallest memtable.
const entryBatch = 256

// MarkUrgent moves a study's waiting entries ahead of (or back among) the
// others in every destination's queue.
func (s *Store) MarkUrgent(studyUID string, urgent bool) error {
	err := s.change(func(txn *badger.Txn) error {
		var st Study
		found, err := getJSON(txn, studyKey(studyUID), &st)
		if err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		st.Urgent = urgent
		if err := setJSON(txn, studyKey(studyUID), &st); err != nil {
			return err
		}
		return s.setStudyUrgency(txn, studyUID, urgent)
	})
	if err != nil {
		return fmt.Errorf("mark study %s urgent: %w", studyUID, err)
	}
	return nil
}

func (s *Store) setStudyUrgency(txn *badger.Txn, studyUID string, urgent bool) error {
	recs, err := studyInstances(txn, studyUID)
	if err != nil {
		return err
	}
	for _, r := range recs {
		for _, dest := range r.Destinations {
			err := s.updateEntry(txn, dest, r.SOPInstanceUID, func(e *Entry) { e.Urgent = urgent })
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// releaseLeases returns every in-flight entry to pending: at Open no
// forwarder holds a lease, and one cut by a crash must be resent.
func (s *Store) releaseLeases() error {
	leased := map[string][]string{} // dest → uids
	err := s.view(func(txn *badger.Txn) error {
		return scanWaiting(txn, []byte{tagWaiting}, func(e *Entry) (bool, error) {
			if e.State == InFlight {
				leased[e.Dest] = append(leased[e.Dest], e.SOPInstanceUID)
			}
			return true, nil
		})
	})
	if err != nil {
		return err
	}
	for dest, uids := range leased {
		err := s.setEntries("release", dest, uids, func(e *Entry) {
			if e.State == InFlight {
				e.State = Pending
				e.LeaseUntil = time.Time{}
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Entries returns the queue entries of uid, one per destination.
func (s *Store) Entries(uid string) ([]Entry, error) {
	var out []Entry
	err := s.view(func(txn *badger.Txn) error {
		var rec Instance
		found, err := getJSON(txn, instanceKey(uid), &rec)
		if err != nil || !found {
			return err
		}
		for _, dest := range rec.Destinations {
			var e Entry
			if _, err := getJSON(txn, queueKey(dest, uid), &e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("entries of %s: %w", uid, err)
	}
	return out, nil
}

// QueueHeld queues for dest the accepted instances that are queued nowhere —
// received while no destination was configured — and that match (nil
// matches all). It returns how many it queued.
func (s *Store) QueueHeld(dest string, match func(Instance) bool) (int, error) {
	var held []Instance
	err := s.view(func(txn *badger.Txn) error {
		return scan(txn, newKey(tagInstance), false, func(item *badger.Item) (bool, error) {
			var rec Instance
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
				return false, err
			}
			if len(rec.Destinations) == 0 && (match == nil || match(rec)) {
				held = append(held, rec)
			}
			return true, nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("queue held instances for %s: %w", dest, err)
	}
	n := 0
	for len(held) > 0 {
		batch := held[:min(len(held), entryBatch/2)]
		held = held[len(batch):]
		err := s.change(func(txn *badger.Txn) error {
			for i := range batch {
				rec := &batch[i]
				var st Study
				if _, err := getJSON(txn, studyKey(rec.StudyInstanceUID), &st); err != nil {
					return err
				}
				rec.Destinations = []string{dest}
				if err := setJSON(txn, instanceKey(rec.SOPInstanceUID), rec); err != nil {
					return err
				}
				if err := putEntry(txn, nil, newEntry(dest, rec, &st)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("queue held instances for %s: %w", dest, err)
		}
		n += len(batch)
	}
	return n, nil
}

// AwaitingCommitment returns dest's entries that were delivered and not yet
// committed, oldest delivery first by receive time.
func (s *Store) AwaitingCommitment(dest string) ([]Entry, error) {
	var out []Entry
	err := s.view(func(txn *badger.Txn) error {
		return scan(txn, queuePrefix(dest), false, func(item *badger.Item) (bool, error) {
			var e Entry
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
				return false, err
			}
			if e.State == Delivered {
				out = append(out, e)
			}
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("entries awaiting commitment at %s: %w", dest, err)
	}
	return out, nil
}

// StudyWaiting counts a study's entries still to deliver to dest (pending,
// in flight or failed). first is the study's first receive time, as its
// entries carry it (Entry.StudyFirstReceived). Only keys are read.
func (s *Store) StudyWaiting(dest, study string, first time.Time) (int, error) {
	n := 0
	err := s.view(func(txn *badger.Txn) error {
		for _, urgency := range []byte{0, 1} {
			prefix := waitingPrefix(dest).u8(urgency).i64(first.UnixNano()).str(study)
			err := scan(txn, prefix, false, func(*badger.Item) (bool, error) {
				n++
				return true, nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("waiting entries of %s at %s: %w", study, dest, err)
	}
	return n, nil
}

// StudyRecord returns a study's summary without its instances.
func (s *Store) StudyRecord(study string) (Study, error) {
	var st Study
	err := s.view(func(txn *badger.Txn) error {
		found, err := getJSON(txn, studyKey(study), &st)
		if err == nil && !found {
			err = ErrNotFound
		}
		return err
	})
	return st, err
}
