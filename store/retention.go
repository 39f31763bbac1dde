package store

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Policy says what Purge may remove. Zero fields do not purge.
type Policy struct {
	// MaxAge: studies whose last instance arrived longer ago are purged.
	MaxAge time.Duration
	// HighWatermark and LowWatermark are fractions of the filesystem in use
	// (0 to 1). At or above High, the oldest studies are purged until about
	// Low would be in use. Purge first fits them to the disk (Space.Clamp),
	// so purging starts before stores are refused.
	HighWatermark, LowWatermark float64
}

// PurgeResult says what a purge removed.
type PurgeResult struct {
	Studies   int
	Instances int
	Bytes     int64 // of the instances removed
	Kept      int   // studies old enough to go but not done everywhere
}

// gcDiscardRatio: a value log file is rewritten when at least this fraction
// of it is dead. Lower frees more space and rewrites more live data.
const gcDiscardRatio = 0.5

// Purge removes the oldest studies first, and only studies that are done
// everywhere they are queued: Committed at each destination, or Delivered
// where the destination was set with NoCommitment, or abandoned there by a
// person. Undelivered data is never removed, whatever the watermarks: not
// an instance queued nowhere (held, or routed nowhere), not a parked one,
// and not a study holding a flagged conflict (a person must look at it). Purge then drops orphan
// files (of purged copies) and runs value-log GC, so the disk space comes
// back. Call it periodically and when ErrFull is seen.
//
// Whatever the policy, when less than Space.Purge is free it removes done
// studies until a Margin more is: a box never refuses new studies while it
// holds delivered ones it may drop.
func (s *Store) Purge(ctx context.Context, p Policy) (PurgeResult, error) {
	s.purgeMu.Lock()
	defer s.purgeMu.Unlock()
	var res PurgeResult
	sp, err := s.Space()
	if err != nil {
		return res, fmt.Errorf("purge: %w", err)
	}
	p, _ = sp.Clamp(p)
	need := sp.toFree(p)
	var cutoff time.Time
	if p.MaxAge > 0 {
		cutoff = s.now().Add(-p.MaxAge)
	}
	for st, err := range s.studiesOldestFirst(ctx, agePage) {
		if err != nil {
			return res, fmt.Errorf("purge: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		old := !cutoff.IsZero() && st.last.Before(cutoff)
		if !old && res.Bytes >= need {
			break // studies are in age order: none after this is old either
		}
		n, bytes, done, err := s.purgeStudy(ctx, st.uid)
		if err != nil {
			return res, fmt.Errorf("purge study %s: %w", st.uid, err)
		}
		if !done {
			res.Kept++
			continue
		}
		res.Studies++
		res.Instances += n
		res.Bytes += bytes
	}
	if err := s.removeDoomed(); err != nil { // the files, once their records' removal is on disk
		return res, fmt.Errorf("purge: %w", err)
	}
	s.gcValueLog()
	return res, nil
}

// studyAge is a row of the age index: a study and when it last received.
type studyAge struct {
	uid  string
	last time.Time
}

// agePage is how many age rows one read transaction takes.
const agePage = 256

// studiesOldestFirst yields the studies by last receive time, oldest first,
// reading the age index page rows at a time: no study record is decoded,
// and a purge that stops early reads no further. Each page is a fresh read,
// so the purges between pages are seen.
func (s *Store) studiesOldestFirst(ctx context.Context, page int) iter.Seq2[studyAge, error] {
	return func(yield func(studyAge, error) bool) {
		var after key
		for {
			rows, err := s.studyAges(ctx, after, page)
			if err != nil {
				yield(studyAge{}, err)
				return
			}
			for _, st := range rows {
				if !yield(st, nil) {
					return
				}
			}
			if len(rows) < page {
				return
			}
			last := rows[len(rows)-1]
			after = studyAgeKey(last.last.UnixNano(), last.uid)
		}
	}
}

// studyAges reads up to n rows of the age index after the key after (nil:
// from the oldest).
func (s *Store) studyAges(ctx context.Context, after key, n int) ([]studyAge, error) {
	var out []studyAge
	start := key{tagStudyAge}
	if after != nil {
		start = append(after, 0) // the first key past after
	}
	err := s.view(func(txn *badger.Txn) error {
		return scanFrom(ctx, txn, []byte{tagStudyAge}, start, false, func(item *badger.Item) (bool, error) {
			last, rest := readI64(item.Key()[1:])
			uid, _ := readStr(rest)
			out = append(out, studyAge{uid: uid, last: time.Unix(0, last)})
			return len(out) < n, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read study ages: %w", err)
	}
	return out, nil
}

// purgeStudy removes a study's instances if every one is done everywhere.
// Each instance goes in its own transaction (a study can be large); the
// check is repeated inside it, so an instance that changed meanwhile stays.
func (s *Store) purgeStudy(ctx context.Context, uid string) (n int, bytes int64, done bool, err error) {
	var recs []Instance
	err = s.view(func(txn *badger.Txn) error {
		var st Study
		found, err := getJSON(txn, studyKey(uid), &st)
		if err != nil || !found || st.Conflicts > 0 {
			return err
		}
		recs, err = studyInstances(ctx, txn, uid)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if ok, err := instanceDone(txn, &r); err != nil || !ok {
				recs = nil
				return err
			}
		}
		done = true
		return nil
	})
	if err != nil || !done {
		return 0, 0, false, err
	}
	for _, r := range recs {
		err := s.change(func(txn *badger.Txn) error {
			ok, err := instanceDone(txn, &r)
			if err != nil || !ok {
				done = false
				return err
			}
			return s.removeInstance(txn, &r)
		})
		if err != nil || !done {
			return n, bytes, false, err
		}
		n++
		bytes += r.Size
	}
	return n, bytes, true, nil
}

// instanceDone tells whether rec has reached every destination for good.
// An instance queued nowhere — held while no destination was configured,
// or matched by no destination's filter — has reached nobody: it is kept.
// One a person abandoned at a destination counts as done there.
func instanceDone(txn *badger.Txn, rec *Instance) (bool, error) {
	if rec.Conflict || len(rec.Destinations) == 0 {
		return false, nil
	}
	for _, dest := range rec.Destinations {
		var e Entry
		found, err := getJSON(txn, queueKey(dest, rec.SOPInstanceUID), &e)
		if err != nil || !found {
			return false, err
		}
		switch e.State {
		case Committed, Abandoned:
		case Delivered:
			var d Destination
			if _, err := getJSON(txn, destKey(dest), &d); err != nil || !d.NoCommitment {
				return false, err
			}
		default:
			return false, nil
		}
	}
	return true, nil
}

// gcValueLog rewrites value log files that are mostly dead until none is.
func (s *Store) gcValueLog() {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.closed {
		return
	}
	for range 1000 {
		err := s.db.RunValueLogGC(gcDiscardRatio)
		if err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) {
				s.opts.Logger.Warn("value log gc", "dir", s.dir, "err", err)
			}
			return
		}
	}
}
