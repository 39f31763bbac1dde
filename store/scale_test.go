package store

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/relais/relais/testdata/storefill"
)

// TestStatsAtScale fills a store with 100,000 small instances through its
// API, moves some along the queue, and logs what the console's calls cost:
// Stats (polled every second; the target is well under 20 ms), RecentStudies,
// StudyProgress, AwaitingCommitment, QueueHeld at start, beside the full
// recount Stats used to do, a restart with entries in flight, and the
// one-time builds of the counts at upgrades. The figures are logged, not
// asserted: this machine is shared.
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
	recent, err := s.RecentStudies(t.Context(), held/perStudy+1)
	if err != nil {
		t.Fatal(err)
	}
	queued := recent[len(recent)-1].StudyInstanceUID // the newest are held
	t.Logf("StudyProgress of a study of %d (the console's list reads it per study): %s", perStudy,
		timeCalls(t, 50, func() error { _, err := s.StudyProgress(t.Context(), queued); return err }))
	t.Logf("the same from the study's instances and entries (what the list read before): %s",
		timeCalls(t, 10, func() error {
			_, recs, err := s.Study(t.Context(), queued)
			for _, r := range recs {
				if err == nil {
					_, err = s.Entries(r.SOPInstanceUID)
				}
			}
			return err
		}))
	t.Logf("AwaitingCommitment (%d delivered of %d entries): %s", len(delivered)-2000, instances-held,
		timeCalls(t, 10, func() error { _, err := s.AwaitingCommitment(t.Context(), "pacs"); return err }))
	t.Logf("QueueHeld of a destination that takes none of %d held: %s", held,
		timeCalls(t, 10, func() error {
			_, err := s.QueueHeld(t.Context(), "none", func(Instance) bool { return false })
			return err
		}))
	t.Logf("full recount (what Stats did before): %s", timeCalls(t, 3, func() error { recount(t, s); return nil }))

	// A PACS refusing a weekend's backlog: 20,000 entries at the queue's
	// head failed, their retry an hour away. The first lease reads them;
	// the next pass over them unread (notDue).
	var refused int
	for refused < 20_000 {
		for _, uid := range leaseUIDs(t, s, "pacs", entryBatch) {
			if _, err := s.Failed("pacs", uid, Failure{Reason: "A700", RetryAt: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			refused++
		}
	}
	s.notDue.clear()
	t.Logf("Lease behind %d failed entries: the first %s; then %s", refused,
		timeCalls(t, 1, func() error { _, err := s.Lease(t.Context(), "pacs", 1, time.Minute); return err }),
		timeCalls(t, 20, func() error { _, err := s.Lease(t.Context(), "pacs", 1, time.Minute); return err }))

	// A restart with 100 entries in flight (leased from the queue's head):
	// Open reads the queue only until it found them.
	inFlight := leaseUIDs(t, s, "pacs", 100)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	s = openTest(t, dir, o)
	t.Logf("Open with %d waiting, %d of them in flight: %v", st.Queues["pacs"].Depth, len(inFlight), time.Since(begin).Round(time.Millisecond))
	if st, err := s.Stats(); err != nil || st.Queues["pacs"].States[InFlight].Count != 0 {
		t.Fatalf("after the restart: %+v, %v", st.Queues["pacs"].States, err)
	}

	makeOldStore(t, s)
	begin = time.Now()
	s = openTest(t, dir, o)
	t.Logf("Open of the same store as format 1, building the counts: %v", time.Since(begin).Round(time.Millisecond))
	checkCounts(t, s)

	makeFormat3(t, s)
	begin = time.Now()
	s = openTest(t, dir, o)
	t.Logf("Open of the same store as format 3, building the study tallies: %v", time.Since(begin).Round(time.Millisecond))
	checkCounts(t, s)
}

// fill commits n small instances through the store's API, sixteen writers
// at a time, perStudy to a study; the last held are received with no
// destination, the others are queued for "pacs" (testdata/storefill makes
// them, as for the bench's scale scenario). It logs how long it took.
func fill(t *testing.T, s *Store, n, perStudy, held int) {
	t.Helper()
	spec := storefill.Spec{N: n, PerStudy: perStudy, Held: held}
	start := time.Now()
	err := storefill.Fill(t.Context(), spec, func(x storefill.Instance) error {
		var dests []string
		if x.Queued {
			dests = []string{"pacs"}
		}
		_, err := tryPut(s, meta(x.Study, x.Series, x.SOPInstanceUID, 1, x.InstanceNumber), x.Data, dests...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("filled %d instances in %d studies: %v (%.0f/s)", n, (n+perStudy-1)/perStudy,
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
