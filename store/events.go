package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Kind is what an event is about.
type Kind string

const (
	KindAssociation Kind = "association"
	KindStore       Kind = "store"
	KindReject      Kind = "reject"
	KindForward     Kind = "forward"
	KindRetry       Kind = "retry"
	KindCommit      Kind = "commit"
	KindPurge       Kind = "purge"
	KindConfig      Kind = "config"
	KindReview      Kind = "review"  // a person's decision on a flagged copy
	KindConsole     Kind = "console" // the console over SSH: connections, allowed keys
)

// Severity says how much an event matters to the technician.
type Severity string

const (
	Info    Severity = "info"
	Warning Severity = "warning"
	Error   Severity = "error"
)

// Event is one line of the log the technician reads.
type Event struct {
	Time     time.Time // zero: now
	Kind     Kind
	Severity Severity
	Message  string
	Attrs    map[string]string
}

// EventQuery selects events. Zero fields do not restrict.
type EventQuery struct {
	Since, Until time.Time // Since inclusive, Until exclusive
	Kinds        []Kind
	Limit        int
}

// Log appends an event. Each kind keeps its newest events up to its budget
// (Options.EventBudgets): when it has a sixteenth more, its oldest are
// deleted, and no other kind's events are touched. The event, its kind's
// index row and its kind's count are written in one transaction, so the
// counts never need a scan. Log returns once the event is visible, not
// waiting for its sync (every later transaction does). Log fails with
// ErrFull when the disk is nearly full, and with the store's error when it
// writes nothing after a failed write; the event is then kept aside, in a
// plain synced file, and added to the log at the next Open (asideName).
func (s *Store) Log(e Event) error { return s.log(e, true) }

// log is Log; aside: keep the event aside if it cannot be written.
func (s *Store) log(e Event, aside bool) error {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	b, err := json.Marshal(&e)
	if err != nil {
		return fmt.Errorf("log event: %w", err)
	}
	s.eventMu.Lock()
	defer s.eventMu.Unlock()
	if _, err := s.room(0, forBookkeeping); err != nil {
		return s.notLogged(err, b, aside)
	}
	s.eventSeq++
	seq, at, n := s.eventSeq, e.Time.UnixNano(), s.eventCounts[e.Kind]+1
	err = s.change(func(txn *badger.Txn) error {
		if err := txn.Set(eventKey(at, seq), b); err != nil {
			return err
		}
		if err := txn.Set(eventKindKey(e.Kind, at, seq), nil); err != nil {
			return err
		}
		return txn.Set(eventCountKey(e.Kind), countValue(n, seq))
	})
	if err != nil {
		return s.notLogged(err, b, aside)
	}
	s.eventCounts[e.Kind] = n
	if budget := s.opts.eventBudget(e.Kind); n > budget+budget/16 {
		return s.trimEvents(e.Kind, budget)
	}
	return nil
}

// asideName is the plain file beside Badger's that holds the events Log
// could not write there (the store writing nothing after a failed write,
// or the disk nearly full): one synced JSON line each, added to the log at
// the next Open. The events of a failure are those a person reads after it.
const asideName = "events-aside.jsonl"

// asideMax bounds the aside file (some 10,000 events): a modality sending
// all night to a broken store must not fill the disk with its refusals.
const asideMax = 4 << 20

// notLogged keeps an event Log could not write aside (when aside), and
// says so in its error.
func (s *Store) notLogged(err error, event []byte, aside bool) error {
	if !aside {
		return fmt.Errorf("log event: %w", err)
	}
	if kerr := s.keepAside(event); kerr != nil {
		return fmt.Errorf("log event: %w (and not kept aside: %v)", err, kerr)
	}
	return fmt.Errorf("log event: %w (kept aside for the next start)", err)
}

// keepAside appends an event's JSON to the aside file and syncs it (and,
// when it creates the file, its name). Called with eventMu held.
func (s *Store) keepAside(event []byte) error {
	path := filepath.Join(s.dir, asideName)
	fi, statErr := os.Stat(path)
	if statErr == nil && fi.Size() >= asideMax {
		return fmt.Errorf("%s is full (%d bytes)", asideName, fi.Size())
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(event, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && statErr != nil {
		err = fsyncPath(s.dir)
	}
	return err
}

// addAside adds the events kept aside to the log, at their own times, says
// how many, and removes the file. A line cut by a crash while it was
// written is skipped; a crash after the events are added and before the
// file is gone adds them again at the next Open. It never fails Open: what
// it cannot do waits for the next one, and says why in the process log.
func (s *Store) addAside() error {
	if err := s.addAsideEvents(); err != nil {
		s.opts.Logger.Warn("store: events kept aside not added yet", "file", asideName, "err", err)
	}
	return nil
}

func (s *Store) addAsideEvents() error {
	path := filepath.Join(s.dir, asideName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	n := 0
	var first time.Time
	for line := range bytes.Lines(b) {
		var e Event
		if json.Unmarshal(line, &e) != nil {
			continue
		}
		if err := s.log(e, false); err != nil {
			return err // those added so far are added again next time
		}
		if n == 0 {
			first = e.Time
		}
		n++
	}
	if n > 0 {
		full := ""
		if len(b) >= asideMax {
			full = " (the file was full: later ones were not kept)"
		}
		err := s.log(Event{Kind: KindStore, Severity: Warning, Message: fmt.Sprintf(
			"%d event(s) from %s on, recorded while the store could not write, were added to the log at their own times%s",
			n, first.Local().Format(time.DateTime), full)}, false)
		if err != nil {
			return err
		}
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	return fsyncPath(s.dir)
}

// EventCounts returns how many events of each kind the log holds.
func (s *Store) EventCounts() map[Kind]int {
	s.eventMu.Lock()
	defer s.eventMu.Unlock()
	return maps.Clone(s.eventCounts)
}

func countValue(n int, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(n)), seq)
}

// trimEvents deletes kind k's oldest events down to budget, a thousand per
// transaction, with its count in the same transaction. Under eventMu.
func (s *Store) trimEvents(k Kind, budget int) error {
	for s.eventCounts[k] > budget {
		var ks [][]byte
		err := s.view(func(txn *badger.Txn) error {
			return scan(context.Background(), txn, eventKindPrefix(k), false, func(item *badger.Item) (bool, error) {
				ks = append(ks, item.KeyCopy(nil))
				return len(ks) < min(s.eventCounts[k]-budget, 1000), nil
			})
		})
		// An empty index with a positive count is a count out of step
		// (it cannot happen through this package): start again from zero.
		n := max(s.eventCounts[k]-len(ks), 0)
		if len(ks) == 0 {
			n = 0
		}
		if err == nil {
			err = s.change(func(txn *badger.Txn) error {
				for _, ik := range ks {
					if err := txn.Delete(eventKeyOf(ik)); err != nil {
						return err
					}
					if err := txn.Delete(ik); err != nil {
						return err
					}
				}
				return txn.Set(eventCountKey(k), countValue(n, s.eventSeq))
			})
		}
		if err != nil {
			return fmt.Errorf("trim %s events: %w", k, err)
		}
		s.eventCounts[k] = n
	}
	return nil
}

// loadEventCounts reads the kept counts: one row per kind. A store from
// before per-kind budgets has events and no counts: it is indexed once.
func (s *Store) loadEventCounts() error {
	err := s.db.View(func(txn *badger.Txn) error {
		return scan(context.Background(), txn, []byte{tagEventCount}, false, func(item *badger.Item) (bool, error) {
			return true, item.Value(func(v []byte) error {
				if len(v) != 16 {
					return fmt.Errorf("event count %q: %d bytes, want 16", item.Key(), len(v))
				}
				s.eventCounts[kindOf(item.Key())] = int(binary.BigEndian.Uint64(v))
				s.eventSeq = max(s.eventSeq, binary.BigEndian.Uint64(v[8:]))
				return nil
			})
		})
	})
	if err != nil || len(s.eventCounts) > 0 {
		return err
	}
	return s.indexEvents()
}

// indexEvents builds the kind index and the counts of a store written
// before they existed (or a new one, which has nothing to index), then
// trims each kind to its budget. It reads every event once; the counts
// are written last, so a crash in between only makes the next Open do it
// again.
func (s *Store) indexEvents() error {
	start := time.Now()
	counts := map[Kind]int{}
	var batch [][]byte
	flush := func() error {
		err := s.change(func(txn *badger.Txn) error {
			for _, k := range batch {
				if err := txn.Set(k, nil); err != nil {
					return err
				}
			}
			return nil
		})
		batch = batch[:0]
		return err
	}
	err := s.db.View(func(txn *badger.Txn) error {
		return scan(context.Background(), txn, []byte{tagEvent}, false, func(item *badger.Item) (bool, error) {
			var e struct{ Kind Kind }
			if err := item.Value(func(b []byte) error { return json.Unmarshal(b, &e) }); err != nil {
				return false, fmt.Errorf("decode event %q: %w", item.Key(), err)
			}
			k := item.Key()
			seq := binary.BigEndian.Uint64(k[9:17])
			at := int64(binary.BigEndian.Uint64(k[1:9]) ^ (1 << 63))
			batch = append(batch, eventKindKey(e.Kind, at, seq))
			counts[e.Kind]++
			s.eventSeq = max(s.eventSeq, seq)
			if len(batch) < 1000 {
				return true, nil
			}
			return true, flush()
		})
	})
	if err == nil && len(batch) > 0 {
		err = flush()
	}
	if err != nil || len(counts) == 0 {
		return err
	}
	err = s.change(func(txn *badger.Txn) error {
		for k, n := range counts {
			if err := txn.Set(eventCountKey(k), countValue(n, s.eventSeq)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.eventCounts = counts
	total := 0
	for _, n := range counts {
		total += n
	}
	s.opts.Logger.Info("event log indexed by kind, once (a store from before per-kind budgets)",
		"events", total, "kinds", len(counts), "took", time.Since(start).Round(time.Millisecond))
	for k := range counts {
		if err := s.trimEvents(k, s.opts.eventBudget(k)); err != nil {
			return err
		}
	}
	return nil
}

// Events returns the events matching q, newest first. It stops, with
// ctx's error, when ctx ends.
func (s *Store) Events(ctx context.Context, q EventQuery) ([]Event, error) {
	var out []Event
	err := s.view(func(txn *badger.Txn) error {
		start := newKey(tagEvent).i64(1<<63 - 1)
		if !q.Until.IsZero() {
			start = newKey(tagEvent).i64(q.Until.UnixNano()) // sorts before every key at Until
		}
		return scanFrom(ctx, txn, []byte{tagEvent}, start, true, func(item *badger.Item) (bool, error) {
			var e Event
			if err := item.Value(func(b []byte) error { return json.Unmarshal(b, &e) }); err != nil {
				return false, fmt.Errorf("decode event: %w", err)
			}
			switch {
			case !q.Until.IsZero() && !e.Time.Before(q.Until):
				return true, nil
			case !q.Since.IsZero() && e.Time.Before(q.Since):
				return false, nil
			case len(q.Kinds) > 0 && !slices.Contains(q.Kinds, e.Kind):
				return true, nil
			}
			out = append(out, e)
			return q.Limit <= 0 || len(out) < q.Limit, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return out, nil
}
