package store

import (
	"encoding/json"
	"fmt"
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
	KindReview      Kind = "review" // a person's decision on a flagged copy
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

// Log appends an event. The log keeps the newest Options.MaxEvents events:
// when it has a sixteenth more, the oldest are deleted. Events are not
// synced on their own; the next commit's sync or Close makes them durable.
// Log fails with ErrFull when the disk is nearly full.
func (s *Store) Log(e Event) error {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	if err := s.room(0, s.opts.Reserve/4); err != nil {
		return fmt.Errorf("log event: %w", err)
	}
	b, err := json.Marshal(&e)
	if err != nil {
		return fmt.Errorf("log event: %w", err)
	}
	s.eventMu.Lock()
	defer s.eventMu.Unlock()
	s.eventSeq++
	k := eventKey(e.Time.UnixNano(), s.eventSeq)
	if err := s.write(func(txn *badger.Txn) error { return txn.Set(k, b) }); err != nil {
		return fmt.Errorf("log event: %w", err)
	}
	s.events++
	if s.events > s.opts.MaxEvents+s.opts.MaxEvents/16 {
		return s.trimEvents()
	}
	return nil
}

// trimEvents deletes the oldest events down to MaxEvents. Under eventMu.
func (s *Store) trimEvents() error {
	for s.events > s.opts.MaxEvents {
		var ks [][]byte
		err := s.view(func(txn *badger.Txn) error {
			return scan(txn, []byte{tagEvent}, false, func(item *badger.Item) (bool, error) {
				ks = append(ks, item.KeyCopy(nil))
				return len(ks) < min(s.events-s.opts.MaxEvents, 1000), nil
			})
		})
		if err == nil {
			err = s.write(func(txn *badger.Txn) error {
				for _, k := range ks {
					if err := txn.Delete(k); err != nil {
						return err
					}
				}
				return nil
			})
		}
		if err != nil {
			return fmt.Errorf("trim events: %w", err)
		}
		s.events -= len(ks)
		if len(ks) == 0 {
			s.events = 0
		}
	}
	return nil
}

func (s *Store) countEvents() error {
	return s.db.View(func(txn *badger.Txn) error {
		return scan(txn, []byte{tagEvent}, false, func(item *badger.Item) (bool, error) {
			s.events++
			s.eventSeq = max(s.eventSeq, idFromKey(item.Key()[8:]))
			return true, nil
		})
	})
}

// Events returns the events matching q, newest first.
func (s *Store) Events(q EventQuery) ([]Event, error) {
	var out []Event
	err := s.view(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Reverse = true
		o.Prefix = []byte{tagEvent}
		it := txn.NewIterator(o)
		defer it.Close()
		start := newKey(tagEvent).i64(1<<63 - 1)
		if !q.Until.IsZero() {
			start = newKey(tagEvent).i64(q.Until.UnixNano()) // sorts before every key at Until
		}
		for it.Seek(start); it.Valid(); it.Next() {
			var e Event
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &e) }); err != nil {
				return fmt.Errorf("decode event: %w", err)
			}
			if !q.Until.IsZero() && !e.Time.Before(q.Until) {
				continue
			}
			if !q.Since.IsZero() && e.Time.Before(q.Since) {
				break
			}
			if len(q.Kinds) > 0 && !slices.Contains(q.Kinds, e.Kind) {
				continue
			}
			out = append(out, e)
			if q.Limit > 0 && len(out) == q.Limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return out, nil
}
