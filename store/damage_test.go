package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// readCopy reads uid's accepted copy.
func readCopy(s *Store, uid string) ([]byte, error) {
	r, err := s.Open(context.Background(), uid)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// TestDamagedCopyIsCountedAndMendedBySendingItAgain: a copy found damaged
// (a file changed, a file gone, inline bytes gone) is counted and listed
// with who sent it, across a restart; the same bytes sent again replace it
// (Repaired): readable, queued again where it was parked, left as it was
// where it had arrived; the mark and its count go, and the next send is a
// plain duplicate. An intact copy sent again stays a duplicate.
func TestDamagedCopyIsCountedAndMendedBySendingItAgain(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOptions())
	rng := rand.New(rand.NewPCG(13, 1))
	data := map[string][]byte{}
	recs := map[string]Instance{}
	for i, uid := range []string{"changed", "gone", "inline", "intact"} {
		n := 100 << 10
		if uid == "inline" {
			n = 10 << 10
		}
		data[uid] = randomBytes(rng, n)
		recs[uid] = put(t, s, meta("1", "1.1", uid, 1, i), data[uid], "pacs").Instance
	}
	if _, err := s.Lease(context.Background(), "pacs", 10, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Delivered("pacs", "gone"); err != nil { // delivered, then lost here
		t.Fatal(err)
	}
	if err := s.Release("pacs", "changed", "inline", "intact"); err != nil {
		t.Fatal(err)
	}
	p := s.filePath(recs["changed"].ID)
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 1
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(s.filePath(recs["gone"].ID)); err != nil {
		t.Fatal(err)
	}
	if err := s.change(func(txn *badger.Txn) error { return txn.Delete(inlineKey(recs["inline"].ID)) }); err != nil {
		t.Fatal(err)
	}
	for _, uid := range []string{"changed", "gone", "inline"} {
		if _, err := readCopy(s, uid); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("read %s: %v, want ErrCorrupt", uid, err)
		}
		if uid != "gone" { // as the forwarder does
			if _, err := s.Failed("pacs", uid, Failure{Reason: "damaged", ParkAfter: 1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.Close()
	s = openTest(t, dir, testOptions())
	ds, n, err := s.DamagedCopies(context.Background(), 10)
	if err != nil || n != 3 || len(ds) != 3 {
		t.Fatalf("damaged copies %+v (%d), %v; want 3", ds, n, err)
	}
	for _, d := range ds {
		if d.CallingAE != "CT1" || d.StudyInstanceUID != "1" || d.Missing != (d.SOPInstanceUID != "changed") {
			t.Errorf("damage %+v", d)
		}
	}
	if st, _ := s.Stats(); st.Damaged.Count != 3 || st.Damaged.Bytes != 210<<10 {
		t.Fatalf("stats count %+v damaged", st.Damaged)
	}
	checkCounts(t, s)

	for _, uid := range []string{"changed", "gone", "inline", "intact"} {
		res := put(t, s, meta("1", "1.1", uid, 1, 0), data[uid], "pacs")
		want := Repaired
		if uid == "intact" {
			want = Duplicate
		}
		if res.Outcome != want || res.Instance.SHA256 != recs[uid].SHA256 {
			t.Fatalf("%s sent again: %v %+v, want %v", uid, res.Outcome, res.Instance, want)
		}
		if got, err := readCopy(s, uid); err != nil || !bytes.Equal(got, data[uid]) {
			t.Fatalf("read %s after its repair: %d bytes, %v", uid, len(got), err)
		}
		es, _ := s.Entries(uid)
		wantState := Pending
		if uid == "gone" {
			wantState = Delivered
		}
		if len(es) != 1 || es[0].State != wantState || es[0].Attempts != 0 {
			t.Fatalf("entry of %s after its repair: %+v, want %v", uid, es, wantState)
		}
		if res := put(t, s, meta("1", "1.1", uid, 1, 0), data[uid], "pacs"); res.Outcome != Duplicate {
			t.Fatalf("%s sent a third time: %v, want a duplicate", uid, res.Outcome)
		}
	}
	if ds, n, _ := s.DamagedCopies(context.Background(), 10); n != 0 || len(ds) != 0 {
		t.Fatalf("damaged copies after the repairs: %+v (%d)", ds, n)
	}
	if st, _ := s.Stats(); st.Damaged != (Tally{}) || st.Instances.Count != 4 {
		t.Fatalf("stats after the repairs: %+v", st)
	}
	checkCounts(t, s)
	if _, err := s.Purge(context.Background(), Policy{MaxAge: time.Hour}); err != nil { // removes the doomed files
		t.Fatal(err)
	}
	checkConsistent(t, s)
}

// TestCopyDamagedButNeverReadIsMendedBySendingItAgain: bytes changed or
// gone on disk after the commit, before any read, are found when the same
// bytes come again: those are the repair, not a duplicate dropped, and the
// damage is said once in the event log.
func TestCopyDamagedButNeverReadIsMendedBySendingItAgain(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	rng := rand.New(rand.NewPCG(14, 1))
	data := map[string][]byte{}
	recs := map[string]Instance{}
	for i, uid := range []string{"changed", "gone"} {
		data[uid] = randomBytes(rng, 100<<10)
		recs[uid] = put(t, s, meta("1", "1.1", uid, 1, i), data[uid], "pacs").Instance
	}
	p := s.filePath(recs["changed"].ID)
	b, _ := os.ReadFile(p)
	b[len(b)/3] ^= 0x40
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(s.filePath(recs["gone"].ID)); err != nil {
		t.Fatal(err)
	}
	for _, uid := range []string{"changed", "gone"} {
		res := put(t, s, meta("1", "1.1", uid, 1, 0), data[uid], "pacs")
		if res.Outcome != Repaired {
			t.Fatalf("%s, damaged and never read, sent again: %v, want Repaired", uid, res.Outcome)
		}
		if got, err := readCopy(s, uid); err != nil || !bytes.Equal(got, data[uid]) {
			t.Fatalf("read %s after its repair: %d bytes, %v", uid, len(got), err)
		}
	}
	if ds, n, _ := s.DamagedCopies(context.Background(), 10); n != 0 || len(ds) != 0 {
		t.Fatalf("damaged copies after the repairs: %+v (%d)", ds, n)
	}
	evs, err := s.Events(context.Background(), EventQuery{Kinds: []Kind{KindStore}})
	if err != nil {
		t.Fatal(err)
	}
	said := map[string]int{}
	for _, e := range evs {
		if e.Severity == Error {
			said[e.Attrs["sop_instance_uid"]]++
		}
	}
	if said["changed"] != 1 || said["gone"] != 1 {
		t.Fatalf("damage events by instance %v, want one each", said)
	}
	checkCounts(t, s)
}

// TestPurgedDamagedCopyTakesItsMarkAlong: a damaged copy that a person
// abandoned is purged with its study, and is no longer counted damaged.
func TestPurgedDamagedCopyTakesItsMarkAlong(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	rec := put(t, s, meta("1", "1.1", "x", 1, 1), randomBytes(rand.New(rand.NewPCG(1, 2)), 100<<10), "pacs").Instance
	if err := os.Remove(s.filePath(rec.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := readCopy(s, "x"); !errors.Is(err, ErrMissing) {
		t.Fatalf("read: %v", err)
	}
	if _, err := s.Failed("pacs", "x", Failure{Reason: "damaged", ParkAfter: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Abandon("pacs", "x", "lost"); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Purge(context.Background(), Policy{MaxAge: time.Nanosecond}); err != nil || res.Instances != 1 {
		t.Fatalf("purge %+v, %v", res, err)
	}
	if st, _ := s.Stats(); st.Damaged != (Tally{}) {
		t.Fatalf("a purged copy still counted damaged: %+v", st.Damaged)
	}
	checkCounts(t, s)
}
