package store

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestStatsAtScale fills a store with 100,000 small instances through its
// API, moves some along the queue, and logs what the console's calls cost:
// Stats (polled every second; the target is well under 20 ms), RecentStudies,
// AwaitingCommitment, QueueHeld at start, beside the full recount Stats used
// to do, and the one-time build of the counts at an upgrade. The figures are
// logged, not asserted: this machine is shared.
func TestStatsAtScale(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("fills 100,000 instances (about a minute); figures under -race mean nothing")
	}
	const (
		instances = 100_000
		perStudy  = 100
		held      = 1000 // the last ones, received with no destination
	)
	dir := t.TempDir()
	o := DefaultOptions()
	o.Reserve = 1 << 20
	o.Logger = testOptions().Logger
	s := openTest(t, dir, o)
	fill(t, s, instances, perStudy, held)

	// 5,000 delivered, 2,000 of them committed.
	var delivered []string
	for len(delivered) < 5000 {
		for _, uid := range leaseUIDs(t, s, "pacs", entryBatch) {
			if err := s.Delivered("pacs", uid); err != nil {
				t.Fatal(err)
			}
			delivered = append(delivered, uid)
		}
	}
	if err := s.Committed("pacs", delivered[:2000]...); err != nil {
		t.Fatal(err)
	}

	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Instances.Count != instances || st.Studies != instances/perStudy || st.Queues["pacs"].Depth != instances-held-len(delivered) {
		t.Fatalf("stats %+v, pacs %+v", st, st.Queues["pacs"])
	}
	t.Logf("Stats: %s", timeCalls(t, 50, func() error { _, err := s.Stats(); return err }))
	t.Logf("RecentStudies(50): %s", timeCalls(t, 20, func() error { _, err := s.RecentStudies(t.Context(), 50); return err }))
	t.Logf("AwaitingCommitment (%d delivered of %d entries): %s", len(delivered)-2000, instances-held,
		timeCalls(t, 10, func() error { _, err := s.AwaitingCommitment(t.Context(), "pacs"); return err }))
	t.Logf("QueueHeld of a destination that takes none of %d held: %s", held,
		timeCalls(t, 10, func() error {
			_, err := s.QueueHeld(t.Context(), "none", func(Instance) bool { return false })
			return err
		}))
	t.Logf("full recount (what Stats did before): %s", timeCalls(t, 3, func() error { recount(t, s); return nil }))

	makeOldStore(t, s)
	begin := time.Now()
	s = openTest(t, dir, o)
	t.Logf("Open of the same store as format 1, building the counts: %v", time.Since(begin).Round(time.Millisecond))
	checkCounts(t, s)
}

// fill commits n small instances through the store's API, sixteen writers
// at a time, perStudy to a study; the last held are received with no
// destination, the others are queued for "pacs". It logs how long it took.
func fill(t *testing.T, s *Store, n, perStudy, held int) {
	t.Helper()
	const writers = 16
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || t.Failed() {
					return
				}
				study := fmt.Sprintf("1.2.826.0.1.%d", i/perStudy)
				m := meta(study, study+".1", fmt.Sprintf("%s.1.%d", study, i), 1, i%perStudy)
				var dests []string
				if i < n-held {
					dests = []string{"pacs"}
				}
				if _, err := tryPut(s, m, fmt.Appendf(nil, "instance %d %0400d", i, i), dests...); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("filled %d instances in %d studies with %d writers: %v (%.0f/s)", n, (n+perStudy-1)/perStudy, writers,
		time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
}

// timeCalls runs fn n times and says the median and the slowest.
func timeCalls(t *testing.T, n int, fn func() error) string {
	t.Helper()
	var d []time.Duration
	for range n {
		begin := time.Now()
		if err := fn(); err != nil {
			t.Fatal(err)
		}
		d = append(d, time.Since(begin))
	}
	slices.Sort(d)
	return fmt.Sprintf("median %v, max %v (%d calls)", d[n/2].Round(time.Microsecond), d[n-1].Round(time.Microsecond), n)
}
