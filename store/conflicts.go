package store

import (
	"context"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// Review of flagged copies: a SOP Instance UID that arrived again with other
// bytes is kept beside the accepted copy (see commitCopy) until a person
// decides which copy is right. Only the conflict rows and one record per UID
// are read, never the whole store.

// Action is a reviewer's decision on a flagged copy.
type Action string

const (
	// Correct: the flagged copy replaces the accepted one and is queued
	// again, as a correction, where the accepted one was queued.
	Correct Action = "correct"
	// Discard: the flagged copy is removed; the accepted one stays as it is.
	Discard Action = "discard"
)

// ErrInFlight is returned by ResolveConflict when the accepted copy is being
// sent: replacing it then could record the old copy's delivery for the new one.
var ErrInFlight = errors.New("store: the accepted copy is being sent now; try again in a moment")

// Conflicted is a SOP Instance UID held with other bytes as well.
type Conflicted struct {
	Held   *Instance  // the accepted copy; nil when it is gone (purged with its own study)
	Copies []Instance // the flagged copies, oldest first
}

// Resolution is what ResolveConflict did.
type Resolution struct {
	Action Action
	Copy   Instance  // the flagged copy as it now is (accepted and queued after Correct)
	Held   *Instance // Correct: the accepted copy it replaced, if there was one
}

// ListConflicts returns up to limit UIDs with flagged copies, in key order.
func (s *Store) ListConflicts(ctx context.Context, limit int) ([]Conflicted, error) {
	var out []Conflicted
	err := s.view(func(txn *badger.Txn) error {
		var err error
		out, err = conflicted(ctx, txn, []byte{tagConflict}, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list conflicts: %w", err)
	}
	return out, nil
}

// ConflictedInstance returns the accepted and flagged copies of uid, or
// ErrNotFound when it has no flagged copy.
func (s *Store) ConflictedInstance(ctx context.Context, uid string) (Conflicted, error) {
	var out []Conflicted
	err := s.view(func(txn *badger.Txn) error {
		var err error
		out, err = conflicted(ctx, txn, conflictPrefix(uid), 1)
		if err == nil && len(out) == 0 {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return Conflicted{}, fmt.Errorf("conflicts of %s: %w", uid, err)
	}
	return out[0], nil
}

// conflicted groups the flagged copies under prefix by UID (their keys are
// in UID order), with each UID's accepted copy, for up to limit UIDs.
func conflicted(ctx context.Context, txn *badger.Txn, prefix []byte, limit int) ([]Conflicted, error) {
	var out []Conflicted
	err := scanJSON(ctx, txn, prefix, func(_ []byte, c *Instance) (bool, error) {
		if n := len(out); n == 0 || out[n-1].Copies[0].SOPInstanceUID != c.SOPInstanceUID {
			if n == limit {
				return false, nil
			}
			var held Instance
			found, err := getJSON(txn, instanceKey(c.SOPInstanceUID), &held)
			if err != nil {
				return false, err
			}
			out = append(out, Conflicted{})
			if found {
				out[n].Held = &held
			}
		}
		out[len(out)-1].Copies = append(out[len(out)-1].Copies, *c)
		return true, nil
	})
	return out, err
}

// ResolveConflict applies a reviewer's decision to the flagged copy id of
// uid, in one transaction, synced; then the bytes of the copy that goes
// are removed.
func (s *Store) ResolveConflict(uid string, id uint64, action Action) (Resolution, error) {
	if action != Correct && action != Discard {
		return Resolution{}, fmt.Errorf("resolve conflict %s/%d: unknown action %q (correct or discard)", uid, id, action)
	}
	res := Resolution{Action: action}
	err := s.changeSynced(func(txn *badger.Txn) error {
		var c Instance
		found, err := getJSON(txn, conflictKey(uid, id), &c)
		if err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		if action == Discard {
			res.Copy = c
			return s.discard(txn, &c)
		}
		res.Copy, res.Held, err = s.promote(txn, &c)
		return err
	})
	if err != nil {
		return Resolution{}, fmt.Errorf("%s conflicting copy %d of %s: %w", action, id, uid, err)
	}
	if err := s.removeDoomed(); err != nil { // done: its marker stays, for the next purge or Open
		s.opts.Logger.Warn("store: remove the file of a resolved copy", "err", err)
	}
	return res, nil
}

// discard removes the flagged copy c and its bytes.
func (s *Store) discard(txn *badger.Txn, c *Instance) error {
	for _, k := range [][]byte{conflictKey(c.SOPInstanceUID, c.ID), studyInstanceKey(c)} {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	if err := s.leaveStudy(txn, c); err != nil {
		return err
	}
	return dropBytes(txn, c)
}

// promote makes the flagged copy c the accepted one. The accepted copy goes
// first, as a purge removes it, while c still keeps their study; then c is
// accepted and queued, Pending, for the accepted copy's destinations; last
// it stops counting as a conflict.
func (s *Store) promote(txn *badger.Txn, c *Instance) (Instance, *Instance, error) {
	var held *Instance
	var h Instance
	found, err := getJSON(txn, instanceKey(c.SOPInstanceUID), &h)
	if err != nil {
		return Instance{}, nil, err
	}
	if found {
		held = &h
		if err := refuseInFlight(txn, held); err != nil {
			return Instance{}, nil, err
		}
		if err := s.removeInstance(txn, held); err != nil {
			return Instance{}, nil, err
		}
	}
	rec := *c
	rec.Conflict = false
	rec.Destinations = nil
	if held != nil {
		rec.Destinations = held.Destinations
	}
	if err := s.accept(txn, &rec); err != nil { // overwrites c's index row
		return Instance{}, nil, err
	}
	if err := txn.Delete(conflictKey(c.SOPInstanceUID, c.ID)); err != nil {
		return Instance{}, nil, err
	}
	return rec, held, s.leaveStudy(txn, c)
}

// refuseInFlight returns ErrInFlight when a forwarder holds a lease on one
// of rec's entries: its delivery report would land on the new entry.
func refuseInFlight(txn *badger.Txn, rec *Instance) error {
	for _, dest := range rec.Destinations {
		var e Entry
		found, err := getJSON(txn, queueKey(dest, rec.SOPInstanceUID), &e)
		if err != nil {
			return err
		}
		if found && e.State == InFlight {
			return fmt.Errorf("%w (to %s)", ErrInFlight, dest)
		}
	}
	return nil
}
