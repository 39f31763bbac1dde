package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newClock() *clock { return &clock{time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)} }

// openClocked opens a store in a fresh directory on a test clock.
func openClocked(t *testing.T) (*Store, *clock) {
	c := newClock()
	o := testOptions()
	o.Now = c.now
	return openTest(t, t.TempDir(), o), c
}

func leaseUIDs(t *testing.T, s *Store, dest string, max int) []string {
	t.Helper()
	es, err := s.Lease(context.Background(), dest, max, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, e := range es {
		if e.State != InFlight {
			t.Fatalf("leased entry in state %v", e.State)
		}
		uids = append(uids, e.SOPInstanceUID)
	}
	return uids
}

func TestLeaseOrderUrgentThenOldestThenSeriesOrder(t *testing.T) {
	s, c := openClocked(t)
	store := func(study, series string, sn, in int, urgent bool) {
		m := meta(study, series, fmt.Sprintf("%s.%d.%d", study, sn, in), sn, in)
		m.Urgent = urgent
		put(t, s, m, []byte(m.SOPInstanceUID), "pacs")
		c.t = c.t.Add(time.Second)
	}
	// Study A arrives first, B second (urgent), C third; instances arrive
	// out of order within each.
	store("A", "A.2", 2, 1, false)
	store("A", "A.1", 1, 2, false)
	store("A", "A.1", 1, 1, false)
	store("B", "B.1", 1, 2, true)
	store("B", "B.1", 1, 1, false)
	store("C", "C.1", 1, 1, false)
	got := leaseUIDs(t, s, "pacs", 100)
	want := []string{"B.1.1", "B.1.2", "A.1.1", "A.1.2", "A.2.1", "C.1.1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("lease order %v, want %v", got, want)
	}
	if again := leaseUIDs(t, s, "pacs", 100); len(again) != 0 {
		t.Fatalf("leased entries handed out again before the lease ran out: %v", again)
	}
	c.t = c.t.Add(2 * time.Minute)
	if again := leaseUIDs(t, s, "pacs", 100); len(again) != len(want) {
		t.Fatalf("after the lease ran out %d entries, want %d", len(again), len(want))
	}
}

func TestMarkUrgentMovesStudyAhead(t *testing.T) {
	s, c := openClocked(t)
	for _, st := range []string{"A", "B"} {
		put(t, s, meta(st, st+".1", st+".1.1", 1, 1), []byte(st), "pacs")
		c.t = c.t.Add(time.Second)
	}
	if err := s.MarkUrgent(t.Context(), "B", true); err != nil {
		t.Fatal(err)
	}
	if got := leaseUIDs(t, s, "pacs", 1); fmt.Sprint(got) != "[B.1.1]" {
		t.Fatalf("first lease after marking B urgent: %v", got)
	}
}

func TestFailedRetriesAtTimeParkedWaitsForRetryNow(t *testing.T) {
	s, c := openClocked(t)
	put(t, s, meta("A", "A.1", "a", 1, 1), []byte("a"), "pacs")
	put(t, s, meta("A", "A.1", "b", 1, 2), []byte("b"), "pacs")
	leaseUIDs(t, s, "pacs", 2)
	if _, err := s.Failed("pacs", "a", Failure{Reason: "association rejected", RetryAt: c.t.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	e, err := s.Failed("pacs", "b", Failure{Reason: "rejected: bad data", ParkAfter: 1})
	if err != nil || e.State != Parked {
		t.Fatalf("b after a failure with ParkAfter 1: %+v, %v", e, err)
	}
	if got := leaseUIDs(t, s, "pacs", 10); len(got) != 0 {
		t.Fatalf("leased %v before any retry time", got)
	}
	c.t = c.t.Add(2 * time.Hour)
	if got := leaseUIDs(t, s, "pacs", 10); fmt.Sprint(got) != "[a]" {
		t.Fatalf("after retry time leased %v, want [a] (b is parked)", got)
	}
	if parked, err := s.Parked(t.Context(), "", 0); err != nil || len(parked) != 1 || parked[0].SOPInstanceUID != "b" || parked[0].LastError != "rejected: bad data" {
		t.Fatalf("parked list %+v, %v", parked, err)
	}
	if n, err := s.RetryNow(t.Context(), "pacs"); err != nil || n != 1 {
		t.Fatalf("RetryNow changed %d, %v; want 1 (b; a is in flight)", n, err)
	}
	es, _ := s.Entries("b")
	if es[0].State != Pending || es[0].Attempts != 0 {
		t.Fatalf("b after RetryNow: %+v", es[0])
	}
	if parked, err := s.Parked(t.Context(), "pacs", 0); err != nil || len(parked) != 0 {
		t.Fatalf("still parked after RetryNow: %+v %v", parked, err)
	}
	if got := leaseUIDs(t, s, "pacs", 10); fmt.Sprint(got) != "[b]" {
		t.Fatalf("after RetryNow leased %v, want [b]", got)
	}
}

func TestClockSetBackDoesNotHoldFailedEntriesBack(t *testing.T) {
	s, c := openClocked(t)
	for _, uid := range []string{"a", "b"} {
		put(t, s, meta("A", "A.1", uid, 1, len(uid)), []byte(uid), "pacs")
	}
	leaseUIDs(t, s, "pacs", 2)
	for _, uid := range []string{"a", "b"} {
		if _, err := s.Failed("pacs", uid, Failure{Reason: "refused", RetryAt: c.t.Add(10 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := leaseUIDs(t, s, "pacs", 10); len(got) != 0 { // and the lease notes them not due
		t.Fatalf("leased %v before their retry time", got)
	}
	// The box booted two hours ahead; NTP sets the clock right.
	c.t = c.t.Add(-2 * time.Hour)
	if got := leaseUIDs(t, s, "pacs", 10); fmt.Sprint(got) != "[a b]" {
		t.Fatalf("after the clock was set back 2h leased %v, want [a b] (their 10 min are over)", got)
	}
	if err := s.Delivered("pacs", "b"); err != nil {
		t.Fatal(err)
	}
	// A failure on the corrected clock waits as it should.
	if _, err := s.Failed("pacs", "a", Failure{Reason: "refused", RetryAt: c.t.Add(10 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(time.Minute)
	if got := leaseUIDs(t, s, "pacs", 10); len(got) != 0 {
		t.Fatalf("leased %v a minute into a 10 min wait", got)
	}
	c.t = c.t.Add(10 * time.Minute)
	if got := leaseUIDs(t, s, "pacs", 10); fmt.Sprint(got) != "[a]" {
		t.Fatalf("after its wait leased %v, want [a]", got)
	}
}

func TestFailuresCountAgainstTheInstanceAndParkIt(t *testing.T) {
	s, c := openClocked(t)
	put(t, s, meta("A", "A.1", "bad", 1, 1), []byte("bad"), "pacs")
	put(t, s, meta("A", "A.1", "good", 1, 2), []byte("good"), "pacs")
	first := c.t
	for i := 1; i <= 3; i++ {
		got := leaseUIDs(t, s, "pacs", 10)
		if len(got) == 0 || got[0] != "bad" {
			t.Fatalf("attempt %d leased %v", i, got)
		}
		// The association dies on "bad": "good" was never tried.
		if err := s.Release("pacs", got[1:]...); err != nil {
			t.Fatal(err)
		}
		e, err := s.Failed("pacs", "bad", Failure{Reason: "dropped", RetryAt: c.t, ParkAfter: 3})
		if err != nil || e.Attempts != i || !e.FirstFailure.Equal(first) {
			t.Fatalf("after failure %d: %+v, %v", i, e, err)
		}
		if want := map[bool]State{true: Parked, false: Failed}[i == 3]; e.State != want {
			t.Fatalf("after failure %d: state %v, want %v", i, e.State, want)
		}
		c.t = c.t.Add(time.Minute)
	}
	es, _ := s.Entries("good")
	if es[0].State != Pending || es[0].Attempts != 0 {
		t.Fatalf("the innocent instance carries the blame: %+v", es[0])
	}
	if got := leaseUIDs(t, s, "pacs", 10); fmt.Sprint(got) != "[good]" {
		t.Fatalf("with bad parked leased %v, want [good]", got)
	}
}

func TestAbandonOnlyParkedAndResendStudy(t *testing.T) {
	s, _ := openClocked(t)
	put(t, s, meta("A", "A.1", "a", 1, 1), []byte("a"), "pacs")
	put(t, s, meta("A", "A.1", "b", 1, 2), []byte("b"), "pacs")
	if err := s.Abandon("pacs", "a", "no"); !errors.Is(err, ErrNotParked) {
		t.Fatalf("abandoning a pending instance: %v, want ErrNotParked", err)
	}
	leaseUIDs(t, s, "pacs", 2)
	s.Delivered("pacs", "a")
	s.Failed("pacs", "b", Failure{Reason: "refused", ParkAfter: 1})
	if err := s.Abandon("pacs", "b", "the center cannot take it"); err != nil {
		t.Fatal(err)
	}
	if es, _ := s.Entries("b"); es[0].State != Abandoned {
		t.Fatalf("b: %+v", es[0])
	}
	n, err := s.Resend(t.Context(), "pacs", "A")
	if err != nil || n != 2 {
		t.Fatalf("resend: %d, %v; want 2", n, err)
	}
	if got := leaseUIDs(t, s, "pacs", 10); fmt.Sprint(got) != "[a b]" {
		t.Fatalf("after resend leased %v", got)
	}
	if _, err := s.Resend(t.Context(), "pacs", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("resend of an unknown study: %v", err)
	}
}

func TestDestinationRecordKeepsFailuresAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOptions())
	since := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	if _, err := s.UpdateDestination("pacs", func(d *Destination) { d.Failures, d.FailingSince, d.LastError = 7, since, "refused" }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateDestination("pacs", func(d *Destination) { d.NoCommitment = true }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTest(t, dir, testOptions())
	d, err := s.DestinationRecord("pacs")
	if err != nil || d.Failures != 7 || !d.FailingSince.Equal(since) || !d.NoCommitment {
		t.Fatalf("after reopen: %+v, %v", d, err)
	}
}

func TestDeliveredAndCommittedLeaveTheQueue(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	put(t, s, meta("A", "A.1", "a", 1, 1), []byte("a"), "pacs", "backup")
	leaseUIDs(t, s, "pacs", 1)
	if err := s.Delivered("pacs", "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Committed("pacs", "a"); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if q := st.Queues["pacs"]; q.Depth != 0 || q.States[Committed].Count != 1 {
		t.Fatalf("pacs queue %+v", q)
	}
	if q := st.Queues["backup"]; q.Depth != 1 || q.States[Pending].Bytes != 1 || q.OldestWaiting.IsZero() {
		t.Fatalf("backup queue %+v", q)
	}
	if st.Instances.Count != 1 || st.Studies != 1 || st.Patients != 1 || st.Space.Total == 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestOpenReturnsLeasesToPending(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOptions())
	put(t, s, meta("A", "A.1", "a", 1, 1), []byte("a"), "pacs")
	leaseUIDs(t, s, "pacs", 1)
	s.Close()
	s = openTest(t, dir, testOptions())
	es, err := s.Entries("a")
	if err != nil || es[0].State != Pending {
		t.Fatalf("after reopen: %+v, %v", es, err)
	}
	if got := leaseUIDs(t, s, "pacs", 1); fmt.Sprint(got) != "[a]" {
		t.Fatalf("lease after reopen %v", got)
	}
}

// TestOpenReturnsEveryLeaseToPending: in-flight entries anywhere in a
// queue — behind a failed one, behind an urgent study received after the
// lease — are pending again after a reopen, the others keep their state,
// and so do the tallies.
func TestOpenReturnsEveryLeaseToPending(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOptions())
	for i := range 6 {
		put(t, s, meta("A", "A.1", fmt.Sprintf("a%d", i), 1, i), []byte("a"), "pacs", "backup")
	}
	leased := leaseUIDs(t, s, "pacs", 4) // a0 … a3
	if _, err := s.Failed("pacs", "a0", Failure{Reason: "refused", RetryAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	urgent := meta("U", "U.1", "u0", 1, 0)
	urgent.Urgent = true
	put(t, s, urgent, []byte("u"), "pacs") // now the head of the queue
	s.Close()

	s = openTest(t, dir, testOptions())
	want := map[string]State{"a0": Failed, "a1": Pending, "a2": Pending, "a3": Pending, "a4": Pending, "a5": Pending, "u0": Pending}
	for uid, st := range want {
		es, err := s.Entries(uid)
		if err != nil || es[0].Dest != "pacs" || es[0].State != st {
			t.Errorf("%s after reopen: %+v, %v; want %v at pacs", uid, es, err, st)
		}
	}
	stats, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if q := stats.Queues["pacs"]; q.States[InFlight].Count != 0 || q.States[Pending].Count != 6 || q.States[Failed].Count != 1 {
		t.Errorf("pacs tallies after reopen %+v (leased %v)", q.States, leased)
	}
	if q := stats.Queues["backup"]; q.States[Pending].Count != 6 {
		t.Errorf("backup tallies after reopen %+v", q.States)
	}
}

func TestQueueHeldQueuesOnlyInstancesQueuedNowhere(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	put(t, s, meta("study-h", "se", "held-1", 1, 1), []byte("a"))
	put(t, s, meta("study-h", "se", "held-2", 1, 2), []byte("b"))
	put(t, s, meta("study-q", "se", "queued", 1, 1), []byte("c"), "pacs")
	n, err := s.QueueHeld(t.Context(), "center", func(r Instance) bool { return r.SOPInstanceUID != "held-2" })
	if err != nil || n != 1 {
		t.Fatalf("queued %d, %v; want 1", n, err)
	}
	es, err := s.Lease(context.Background(), "center", 10, time.Minute)
	if err != nil || len(es) != 1 || es[0].SOPInstanceUID != "held-1" {
		t.Fatalf("leased %+v %v", es, err)
	}
	if err := s.Delivered("center", "held-1"); err != nil {
		t.Fatal(err)
	}
	aw, err := s.AwaitingCommitment(t.Context(), "center")
	if err != nil || len(aw) != 1 || aw[0].SOPInstanceUID != "held-1" {
		t.Fatalf("awaiting commitment %+v %v", aw, err)
	}
	s.Delivered("center", "held-1")
	s.Committed("center", "held-1")
	if aw, err := s.AwaitingCommitment(t.Context(), "center"); err != nil || len(aw) != 0 {
		t.Fatalf("still awaiting after commit: %+v %v", aw, err)
	}
}

func TestStudyWaitingCountsWhatIsLeftToDeliver(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	for i := 1; i <= 3; i++ {
		put(t, s, meta("study-w", "se", fmt.Sprint("w-", i), 1, i), []byte{byte(i)}, "center")
	}
	es, err := s.Lease(context.Background(), "center", 10, time.Minute)
	if err != nil || len(es) != 3 {
		t.Fatalf("%v %v", es, err)
	}
	count := func() int {
		n, err := s.StudyWaiting(t.Context(), "center", "study-w", es[0].StudyFirstReceived)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 3 {
		t.Fatalf("waiting %d, want 3", n)
	}
	s.Delivered("center", es[0].SOPInstanceUID)
	s.Failed("center", es[1].SOPInstanceUID, Failure{Reason: "refused", RetryAt: time.Now()})
	if n := count(); n != 2 {
		t.Fatalf("waiting %d, want 2 (one in flight, one failed)", n)
	}
	s.Delivered("center", es[1].SOPInstanceUID)
	s.Delivered("center", es[2].SOPInstanceUID)
	if n := count(); n != 0 {
		t.Fatalf("waiting %d, want 0", n)
	}
	if st, err := s.StudyRecord("study-w"); err != nil || st.Instances != 3 {
		t.Fatalf("%+v %v", st, err)
	}
}

// TestLeasePassesOverEntriesNotDueUnread: once a lease has found entries
// waiting for their retry, the next leases find the pending entries behind
// them without reading those (their entries are garbage here: reading one
// would fail the lease), and take one once its time comes.
func TestLeasePassesOverEntriesNotDueUnread(t *testing.T) {
	s, c := openClocked(t)
	for i := range 50 {
		put(t, s, meta("A", "A.1", fmt.Sprint("u", i), 1, i), []byte("x"), "pacs")
	}
	leaseUIDs(t, s, "pacs", 50)
	var pending []string
	for i := range 50 {
		uid := fmt.Sprint("u", i)
		if i%5 == 4 {
			pending = append(pending, uid)
			if err := s.Release("pacs", uid); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if _, err := s.Failed("pacs", uid, Failure{Reason: "A700 at the PACS", RetryAt: c.t.Add(time.Duration(1+i%3) * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RetryNow(t.Context(), "pacs", "u0"); err != nil {
		t.Fatal(err)
	}
	pending = append([]string{"u0"}, pending...)
	if got := leaseUIDs(t, s, "pacs", 50); fmt.Sprint(got) != fmt.Sprint(pending) {
		t.Fatalf("leased %v, want the pending ones %v", got, pending)
	}
	if err := s.Release("pacs", pending...); err != nil {
		t.Fatal(err)
	}
	err := s.change(func(txn *badger.Txn) error {
		for i := 1; i < 50; i++ {
			if i%5 != 4 && i%3 != 0 { // not due for 2 or 3 hours
				if err := txn.Set(queueKey("pacs", fmt.Sprint("u", i)), []byte("not an entry")); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := leaseUIDs(t, s, "pacs", 50); fmt.Sprint(got) != fmt.Sprint(pending) {
		t.Fatalf("leased %v, want the pending ones %v", got, pending)
	}
	// An hour later: those due, and the pending ones again (their leases
	// of a minute ran out), in queue order.
	c.t = c.t.Add(time.Hour)
	var due []string
	for i := range 50 {
		if i == 0 || i%5 == 4 || i%3 == 0 {
			due = append(due, fmt.Sprint("u", i))
		}
	}
	if got := leaseUIDs(t, s, "pacs", 50); fmt.Sprint(got) != fmt.Sprint(due) {
		t.Fatalf("an hour later leased %v, want %v", got, due)
	}
}

// TestLeaseLeasesAsIfItReadEveryEntry: through random failures with retries
// in the future, releases, retries now, deliveries, new instances and time
// passing, each lease takes exactly the entries a lease reading every
// waiting entry would: what Lease remembers of entries not due is never
// stale.
func TestLeaseLeasesAsIfItReadEveryEntry(t *testing.T) {
	s, c := openClocked(t)
	rng := rand.New(rand.NewPCG(5, 5))
	n := 0
	add := func() {
		put(t, s, meta("A", "A.1", fmt.Sprint("u", n), 1, n), []byte("x"), "pacs")
		n++
	}
	for range 40 {
		add()
	}
	var inFlight, failed []string
	take := func(list *[]string) (string, bool) {
		if len(*list) == 0 {
			return "", false
		}
		i := rng.IntN(len(*list))
		uid := (*list)[i]
		*list = slices.Delete(*list, i, i+1)
		return uid, true
	}
	for step := range 600 {
		var err error
		switch rng.IntN(8) {
		case 0, 1:
			max := 1 + rng.IntN(5)
			var want []string
			now := c.t
			err = s.view(func(txn *badger.Txn) error {
				return scanWaiting(t.Context(), txn, waitingPrefix("pacs"), func(e *Entry) (bool, error) {
					if e.leasable(now) {
						want = append(want, e.SOPInstanceUID)
					}
					return len(want) < max, nil
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			got := leaseUIDs(t, s, "pacs", max)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("step %d: leased %v, want %v (read from every entry)", step, got, want)
			}
			for _, uid := range got {
				failed = slices.DeleteFunc(failed, func(f string) bool { return f == uid })
				if !slices.Contains(inFlight, uid) {
					inFlight = append(inFlight, uid)
				}
			}
		case 2:
			if uid, ok := take(&inFlight); ok {
				_, err = s.Failed("pacs", uid, Failure{Reason: "refused", RetryAt: c.t.Add(time.Duration(rng.IntN(30)) * time.Minute)})
				failed = append(failed, uid)
			}
		case 3:
			if uid, ok := take(&inFlight); ok {
				if rng.IntN(2) == 0 {
					err = s.Release("pacs", uid)
				} else {
					err = s.Delivered("pacs", uid)
				}
			}
		case 4:
			if uid, ok := take(&failed); ok {
				_, err = s.RetryNow(t.Context(), "pacs", uid)
			}
		case 5:
			c.t = c.t.Add(time.Duration(rng.IntN(10)) * time.Minute)
		case 6:
			add()
		case 7: // the clock set back (NTP correcting a clock that was ahead)
			c.t = c.t.Add(-time.Duration(1+rng.IntN(20)) * time.Minute)
		}
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
	}
}
