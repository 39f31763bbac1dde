package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Damaged copies. A reader that finds an accepted copy's bytes missing or
// different from those committed (reader.go) marks the copy damaged: a row
// per copy (tagDamaged) and a total, kept in the transactions that add and
// drop them, so the status says how many and which studies at the cost of
// a few keys. The copy is never served; the mark goes with its record.
//
// A damaged copy is mended by sending it again: the same bytes as committed
// (the same SHA-256 and size) are no duplicate then but the good copy,
// which takes the damaged one's place and is queued again where it did not
// arrive (see repair). The held copy is read before such bytes commit
// (checkHeld), so a copy damaged but not yet read is found then too.

// Damage is an accepted copy found damaged, as the status lists it.
type Damage struct {
	SOPInstanceUID   string
	StudyInstanceUID string
	PatientName      string
	CallingAE        string // who sent it: the one to ask for it again
	ID               uint64 // the damaged copy
	Size             int64
	Missing          bool // its bytes are gone, not changed
	FoundAt          time.Time
	Error            string // what the reader found
}

// checkHeld reads held, the accepted copy that bytes sent again are the
// same as (the same SHA-256 and size), before they commit as its duplicate:
// a copy damaged since its own commit and not read since is then found,
// marked and reported, and the bytes commit as its repair instead of being
// dropped. A sender asked for nothing sends a study again now and then; a
// copy it mends this way is one the forwarder never finds damaged. Only
// such bytes pay for the read (commitTxn).
func (s *Store) checkHeld(ctx context.Context, held *Instance) {
	r := s.OpenInstance(ctx, *held)
	defer r.Close()
	_, _ = io.Copy(io.Discard, r) // a damaged copy reports itself (reader.damaged)
}

// reportDamage marks rec damaged and writes it to the event log, once per
// copy while the store is open: a forwarder that retries must not flood the
// log. A flagged (conflicting) copy is reported but not marked: sending it
// again mends nothing, a reviewer decides about it.
func (s *Store) reportDamage(rec Instance, err error) {
	s.damagedMu.Lock()
	seen := s.damaged[rec.ID]
	s.damaged[rec.ID] = true
	s.damagedMu.Unlock()
	if seen {
		return
	}
	d := Damage{SOPInstanceUID: rec.SOPInstanceUID, StudyInstanceUID: rec.StudyInstanceUID, PatientName: rec.PatientName,
		CallingAE: rec.CallingAE, ID: rec.ID, Size: rec.Size, Missing: errors.Is(err, ErrMissing), FoundAt: s.now(), Error: err.Error()}
	what := "damaged"
	if d.Missing {
		what = "missing"
	}
	s.opts.Logger.Error("store: stored copy "+what, "sop_instance_uid", rec.SOPInstanceUID, "id", rec.ID, "err", err)
	if merr := s.change(func(txn *badger.Txn) error { return markDamaged(txn, &d) }); merr != nil {
		s.opts.Logger.Error("store: mark damaged copy", "sop_instance_uid", rec.SOPInstanceUID, "err", merr)
	}
	sender := "the sender"
	if rec.CallingAE != "" {
		sender = rec.CallingAE
	}
	lerr := s.Log(Event{
		Kind:     KindStore,
		Severity: Error,
		Message: fmt.Sprintf("the stored copy of %s (study %s) is %s on this box's disk and is not sent; ask %s to send it again: the good copy replaces it and goes out [%v]",
			rec.SOPInstanceUID, rec.StudyInstanceUID, what, sender, err),
		Attrs: map[string]string{"sop_instance_uid": rec.SOPInstanceUID, "study": rec.StudyInstanceUID, "copy": strconv.FormatUint(rec.ID, 10)},
	})
	if lerr != nil {
		s.opts.Logger.Error("store: log damaged copy", "err", lerr)
	}
}

// markDamaged writes d's row and counts it, if d's copy is still the
// accepted copy of its UID and not marked yet.
func markDamaged(txn *badger.Txn, d *Damage) error {
	holder, err := getRaw(txn, copyKey(d.ID))
	if err != nil || string(holder) != string(instanceKey(d.SOPInstanceUID)) {
		return err // purged, replaced or flagged meanwhile
	}
	if found, err := isDamaged(txn, d.ID); err != nil || found {
		return err
	}
	if err := setJSON(txn, damagedKey(d.ID), d); err != nil {
		return err
	}
	return bumpTotal(txn, totalDamaged, 1, d.Size)
}

func isDamaged(txn *badger.Txn, id uint64) (bool, error) {
	_, err := txn.Get(damagedKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// dropDamage removes copy rec's damage row and count, if it has one: called
// with every deletion of a copy's bytes (dropBytes).
func dropDamage(txn *badger.Txn, rec *Instance) error {
	found, err := isDamaged(txn, rec.ID)
	if err != nil || !found {
		return err
	}
	if err := txn.Delete(damagedKey(rec.ID)); err != nil {
		return err
	}
	return bumpTotal(txn, totalDamaged, -1, -rec.Size)
}

// repair makes rec, the same bytes as the damaged accepted copy held, the
// accepted copy in its place: the same record under rec's id, the damaged
// bytes doomed, and its entries that did not arrive queued again at once
// (parked or failed ones; a delivered one arrived before the damage).
func (s *Store) repair(txn *badger.Txn, rec, held *Instance) (Result, error) {
	fixed := *held
	fixed.ID, fixed.Inline = rec.ID, rec.Inline
	ik := instanceKey(held.SOPInstanceUID)
	if err := setJSON(txn, ik, &fixed); err != nil {
		return Result{}, err
	}
	if err := txn.Set(copyKey(fixed.ID), ik); err != nil {
		return Result{}, err
	}
	if err := txn.Delete(studyInstanceKey(held)); err != nil { // its key ends with the id
		return Result{}, err
	}
	if err := txn.Set(studyInstanceKey(&fixed), ik); err != nil {
		return Result{}, err
	}
	if err := dropBytes(txn, held); err != nil {
		return Result{}, err
	}
	for _, dest := range held.Destinations {
		err := s.updateEntry(txn, dest, held.SOPInstanceUID, func(e *Entry) {
			if e.State == Parked || e.State == Failed {
				resetEntry(e)
			}
		})
		if err != nil && !errors.Is(err, ErrNotFound) {
			return Result{}, err
		}
	}
	return Result{Outcome: Repaired, Instance: fixed}, nil
}

// DamagedCopies returns up to limit damaged copies, oldest copy first, and
// how many there are. Only the damage rows are read.
func (s *Store) DamagedCopies(ctx context.Context, limit int) ([]Damage, int, error) {
	var out []Damage
	var total Tally
	err := s.view(func(txn *badger.Txn) error {
		var err error
		if total, err = readTally(txn, totalKey(totalDamaged)); err != nil {
			return err
		}
		return scanJSON(ctx, txn, []byte{tagDamaged}, func(_ []byte, d *Damage) (bool, error) {
			out = append(out, *d)
			return limit <= 0 || len(out) < limit, nil
		})
	})
	if err != nil {
		return nil, 0, fmt.Errorf("damaged copies: %w", err)
	}
	return out, total.Count, nil
}

// countDamaged counts the damage rows, for a format upgrade's rebuild of
// the totals.
func countDamaged(txn *badger.Txn, _ *badger.WriteBatch, counts map[string]Tally) error {
	return scanJSON(context.Background(), txn, []byte{tagDamaged}, func(_ []byte, d *Damage) (bool, error) {
		addCount(counts, totalKey(totalDamaged), d.Size)
		return true, nil
	})
}
