package store

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
)

func TestSameUIDSameBytesIsStoredOnce(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	data := randomBytes(rand.New(rand.NewPCG(1, 1)), 200<<10)
	m := meta("1", "1.1", "1.1.1", 1, 1)
	first := put(t, s, m, data, "pacs")
	again := put(t, s, m, data, "pacs", "other")
	if first.Outcome != Stored || again.Outcome != Duplicate {
		t.Fatalf("outcomes %v then %v, want stored then duplicate", first.Outcome, again.Outcome)
	}
	if again.Instance.ID != first.Instance.ID {
		t.Fatalf("duplicate reports copy %d, want the held copy %d", again.Instance.ID, first.Instance.ID)
	}
	st, recs, err := s.Study(t.Context(), "1")
	if err != nil || st.Instances != 1 || len(recs) != 1 || st.Bytes != int64(len(data)) {
		t.Fatalf("study after duplicate: %+v, %d records, %v", st, len(recs), err)
	}
	if n := countKeys(t, s, tagQueue); n != 1 {
		t.Fatalf("%d queue entries after a duplicate, want 1", n)
	}
	if ids := files(t, s); len(ids) != 1 || ids[0] != first.Instance.ID {
		t.Fatalf("files %v after a duplicate, want only the held copy's %d", ids, first.Instance.ID)
	}
	if !bytes.Equal(readUID(t, s, "1.1.1"), data) {
		t.Fatal("bytes changed by a duplicate")
	}
}

func TestSameUIDOtherBytesIsKeptAsConflict(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	rng := rand.New(rand.NewPCG(2, 2))
	orig, other := randomBytes(rng, 100<<10), randomBytes(rng, 90<<10)
	m := meta("1", "1.1", "1.1.1", 1, 1)
	put(t, s, m, orig, "pacs")
	res := put(t, s, m, other, "pacs")
	if res.Outcome != Conflict || !res.Instance.Conflict || len(res.Instance.Destinations) != 0 {
		t.Fatalf("second copy: %+v, want a flagged conflict queued nowhere", res)
	}
	if !bytes.Equal(readUID(t, s, "1.1.1"), orig) {
		t.Fatal("the accepted copy was replaced")
	}
	cs, err := s.Conflicts(t.Context(), "1.1.1")
	if err != nil || len(cs) != 1 {
		t.Fatalf("conflicts: %v, %v", cs, err)
	}
	r := s.OpenInstance(context.Background(), cs[0])
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, other) {
		t.Fatalf("conflict copy reads back wrong: %v", err)
	}
	st, recs, _ := s.Study(t.Context(), "1")
	if st.Conflicts != 1 || st.Instances != 1 || len(recs) != 2 {
		t.Fatalf("study %+v lists %d copies", st, len(recs))
	}
	if n := countKeys(t, s, tagQueue); n != 1 {
		t.Fatalf("%d queue entries, want only the accepted copy's", n)
	}
	// The conflicting bytes once more: a duplicate of the conflict.
	if res := put(t, s, m, other, "pacs"); res.Outcome != Duplicate || res.Instance.ID != cs[0].ID {
		t.Fatalf("conflict bytes again: %+v", res)
	}
	checkConsistent(t, s)
}

func TestConcurrentSameUIDStoresOnce(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	data := randomBytes(rand.New(rand.NewPCG(3, 3)), 150<<10)
	m := meta("1", "1.1", "1.1.1", 1, 1)
	var wg sync.WaitGroup
	outcomes := make(chan Outcome, 8)
	for range 8 {
		wg.Go(func() { outcomes <- put(t, s, m, data, "pacs").Outcome })
	}
	wg.Wait()
	close(outcomes)
	count := map[Outcome]int{}
	for o := range outcomes {
		count[o]++
	}
	if count[Stored] != 1 || count[Duplicate] != 7 {
		t.Fatalf("outcomes %v, want 1 stored and 7 duplicates", count)
	}
	checkConsistent(t, s)
}
