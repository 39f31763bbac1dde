package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
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
	Failed                     // attempts failed; retried at NextAttempt
	Parked                     // failed too often: kept, not retried until someone acts
	Abandoned                  // a person gave up on it here: done, for retention
)

var stateNames = map[State]string{
	Pending: "pending", InFlight: "in flight", Delivered: "delivered",
	Committed: "committed", Failed: "failed", Parked: "parked", Abandoned: "abandoned",
}

func (st State) String() string {
	if n, ok := stateNames[st]; ok {
		return n
	}
	return fmt.Sprintf("State(%d)", uint8(st))
}

// waiting entries still have to reach their destination and will be tried
// again without anyone acting. Parked ones need a person, so they are kept
// out of the waiting index (and out of every lease's scan).
func (st State) waiting() bool { return st == Pending || st == InFlight || st == Failed }

// failing entries failed at their last attempt and carry its error.
func (st State) failing() bool { return st == Failed || st == Parked }

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

	State        State
	Attempts     int       // failed attempts counted against this instance
	LastError    string    // of the last failed attempt, in plain words
	FirstFailure time.Time // of the current run of failures; zero if none
	NextAttempt  time.Time // Failed: not leased before
	LeaseUntil   time.Time // InFlight: leased to a forwarder until then
	// LastFailure is when the last attempt failed (zero if none, or written
	// by a relaisd before 2026-12-03): a clock now earlier than it was set
	// back since, and the wait it began is over (leasable, clock.go).
	LastFailure time.Time `json:",omitzero"`
}

// Destination holds what the store needs to know about a destination, and
// its reachability, kept here so that what the technician reads ("unreachable
// for 3h, attempt 41") stays true across a restart.
type Destination struct {
	// NoCommitment: the destination does not do Storage Commitment, so an
	// instance Delivered there counts as done for retention. Otherwise (the
	// default, and the safe side) only Committed counts.
	NoCommitment bool
	// FailingSince is the first of the current run of failed connections
	// (zero: reachable); Failures counts them; LastError is the last one's.
	FailingSince time.Time
	Failures     int
	LastError    string
}

// UpdateDestination applies fn to a destination's record (a zero record if
// there is none yet) and stores it; it returns the record as stored.
func (s *Store) UpdateDestination(name string, fn func(d *Destination)) (Destination, error) {
	var d Destination
	err := s.change(func(txn *badger.Txn) error {
		d = Destination{}
		if _, err := getJSON(txn, destKey(name), &d); err != nil {
			return err
		}
		fn(&d)
		return setJSON(txn, destKey(name), &d)
	})
	if err != nil {
		return d, fmt.Errorf("update destination %s: %w", name, err)
	}
	return d, nil
}

// DestinationRecord returns what the store holds about a destination (a
// zero record if nothing).
func (s *Store) DestinationRecord(name string) (Destination, error) {
	var d Destination
	err := s.view(func(txn *badger.Txn) error {
		_, err := getJSON(txn, destKey(name), &d)
		return err
	})
	if err != nil {
		return d, fmt.Errorf("read destination %s: %w", name, err)
	}
	return d, nil
}

// indexRow is one index key of an entry and its value.
type indexRow struct {
	k key
	v []byte
}

// entryRows are the index rows an entry has in its state: waiting entries
// are in the lease order (tagWaiting) and by receive time (tagWaitingSince),
// parked ones in the attention list, delivered ones in the list of those
// awaiting commitment.
func entryRows(e *Entry) []indexRow {
	switch {
	case e.State.waiting():
		return []indexRow{{waitingKey(e), []byte(e.SOPInstanceUID)}, {waitingSinceKey(e), nil}}
	case e.State == Parked:
		return []indexRow{{parkedKey(e.Dest, e.SOPInstanceUID), nil}}
	case e.State == Delivered:
		return []indexRow{{deliveredKey(e), nil}}
	}
	return nil
}

func hasRow(rows []indexRow, k key) bool {
	return slices.ContainsFunc(rows, func(r indexRow) bool { return bytes.Equal(r.k, k) })
}

// putEntry writes e and keeps its index rows and its destination's tallies
// in step with its state. old is e as it was before the change, or nil for
// a new entry. Rows that stay are not written again.
func (s *Store) putEntry(txn *badger.Txn, old, e *Entry) error {
	s.notDue.forget(queueKey(e.Dest, e.SOPInstanceUID))
	rows := entryRows(e)
	var oldRows []indexRow
	if old != nil {
		oldRows = entryRows(old)
	}
	for _, r := range oldRows {
		if !hasRow(rows, r.k) {
			if err := dropRow(txn, r); err != nil {
				return err
			}
		}
	}
	for _, r := range rows {
		if !hasRow(oldRows, r.k) {
			if err := addRow(txn, r); err != nil {
				return err
			}
		}
	}
	if err := retally(txn, old, e); err != nil {
		return err
	}
	return setJSON(txn, queueKey(e.Dest, e.SOPInstanceUID), e)
}

// addRow writes an index row, and moves its destination's oldest waiting
// pointer when the row is a waiting one.
func addRow(txn *badger.Txn, r indexRow) error {
	if err := txn.Set(r.k, r.v); err != nil {
		return err
	}
	if r.k[0] == tagWaitingSince {
		return oldestAdded(txn, r.k)
	}
	return nil
}

// dropRow deletes an index row, and moves the oldest waiting pointer.
func dropRow(txn *badger.Txn, r indexRow) error {
	if err := txn.Delete(r.k); err != nil {
		return err
	}
	if r.k[0] == tagWaitingSince {
		return oldestRemoved(txn, r.k)
	}
	return nil
}

// deleteEntry removes e, its index rows and its count.
func (s *Store) deleteEntry(txn *badger.Txn, e *Entry) error {
	s.notDue.forget(queueKey(e.Dest, e.SOPInstanceUID))
	for _, r := range entryRows(e) {
		if err := dropRow(txn, r); err != nil {
			return err
		}
	}
	if err := retally(txn, e, nil); err != nil {
		return err
	}
	return txn.Delete(queueKey(e.Dest, e.SOPInstanceUID))
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
	return s.putEntry(txn, &old, &e)
}

// Lease hands out up to max entries for dest whose time has come: the most
// urgent study first, then the oldest, and within a study in series and
// instance order. Entries waiting for a retry later are passed over (parked
// ones are not even seen), so one failing instance does not hold back the
// rest. Leased entries are InFlight until Delivered, Failed or Release is
// called, or until leaseFor passes, after which they can be leased again.
// A lease is not an attempt: only Failed counts against an entry.
func (s *Store) Lease(ctx context.Context, dest string, max int, leaseFor time.Duration) ([]Entry, error) {
	max = min(max, entryBatch)
	var out []Entry
	err := s.change(func(txn *badger.Txn) error {
		out = out[:0]
		now := s.now()
		s.notDue.leasing(now.UnixNano())
		var uids []string
		skip := func(k key) bool { return s.notDue.skip(k, now.UnixNano()) }
		err := scanWaitingUnless(ctx, txn, waitingPrefix(dest), skip, func(e *Entry) (bool, error) {
			if e.leasable(now) {
				uids = append(uids, e.SOPInstanceUID)
			} else if at := e.leasableAt(); !at.IsZero() {
				s.notDue.note(queueKey(dest, e.SOPInstanceUID), at.UnixNano())
			}
			return len(uids) < max, nil
		})
		if err != nil {
			return err
		}
		for _, uid := range uids {
			err := s.updateEntry(txn, dest, uid, func(e *Entry) {
				e.State = InFlight
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

// leasableAt is when a waiting entry not leasable now becomes so (zero:
// at once, or never by time alone).
func (e *Entry) leasableAt() time.Time {
	switch e.State {
	case InFlight:
		return e.LeaseUntil
	case Failed:
		return e.NextAttempt
	}
	return time.Time{}
}

func (e *Entry) leasable(now time.Time) bool {
	switch e.State {
	case Pending:
		return true
	case InFlight:
		return !now.Before(e.LeaseUntil)
	case Failed:
		// A clock set back since the failure (clock.go): its wait is over.
		return !now.Before(e.NextAttempt) || e.LastFailure.Sub(now) > clockStep
	}
	return false
}

// Delivered records that dest answered Success for uids (one transaction
// for a few: see forward's deliveries).
func (s *Store) Delivered(dest string, uids ...string) error {
	return s.setEntries("delivered", dest, uids, func(e *Entry) {
		if e.State != Committed {
			e.State = Delivered
		}
		e.LeaseUntil, e.NextAttempt, e.FirstFailure, e.LastFailure, e.Attempts, e.LastError = time.Time{}, time.Time{}, time.Time{}, time.Time{}, 0, ""
	})
}

// Committed records that dest confirmed Storage Commitment for uids. Only
// delivered entries become committed: one queued again meanwhile (resent,
// or replaced by a correction) must be delivered first.
func (s *Store) Committed(dest string, uids ...string) error {
	return s.setEntries("committed", dest, uids, func(e *Entry) {
		if e.State != Delivered {
			return
		}
		e.State = Committed
		e.LeaseUntil = time.Time{}
	})
}

// Release gives leased entries back untouched: they were not tried (the
// association ended on another instance, or the forwarder is stopping), so
// nothing counts against them and they may be leased again at once.
func (s *Store) Release(dest string, uids ...string) error {
	return s.setEntries("release", dest, uids, func(e *Entry) {
		if e.State == InFlight {
			e.State = Pending
			e.LeaseUntil = time.Time{}
		}
	})
}

// Failure is a failed attempt to deliver one instance, counted against it.
type Failure struct {
	Reason    string    // plain words: what the technician reads
	RetryAt   time.Time // when to try again
	ParkAfter int       // park instead once this many attempts failed (0: never)
	// Undelivers: the destination accepted the instance but reports it does
	// not hold it (Storage Commitment), so a Delivered entry fails too.
	Undelivers bool
}

// Failed counts a failed attempt against the entry of uid at dest. It is
// retried from f.RetryAt, or parked once f.ParkAfter attempts have failed.
// It returns the entry as it now stands.
func (s *Store) Failed(dest, uid string, f Failure) (Entry, error) {
	var out Entry
	err := s.setEntries("failed", dest, []string{uid}, func(e *Entry) {
		if e.State.waiting() || (f.Undelivers && e.State == Delivered) { // else a late report for an entry delivered meanwhile
			now := s.now()
			if e.Attempts == 0 {
				e.FirstFailure = now
			}
			e.LastFailure = now
			e.Attempts++
			e.State = Failed
			e.LastError = f.Reason
			e.NextAttempt = f.RetryAt
			e.LeaseUntil = time.Time{}
			if f.ParkAfter > 0 && e.Attempts >= f.ParkAfter {
				e.State, e.NextAttempt = Parked, time.Time{}
			}
		}
		out = *e
	})
	return out, err
}

// RetryNow makes failed and parked entries of dest leasable at once, with a
// fresh count of attempts: those of uids, or every failed one and every
// parked one when uids is empty. It returns how many it changed.
func (s *Store) RetryNow(ctx context.Context, dest string, uids ...string) (int, error) {
	if len(uids) == 0 {
		err := s.view(func(txn *badger.Txn) error {
			var err error
			if uids, err = waitingUIDs(ctx, txn, dest); err != nil {
				return err
			}
			parked, err := parkedUIDs(ctx, txn, dest, 0)
			uids = append(uids, parked...)
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("retry %s: %w", dest, err)
		}
	}
	reset := map[string]bool{} // a set: a change may run twice (see change)
	err := s.updateEntries(ctx, "retry", dest, uids, false, func(e *Entry) {
		if e.State == Failed || e.State == Parked {
			resetEntry(e)
			reset[e.SOPInstanceUID] = true
		}
	})
	return len(reset), err
}

// Resend queues a study's instances for dest again, whatever they reached
// (a destination that lost them): every entry not waiting already becomes
// pending. It returns how many.
func (s *Store) Resend(ctx context.Context, dest, study string) (int, error) {
	uids, err := s.studyUIDs(ctx, study)
	if err != nil {
		return 0, fmt.Errorf("resend %s to %s: %w", study, dest, err)
	}
	reset := map[string]bool{} // a set: a change may run twice (see change)
	err = s.updateEntries(ctx, "resend", dest, uids, true, func(e *Entry) {
		if e.State != Pending && e.State != InFlight {
			resetEntry(e)
			reset[e.SOPInstanceUID] = true
		}
	})
	return len(reset), err
}

// RetryStudy makes a study's failed and parked entries leasable at once,
// at every destination. It returns the destinations it changed.
func (s *Store) RetryStudy(ctx context.Context, study string) (map[string]int, error) {
	var recs []Instance
	err := s.view(func(txn *badger.Txn) error {
		var err error
		recs, err = studyInstances(ctx, txn, study)
		if err == nil && len(recs) == 0 {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("retry study %s: %w", study, err)
	}
	byDest := map[string][]string{}
	for _, r := range recs {
		for _, d := range r.Destinations {
			byDest[d] = append(byDest[d], r.SOPInstanceUID)
		}
	}
	changed := map[string]int{}
	for dest, uids := range byDest {
		n, err := s.RetryNow(ctx, dest, uids...)
		if err != nil {
			return changed, err
		}
		if n > 0 {
			changed[dest] = n
		}
	}
	return changed, nil
}

// Abandon gives up delivering uid to dest: a parked or failed entry becomes
// Abandoned, which retention counts as done. The caller records who and why.
func (s *Store) Abandon(dest, uid, reason string) error {
	changed := false
	err := s.setEntries("abandon", dest, []string{uid}, func(e *Entry) {
		if e.State == Parked || e.State == Failed {
			e.State = Abandoned
			e.LastError = reason
			e.NextAttempt = time.Time{}
			changed = true
		}
	})
	if err == nil && !changed {
		err = fmt.Errorf("abandon %s at %s: %w", uid, dest, ErrNotParked)
	}
	return err
}

// ErrNotParked: only an instance that failed can be abandoned.
var ErrNotParked = errors.New("the instance is neither parked nor failing there")

func resetEntry(e *Entry) {
	e.State = Pending
	e.Attempts, e.LastError = 0, ""
	e.NextAttempt, e.FirstFailure, e.LastFailure, e.LeaseUntil = time.Time{}, time.Time{}, time.Time{}, time.Time{}
}

// Parked returns up to limit parked entries of dest (every destination when
// dest is empty; 0: no limit). Only the parked index is read.
func (s *Store) Parked(ctx context.Context, dest string, limit int) ([]Entry, error) {
	var out []Entry
	err := s.view(func(txn *badger.Txn) error {
		prefix := []byte{tagParked}
		if dest != "" {
			prefix = parkedPrefix(dest)
		}
		return scan(ctx, txn, prefix, false, func(item *badger.Item) (bool, error) {
			d, uid := destAndUID(item.Key())
			var e Entry
			found, err := getJSON(txn, queueKey(d, uid), &e)
			if err != nil {
				return false, err
			}
			if found {
				out = append(out, e)
			}
			return limit == 0 || len(out) < limit, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("parked entries: %w", err)
	}
	return out, nil
}

func parkedUIDs(ctx context.Context, txn *badger.Txn, dest string, limit int) ([]string, error) {
	var uids []string
	err := scan(ctx, txn, parkedPrefix(dest), false, func(item *badger.Item) (bool, error) {
		_, uid := destAndUID(item.Key())
		uids = append(uids, uid)
		return limit == 0 || len(uids) < limit, nil
	})
	return uids, err
}

// destAndUID splits a key made of a tag and two length-prefixed strings.
func destAndUID(k []byte) (string, string) {
	n := int(k[1])<<8 | int(k[2])
	dest := string(k[3 : 3+n])
	rest := k[3+n:]
	m := int(rest[0])<<8 | int(rest[1])
	return dest, string(rest[2 : 2+m])
}

// scanWaiting calls fn with the entry of each waiting row under prefix.
func scanWaiting(ctx context.Context, txn *badger.Txn, prefix []byte, fn func(e *Entry) (bool, error)) error {
	return scanWaitingUnless(ctx, txn, prefix, nil, fn)
}

// scanWaitingUnless is scanWaiting passing over, unread, the entries whose
// queue key skip (if not nil) says to.
func scanWaitingUnless(ctx context.Context, txn *badger.Txn, prefix []byte, skip func(k key) bool, fn func(e *Entry) (bool, error)) error {
	return scan(ctx, txn, prefix, false, func(item *badger.Item) (bool, error) {
		k := item.Key()
		dest := string(k[3 : 3+(int(k[1])<<8|int(k[2]))])
		uid, err := item.ValueCopy(nil)
		if err != nil {
			return false, err
		}
		qk := queueKey(dest, string(uid))
		if skip != nil && skip(qk) {
			return true, nil
		}
		var e Entry
		found, err := getJSON(txn, qk, &e)
		if err != nil || !found {
			return err == nil, err
		}
		return fn(&e)
	})
}

func waitingUIDs(ctx context.Context, txn *badger.Txn, dest string) ([]string, error) {
	var uids []string
	err := scan(ctx, txn, waitingPrefix(dest), false, func(item *badger.Item) (bool, error) {
		v, err := item.ValueCopy(nil)
		uids = append(uids, string(v))
		return true, err
	})
	return uids, err
}

// setEntries applies fn to the entries of uids for dest, all of them: what
// happened to them (delivered, committed, failed) is recorded whole.
func (s *Store) setEntries(what, dest string, uids []string, fn func(e *Entry)) error {
	return s.updateEntries(context.Background(), what, dest, uids, false, fn)
}

// updateEntries applies fn to the entries of uids for dest, passing over
// those not queued there when skipMissing. Many entries are changed in
// several transactions, each atomic, to stay under Badger's transaction
// size limit; it stops between two when ctx ends.
func (s *Store) updateEntries(ctx context.Context, what, dest string, uids []string, skipMissing bool, fn func(e *Entry)) error {
	for len(uids) > 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s %s: %w", what, dest, err)
		}
		batch := uids[:min(len(uids), entryBatch)]
		uids = uids[len(batch):]
		err := s.change(func(txn *badger.Txn) error {
			for _, uid := range batch {
				err := s.updateEntry(txn, dest, uid, fn)
				if err != nil && !(skipMissing && errors.Is(err, ErrNotFound)) {
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

// studyUIDs lists the SOP Instance UIDs of a study's accepted copies.
func (s *Store) studyUIDs(ctx context.Context, study string) ([]string, error) {
	var uids []string
	err := s.view(func(txn *badger.Txn) error {
		recs, err := studyInstances(ctx, txn, study)
		if err == nil && len(recs) == 0 {
			err = ErrNotFound
		}
		for _, r := range recs {
			uids = append(uids, r.SOPInstanceUID)
		}
		return err
	})
	return uids, err
}

// StudyEntries returns a study's entries for dest, in series and instance
// order (the commitment tracker asks per study).
func (s *Store) StudyEntries(ctx context.Context, dest, study string) ([]Entry, error) {
	var out []Entry
	err := s.view(func(txn *badger.Txn) error {
		recs, err := studyInstances(ctx, txn, study)
		if err != nil {
			return err
		}
		for _, r := range recs {
			var e Entry
			found, err := getJSON(txn, queueKey(dest, r.SOPInstanceUID), &e)
			if err != nil {
				return err
			}
			if found {
				out = append(out, e)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("entries of study %s at %s: %w", study, dest, err)
	}
	return out, nil
}

// entryBatch entries fit in one transaction even with the smallest memtable.
const entryBatch = 256

// MarkUrgent moves a study's waiting entries ahead of (or back among) the
// others in every destination's queue.
func (s *Store) MarkUrgent(ctx context.Context, studyUID string, urgent bool) error {
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
		return s.setStudyUrgency(ctx, txn, studyUID, urgent)
	})
	if err != nil {
		return fmt.Errorf("mark study %s urgent: %w", studyUID, err)
	}
	return nil
}

func (s *Store) setStudyUrgency(ctx context.Context, txn *badger.Txn, studyUID string, urgent bool) error {
	recs, err := studyInstances(ctx, txn, studyUID)
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
// forwarder holds a lease, and one cut by a crash must be resent. The
// tallies say how many each destination has in flight; its queue is read
// only until they are all found (leases are taken from its head), so a
// start reads no entry when none is in flight, not the whole queue (40 s
// at a million waiting).
func (s *Store) releaseLeases() error {
	leased := map[string][]string{} // dest → uids
	err := s.view(func(txn *badger.Txn) error {
		for _, dest := range s.queuedDests() {
			inFlight, err := readTally(txn, tallyKey(dest, InFlight))
			if err != nil {
				return err
			}
			if inFlight.Count == 0 {
				continue
			}
			err = scanWaiting(context.Background(), txn, waitingPrefix(dest), func(e *Entry) (bool, error) {
				if e.State == InFlight {
					leased[dest] = append(leased[dest], e.SOPInstanceUID)
				}
				return len(leased[dest]) < inFlight.Count, nil
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
	for dest, uids := range leased {
		if err := s.Release(dest, uids...); err != nil {
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
// matches all). It returns how many it queued. Only the held instances are
// read (tagHeld), so a start costs nothing when none is held.
func (s *Store) QueueHeld(ctx context.Context, dest string, match func(Instance) bool) (int, error) {
	var held []string
	err := s.view(func(txn *badger.Txn) error {
		return scan(ctx, txn, []byte{tagHeld}, false, func(item *badger.Item) (bool, error) {
			uid, _ := readStr(item.Key()[1:])
			var rec Instance
			found, err := getJSON(txn, instanceKey(uid), &rec)
			if err != nil || !found {
				return err == nil, err
			}
			if match == nil || match(rec) {
				held = append(held, uid)
			}
			return true, nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("queue held instances for %s: %w", dest, err)
	}
	s.noteQueued(dest)
	queued := map[string]bool{} // a set: a change may run twice (see change)
	for len(held) > 0 {
		if err := ctx.Err(); err != nil {
			return len(queued), fmt.Errorf("queue held instances for %s: %w", dest, err)
		}
		batch := held[:min(len(held), entryBatch/2)]
		held = held[len(batch):]
		err := s.change(func(txn *badger.Txn) error {
			for _, uid := range batch {
				ok, err := s.queueHeldOne(txn, dest, uid)
				if err != nil {
					return err
				}
				if ok {
					queued[uid] = true
				}
			}
			return nil
		})
		if err != nil {
			return len(queued), fmt.Errorf("queue held instances for %s: %w", dest, err)
		}
	}
	return len(queued), nil
}

// queueHeldOne queues the held instance uid for dest. It reads the record
// again inside the transaction: one queued or purged since the scan is
// left as it is.
func (s *Store) queueHeldOne(txn *badger.Txn, dest, uid string) (bool, error) {
	var rec Instance
	found, err := getJSON(txn, instanceKey(uid), &rec)
	if err != nil || !found || len(rec.Destinations) > 0 {
		return false, err
	}
	var st Study
	if _, err := getJSON(txn, studyKey(rec.StudyInstanceUID), &st); err != nil {
		return false, err
	}
	rec.Destinations = []string{dest}
	if err := setJSON(txn, instanceKey(uid), &rec); err != nil {
		return false, err
	}
	if err := txn.Delete(heldKey(uid)); err != nil {
		return false, err
	}
	return true, s.putEntry(txn, nil, newEntry(dest, &rec, &st))
}

// AwaitingCommitment returns dest's entries that were delivered and not yet
// committed, oldest received first. Only those are read (tagDelivered).
func (s *Store) AwaitingCommitment(ctx context.Context, dest string) ([]Entry, error) {
	var out []Entry
	err := s.view(func(txn *badger.Txn) error {
		return scan(ctx, txn, deliveredPrefix(dest), false, func(item *badger.Item) (bool, error) {
			_, _, uid := destTimeUID(item.Key())
			var e Entry
			found, err := getJSON(txn, queueKey(dest, uid), &e)
			if err == nil && found && e.State == Delivered {
				out = append(out, e)
			}
			return err == nil, err
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
func (s *Store) StudyWaiting(ctx context.Context, dest, study string, first time.Time) (int, error) {
	n := 0
	err := s.view(func(txn *badger.Txn) error {
		for _, urgency := range []byte{0, 1} {
			prefix := waitingPrefix(dest).u8(urgency).i64(first.UnixNano()).str(study)
			err := scan(ctx, txn, prefix, false, func(*badger.Item) (bool, error) {
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
