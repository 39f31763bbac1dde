package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// fakeDisk makes the store see a disk of total bytes with used bytes in use.
func fakeDisk(s *Store, total, used uint64) {
	s.statfs = func(string) (Disk, error) { return Disk{Total: total, Free: total - used}, nil }
}

// storeStudies stores n one-instance studies S0..S(n-1), an hour apart, of
// size bytes each, queued to dests.
func storeStudies(t *testing.T, s *Store, c *clock, n, size int, dests ...string) {
	t.Helper()
	for i := range n {
		st := fmt.Sprintf("S%d", i)
		put(t, s, meta(st, st+".1", st+".1.1", 1, 1), make([]byte, size), dests...)
		c.t = c.t.Add(time.Hour)
	}
}

func studyUIDs(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	for st, err := range s.studiesOldestFirst(t.Context(), 3) { // pages of 3 rows

		if err != nil {
			t.Fatal(err)
		}
		out = append(out, st.uid)
	}
	return out
}

func TestPurgeNeverRemovesUndelivered(t *testing.T) {
	s, c := openClocked(t)
	storeStudies(t, s, c, 4, 1000, "pacs")
	// Delivered to a destination that commits is not enough either.
	leaseUIDs(t, s, "pacs", 1)
	if err := s.Delivered("pacs", "S0.1.1"); err != nil {
		t.Fatal(err)
	}
	fakeDisk(s, 1000, 999)
	res, err := s.Purge(context.Background(), Policy{MaxAge: time.Nanosecond, HighWatermark: 0.01, LowWatermark: 0})
	if err != nil {
		t.Fatal(err)
	}
	if res.Studies != 0 || res.Kept != 4 {
		t.Fatalf("purge of undelivered studies: %+v", res)
	}
	if got := studyUIDs(t, s); len(got) != 4 {
		t.Fatalf("studies left %v", got)
	}
	for i := range 4 {
		readUID(t, s, fmt.Sprintf("S%d.1.1", i))
	}
}

func TestPurgeByWatermarkTakesOldestDoneStudiesFirst(t *testing.T) {
	s, c := openClocked(t)
	storeStudies(t, s, c, 5, 1000, "pacs")
	// S1 is not committed: it must survive although it is old.
	for _, uid := range []string{"S0.1.1", "S2.1.1", "S3.1.1", "S4.1.1"} {
		s.Delivered("pacs", uid)
		if err := s.Committed("pacs", uid); err != nil {
			t.Fatal(err)
		}
	}
	// A 1 TB disk (large enough for the watermarks to apply as set), 90 %
	// used, the low watermark 1500 bytes lower: two studies' worth must go.
	const tb = 1e12
	fakeDisk(s, tb, 0.9*tb)
	res, err := s.Purge(context.Background(), Policy{HighWatermark: 0.9, LowWatermark: 0.9 - 1500/tb})
	if err != nil {
		t.Fatal(err)
	}
	if res.Studies != 2 || res.Bytes != 2000 {
		t.Fatalf("purge result %+v, want two studies", res)
	}
	if got := fmt.Sprint(studyUIDs(t, s)); got != "[S1 S3 S4]" {
		t.Fatalf("studies left %s, want [S1 S3 S4]", got)
	}
	if _, err := s.Instance("S0.1.1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("purged instance: %v", err)
	}
	// Below the high watermark nothing goes.
	fakeDisk(s, tb, 0.8*tb)
	if res, err := s.Purge(context.Background(), Policy{HighWatermark: 0.9, LowWatermark: 0.5}); err != nil || res.Studies != 0 {
		t.Fatalf("purged %+v below the high watermark (%v)", res, err)
	}
	checkConsistent(t, s)
}

func TestPurgeByAge(t *testing.T) {
	s, c := openClocked(t)
	storeStudies(t, s, c, 4, 10, "pacs")
	for i := range 4 {
		s.Delivered("pacs", fmt.Sprintf("S%d.1.1", i))
		if err := s.Committed("pacs", fmt.Sprintf("S%d.1.1", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Now is 4 h after S0; keep 2.5 h: S0 and S1 go.
	res, err := s.Purge(context.Background(), Policy{MaxAge: 150 * time.Minute})
	if err != nil || res.Studies != 2 {
		t.Fatalf("purge by age: %+v, %v", res, err)
	}
	if got := fmt.Sprint(studyUIDs(t, s)); got != "[S2 S3]" {
		t.Fatalf("studies left %s", got)
	}
}

func TestDeliveredIsDoneOnlyWhereNoCommitment(t *testing.T) {
	s, c := openClocked(t)
	if _, err := s.UpdateDestination("archive", func(d *Destination) { d.NoCommitment = true }); err != nil {
		t.Fatal(err)
	}
	storeStudies(t, s, c, 2, 10, "pacs", "archive")
	for _, uid := range []string{"S0.1.1", "S1.1.1"} {
		s.Delivered("archive", uid)
		s.Delivered("pacs", uid)
	}
	s.Committed("pacs", "S0.1.1")
	res, err := s.Purge(context.Background(), Policy{MaxAge: time.Nanosecond})
	if err != nil || res.Studies != 1 || res.Kept != 1 {
		t.Fatalf("purge: %+v, %v", res, err)
	}
	if got := fmt.Sprint(studyUIDs(t, s)); got != "[S1]" {
		t.Fatalf("studies left %s, want [S1] (delivered to pacs but not committed)", got)
	}
}

func TestPurgeKeepsStudyWithConflict(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	m := meta("S", "S.1", "S.1.1", 1, 1)
	put(t, s, m, []byte("one"), "pacs")
	put(t, s, m, []byte("two"), "pacs")
	s.Delivered("pacs", "S.1.1")
	s.Committed("pacs", "S.1.1")
	if res, err := s.Purge(context.Background(), Policy{MaxAge: time.Nanosecond}); err != nil || res.Studies != 0 {
		t.Fatalf("purged a study holding a conflict: %+v (%v)", res, err)
	}
}

func TestPurgeNeverRemovesInstancesQueuedNowhere(t *testing.T) {
	s, c := openClocked(t)
	// Held (no destination yet) and routed nowhere look the same to the
	// store: no queue entry. Neither may go, by age or by disk use.
	storeStudies(t, s, c, 3, 10)
	c.t = c.t.Add(1000 * time.Hour)
	res, err := s.Purge(context.Background(), Policy{MaxAge: time.Nanosecond, HighWatermark: 0.0001, LowWatermark: 0.00001})
	if err != nil || res.Studies != 0 || res.Instances != 0 {
		t.Fatalf("purge removed held studies: %+v, %v", res, err)
	}
	if got := fmt.Sprint(studyUIDs(t, s)); got != "[S0 S1 S2]" {
		t.Fatalf("studies left %s", got)
	}
}

func TestPurgeKeepsParkedAndTakesAbandoned(t *testing.T) {
	s, c := openClocked(t)
	storeStudies(t, s, c, 1, 10, "pacs")
	leaseUIDs(t, s, "pacs", 1)
	s.Failed("pacs", "S0.1.1", Failure{Reason: "dropped", ParkAfter: 1})
	if res, err := s.Purge(context.Background(), Policy{MaxAge: time.Nanosecond}); err != nil || res.Studies != 0 {
		t.Fatalf("purged a parked study: %+v (%v)", res, err)
	}
	if err := s.Abandon("pacs", "S0.1.1", "test"); err != nil {
		t.Fatal(err)
	}
	if res, _ := s.Purge(context.Background(), Policy{MaxAge: time.Nanosecond}); res.Studies != 1 {
		t.Fatalf("abandoned study not purged: %+v", res)
	}
}

func TestPurgeReadsOnlyCandidatesInAgeOrder(t *testing.T) {
	s, c := openClocked(t)
	storeStudies(t, s, c, 10, 10, "pacs") // S0 at 0h … S9 at 9h; now 10h
	for _, uid := range leaseUIDs(t, s, "pacs", 100) {
		if err := s.Delivered("pacs", uid); err != nil {
			t.Fatal(err)
		}
		if err := s.Committed("pacs", uid); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprint(studyUIDs(t, s)); got != "[S0 S1 S2 S3 S4 S5 S6 S7 S8 S9]" {
		t.Fatalf("age order across pages: %s", got)
	}
	// S0–S3 are older than 6.5 h. The walk must stop at S4 without reading
	// any later study: their records are unreadable now.
	for i := 4; i < 10; i++ {
		corrupt(t, s, studyKey(fmt.Sprintf("S%d", i)))
	}
	res, err := s.Purge(context.Background(), Policy{MaxAge: 6*time.Hour + 30*time.Minute})
	if err != nil || res.Studies != 4 || res.Kept != 0 {
		t.Fatalf("purge: %+v, %v", res, err)
	}
	if got := fmt.Sprint(studyUIDs(t, s)); got != "[S4 S5 S6 S7 S8 S9]" {
		t.Fatalf("left after purge: %s", got)
	}
}
