package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestLongReadsEndWithTheirContext fills a store through its API with
// instances, one study each, and as many events, then runs each call that
// reads many keys with a context cancelled as soon as the call has begun:
// the call returns context.Canceled instead of reading on. A request whose
// caller went away, or relaisd shutting down, no longer waits for a scan.
// How long a whole call takes and how soon a cancelled one returned are
// logged, not asserted.
func TestLongReadsEndWithTheirContext(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 100,000 instances (about two minutes)")
	}
	n := 100_000
	if raceEnabled {
		n = 10_000 // as long a scan in time: the race detector slows every read
	}
	o := testOptions()
	o.EventBudgets = map[Kind]int{KindStore: n}
	s := openTest(t, t.TempDir(), o)
	fill(t, s, n, 1, n/10)
	begin := time.Now()
	for i := range n {
		if err := s.Log(Event{Kind: KindStore, Severity: Info, Message: fmt.Sprintf("received instance %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("logged %d events: %v", n, time.Since(begin).Round(time.Millisecond))

	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Studies of a patient with none", func(ctx context.Context) error {
			_, err := s.Studies(ctx, "nobody")
			return err
		}},
		{"Events of a kind never logged", func(ctx context.Context) error {
			_, err := s.Events(ctx, EventQuery{Kinds: []Kind{KindReview}})
			return err
		}},
		{"QueueHeld by a destination that takes none", func(ctx context.Context) error {
			_, err := s.QueueHeld(ctx, "archive", func(Instance) bool { return false })
			return err
		}},
		{"RetryNow of a whole queue", func(ctx context.Context) error {
			_, err := s.RetryNow(ctx, "pacs")
			return err
		}},
		{"Purge of studies not delivered", func(ctx context.Context) error {
			_, err := s.Purge(ctx, Policy{MaxAge: time.Nanosecond})
			return err
		}},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			begin := time.Now()
			if err := c.call(t.Context()); err != nil {
				t.Fatal(err)
			}
			whole := time.Since(begin)

			// Cancelled from another goroutine once the call has begun; a
			// call that ends first (a fast machine) is made again, so the
			// cancel always lands in one.
			ctx, cancel := context.WithCancel(t.Context())
			began := make(chan struct{})
			cancelledAt := make(chan time.Time, 1)
			go func() {
				<-began
				cancelledAt <- time.Now()
				cancel()
			}()
			close(began)
			var err error
			done := 0
			for err == nil {
				if err = c.call(ctx); err == nil {
					done++
				}
			}
			returned := time.Now()
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled call: %v, want context.Canceled", err)
			}
			t.Logf("a whole call took %v; cancelled, it returned %v after the cancel (%d whole calls before)",
				whole.Round(time.Microsecond), returned.Sub(<-cancelledAt).Round(time.Microsecond), done)
		})
	}
}
