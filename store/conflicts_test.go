package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// deliver leases what waits for dest and records it delivered; uid must be among it.
func deliver(t testing.TB, s *Store, dest, uid string) {
	t.Helper()
	es, err := s.Lease(context.Background(), dest, 100, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	seen := false
	for _, e := range es {
		seen = seen || e.SOPInstanceUID == uid
		if err := s.Delivered(dest, e.SOPInstanceUID); err != nil {
			t.Fatal(err)
		}
	}
	if !seen {
		t.Fatalf("%s not leasable at %s", uid, dest)
	}
}

func TestConflictCorrectReplacesHeldAndQueuesItAgain(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	rng := rand.New(rand.NewPCG(11, 11))
	orig, fixed := randomBytes(rng, 150<<10), randomBytes(rng, 70<<10)
	m := meta("1", "1.1", "1.1.1", 1, 1)
	held := put(t, s, m, orig, "pacs", "other").Instance
	put(t, s, meta("1", "1.1", "1.1.2", 1, 2), orig[:1000], "pacs")
	deliver(t, s, "pacs", "1.1.1")
	m.CallingAE = "CT2"
	flagged := put(t, s, m, fixed, "pacs").Instance

	list, err := s.ListConflicts(t.Context(), 10)
	if err != nil || len(list) != 1 || list[0].Held == nil || list[0].Held.ID != held.ID ||
		len(list[0].Copies) != 1 || list[0].Copies[0].ID != flagged.ID || list[0].Copies[0].CallingAE != "CT2" ||
		list[0].Copies[0].Size != int64(len(fixed)) || list[0].Copies[0].ReceivedAt.IsZero() {
		t.Fatalf("conflict list %+v, %v", list, err)
	}

	res, err := s.ResolveConflict("1.1.1", flagged.ID, Correct)
	if err != nil {
		t.Fatal(err)
	}
	if res.Held == nil || res.Held.ID != held.ID || res.Copy.ID != flagged.ID || res.Copy.Conflict {
		t.Fatalf("resolution %+v", res)
	}
	if !bytes.Equal(readUID(t, s, "1.1.1"), fixed) {
		t.Fatal("the corrected copy is not the instance")
	}
	es, err := s.Entries("1.1.1")
	if err != nil || len(es) != 2 {
		t.Fatalf("entries %+v, %v", es, err)
	}
	for _, e := range es {
		if e.State != Pending || e.Size != int64(len(fixed)) || e.Attempts != 0 {
			t.Fatalf("entry for %s: %+v, want a new pending one", e.Dest, e)
		}
	}
	st, _, err := s.Study(t.Context(), "1")
	if err != nil || st.Instances != 2 || st.Conflicts != 0 || st.Bytes != int64(len(fixed)+1000) {
		t.Fatalf("study after correction: %+v, %v", st, err)
	}
	if list, err := s.ListConflicts(t.Context(), 10); err != nil || len(list) != 0 {
		t.Fatalf("still listed: %+v %v", list, err)
	}
	if _, err := s.ResolveConflict("1.1.1", flagged.ID, Correct); !errors.Is(err, ErrNotFound) {
		t.Fatalf("resolving twice: %v", err)
	}
	checkConsistent(t, s)
}

func TestConflictDiscardKeepsHeldAndUnblocksRetention(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	rng := rand.New(rand.NewPCG(12, 12))
	orig := randomBytes(rng, 100<<10)
	m := meta("1", "1.1", "1.1.1", 1, 1)
	held := put(t, s, m, orig, "pacs").Instance
	a := put(t, s, m, randomBytes(rng, 80<<10), "pacs").Instance
	b := put(t, s, m, randomBytes(rng, 90<<10), "pacs").Instance
	deliver(t, s, "pacs", "1.1.1")
	if err := s.Committed("pacs", "1.1.1"); err != nil {
		t.Fatal(err)
	}
	old := Policy{MaxAge: time.Nanosecond}
	if r, err := s.Purge(context.Background(), old); err != nil || r.Studies != 0 || r.Kept != 1 {
		t.Fatalf("purge with conflicts pending: %+v, %v", r, err)
	}

	if _, err := s.ResolveConflict("1.1.1", a.ID, Discard); err != nil {
		t.Fatal(err)
	}
	c, err := s.ConflictedInstance(t.Context(), "1.1.1")
	if err != nil || c.Held.ID != held.ID || len(c.Copies) != 1 || c.Copies[0].ID != b.ID {
		t.Fatalf("after one discard: %+v, %v", c, err)
	}
	if st, _ := s.StudyRecord("1"); st.Conflicts != 1 || st.Instances != 1 {
		t.Fatalf("study after one discard: %+v", st)
	}
	if es, _ := s.Entries("1.1.1"); len(es) != 1 || es[0].State != Committed {
		t.Fatalf("held copy's entry changed: %+v", es)
	}
	if _, err := s.ResolveConflict("1.1.1", b.ID, Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConflictedInstance(t.Context(), "1.1.1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after both discards: %v", err)
	}
	if ids := files(t, s); len(ids) != 1 || ids[0] != held.ID {
		t.Fatalf("files %v after discards, want the held copy's %d", ids, held.ID)
	}
	if !bytes.Equal(readUID(t, s, "1.1.1"), orig) {
		t.Fatal("held copy changed by a discard")
	}
	checkConsistent(t, s)
	if r, err := s.Purge(context.Background(), old); err != nil || r.Studies != 1 {
		t.Fatalf("purge once reviewed: %+v, %v", r, err)
	}
}

func TestConflictResolveRefusesWhatItCannotDo(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	rng := rand.New(rand.NewPCG(13, 13))
	m := meta("1", "1.1", "1.1.1", 1, 1)
	orig := randomBytes(rng, 10<<10)
	put(t, s, m, orig, "pacs")
	c := put(t, s, m, randomBytes(rng, 10<<10), "pacs").Instance
	if _, err := s.ResolveConflict("1.1.1", c.ID, "keep both"); err == nil {
		t.Fatal("unknown action accepted")
	}
	if _, err := s.ResolveConflict("1.1.1", c.ID+100, Discard); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown copy: %v", err)
	}
	if _, err := s.Lease(context.Background(), "pacs", 10, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResolveConflict("1.1.1", c.ID, Correct); !errors.Is(err, ErrInFlight) {
		t.Fatalf("correct while the held copy is sent: %v", err)
	}
	if !bytes.Equal(readUID(t, s, "1.1.1"), orig) {
		t.Fatal("a refused correction changed the instance")
	}
	if st, _ := s.StudyRecord("1"); st.Conflicts != 1 {
		t.Fatalf("a refused correction changed the study: %+v", st)
	}
}

// A flagged copy may name another study than the accepted copy; that study
// can be purged on its own, and the copy is then listed with no held copy.
func TestConflictInOtherStudyOutlivesHeldCopy(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	rng := rand.New(rand.NewPCG(14, 14))
	put(t, s, meta("1", "1.1", "1.1.1", 1, 1), randomBytes(rng, 10<<10), "pacs")
	moved := put(t, s, meta("2", "2.1", "1.1.1", 1, 1), randomBytes(rng, 12<<10), "pacs").Instance
	deliver(t, s, "pacs", "1.1.1")
	s.Committed("pacs", "1.1.1")
	if r, err := s.Purge(context.Background(), Policy{MaxAge: time.Nanosecond}); err != nil || r.Studies != 1 || r.Kept != 1 {
		t.Fatalf("purge: %+v, %v", r, err)
	}
	list, err := s.ListConflicts(t.Context(), 10)
	if err != nil || len(list) != 1 || list[0].Held != nil {
		t.Fatalf("list %+v, %v", list, err)
	}
	res, err := s.ResolveConflict("1.1.1", moved.ID, Correct)
	if err != nil || res.Held != nil || len(res.Copy.Destinations) != 0 {
		t.Fatalf("correct with no held copy: %+v, %v", res, err)
	}
	if st, _ := s.StudyRecord("2"); st.Instances != 1 || st.Conflicts != 0 {
		t.Fatalf("study 2: %+v", st)
	}
	checkConsistent(t, s)
}

func TestListConflictsIsBounded(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	rng := rand.New(rand.NewPCG(15, 15))
	for i := range 3 {
		m := meta("1", "1.1", fmt.Sprintf("1.1.%d", i), 1, i)
		put(t, s, m, randomBytes(rng, 1000), "pacs")
		put(t, s, m, randomBytes(rng, 1000), "pacs")
		put(t, s, m, randomBytes(rng, 1000), "pacs")
	}
	list, err := s.ListConflicts(t.Context(), 2)
	if err != nil || len(list) != 2 || len(list[0].Copies) != 2 || list[0].Copies[0].SOPInstanceUID != "1.1.0" || list[1].Copies[0].SOPInstanceUID != "1.1.1" {
		t.Fatalf("list of 2: %+v, %v", list, err)
	}
}

func TestCorrectingParkedCopyLeavesItOffTheParkedList(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	put(t, s, meta("A", "A.1", "a", 1, 1), []byte("first"), "pacs")
	leaseUIDs(t, s, "pacs", 1)
	if _, err := s.Failed("pacs", "a", Failure{Reason: "refused", ParkAfter: 1}); err != nil {
		t.Fatal(err)
	}
	c := put(t, s, meta("A", "A.1", "a", 1, 1), []byte("second"), "pacs")
	if _, err := s.ResolveConflict("a", c.Instance.ID, Correct); err != nil {
		t.Fatal(err)
	}
	if ps, err := s.Parked(t.Context(), "pacs", 0); err != nil || len(ps) != 0 {
		t.Fatalf("parked after the correction is queued: %+v, %v", ps, err)
	}
	checkCounts(t, s)
}
