package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		runCrashChild(dir) // never returns
	}
	os.Exit(m.Run())
}

// testOptions are small, so tests exercise several memtables and value log
// files with little data. Instances up to 64 KiB are inline, larger ones in
// files.
func testOptions() Options {
	o := DefaultOptions()
	o.InlineMax = 64 << 10
	o.Reserve = 1 << 20
	o.MemTableSize = 4 << 20
	o.ValueLogFileSize = 8 << 20
	o.BlockCacheSize = 4 << 20
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	return o
}

func openTest(t testing.TB, dir string, o Options) *Store {
	t.Helper()
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func meta(study, series, uid string, seriesNum, instNum int) Instance {
	return Instance{
		SOPInstanceUID:    uid,
		SOPClassUID:       "1.2.840.10008.5.1.4.1.1.2",
		TransferSyntaxUID: "1.2.840.10008.1.2.1",
		StudyInstanceUID:  study,
		SeriesInstanceUID: series,
		PatientID:         "P-" + study,
		PatientName:       "DOE^JOHN",
		Modality:          "CT",
		SeriesNumber:      seriesNum,
		InstanceNumber:    instNum,
		CallingAE:         "CT1",
		RemoteAddr:        "127.0.0.1:4242",
	}
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// writeFragments writes data in random fragment sizes, like a network peer.
func writeFragments(w io.Writer, data []byte, rng *rand.Rand) error {
	for len(data) > 0 {
		n := min(len(data), 1+rng.IntN(40000))
		if _, err := w.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

func put(t testing.TB, s *Store, m Instance, data []byte, dests ...string) Result {
	t.Helper()
	res, err := tryPut(s, m, data, dests...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func tryPut(s *Store, m Instance, data []byte, dests ...string) (Result, error) {
	w, err := s.NewWriter()
	if err != nil {
		return Result{}, err
	}
	defer w.Abort()
	if err := writeFragments(w, data, rand.New(rand.NewPCG(uint64(len(data)), 7))); err != nil {
		return Result{}, err
	}
	if len(data)%2 == 0 {
		w.Seal() // as ingest does; odd sizes commit unsealed
	}
	return w.Commit(context.Background(), m, dests)
}

func readUID(t testing.TB, s *Store, uid string) []byte {
	t.Helper()
	r, err := s.Open(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", uid, err)
	}
	return b
}

// countKeys counts the keys whose first byte is tag.
func countKeys(t testing.TB, s *Store, tag byte) int {
	t.Helper()
	n := 0
	err := s.view(func(txn *badger.Txn) error {
		return scan(context.Background(), txn, []byte{tag}, false, func(*badger.Item) (bool, error) { n++; return true, nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRoundTripKeepsBytesAndIndex(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 64 << 10, 64<<10 + 1, 300 << 10}
	var want [][]byte
	for i, n := range sizes {
		data := randomBytes(rng, n)
		want = append(want, data)
		m := meta("1.2.3", "1.2.3.1", fmt.Sprintf("1.2.3.1.%d", i), 1, len(sizes)-i)
		res := put(t, s, m, data, "pacs")
		if res.Outcome != Stored || res.Instance.Size != int64(n) || res.Instance.Inline != (n <= 64<<10) {
			t.Fatalf("put %d bytes: %+v", n, res)
		}
	}
	for i := range sizes {
		if got := readUID(t, s, fmt.Sprintf("1.2.3.1.%d", i)); !bytes.Equal(got, want[i]) {
			t.Fatalf("instance %d: read %d bytes, want %d", i, len(got), len(want[i]))
		}
	}
	st, recs, err := s.Study(t.Context(), "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if st.Instances != len(sizes) || len(recs) != len(sizes) {
		t.Fatalf("study has %d instances, listed %d, want %d", st.Instances, len(recs), len(sizes))
	}
	for i, r := range recs { // instance numbers were given in reverse order
		if r.InstanceNumber != i+1 {
			t.Fatalf("instance %d in study order has number %d", i, r.InstanceNumber)
		}
	}
	pats, err := s.Patients(t.Context())
	if err != nil || len(pats) != 1 || pats[0].Studies != 1 {
		t.Fatalf("patients %+v, %v", pats, err)
	}
	if n := len(files(t, s)); n != 2 {
		t.Fatalf("%d files, want 2 (the instances over 64 KiB)", n)
	}
}

// files lists the ids of the files in s, in no order.
func files(t testing.TB, s *Store) []uint64 {
	t.Helper()
	ids, err := s.filesAbove(0)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestReadDetectsDamagedCopy: a copy whose bytes changed, were cut or are
// gone fails to read with ErrCorrupt (ErrMissing for a gone one) and never
// ends with io.EOF; the technician reads it in the event log, once per copy.
func TestReadDetectsDamagedCopy(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	rng := rand.New(rand.NewPCG(3, 4))
	recs := map[string]Instance{}
	for _, uid := range []string{"changed", "cut", "longer", "gone", "inline", "inline gone"} {
		n := 100 << 10
		if strings.HasPrefix(uid, "inline") {
			n = 10 << 10
		}
		recs[uid] = put(t, s, meta("1", "1.1", uid, 1, 1), randomBytes(rng, n), "pacs").Instance
	}
	damage := func(uid string, fn func(path string) error) {
		if err := fn(s.filePath(recs[uid].ID)); err != nil {
			t.Fatal(err)
		}
	}
	damage("changed", func(p string) error {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err == nil {
			_, err = f.WriteAt([]byte("not the bytes"), 5000)
			f.Close()
		}
		return err
	})
	damage("cut", func(p string) error { return os.Truncate(p, 1000) })
	damage("longer", func(p string) error { return os.Truncate(p, 200<<10) })
	damage("gone", os.Remove)
	err := s.change(func(txn *badger.Txn) error {
		if err := txn.Set(inlineKey(recs["inline"].ID), make([]byte, 10<<10)); err != nil {
			return err
		}
		return txn.Delete(inlineKey(recs["inline gone"].ID))
	})
	if err != nil {
		t.Fatal(err)
	}
	for uid, missing := range map[string]bool{"changed": false, "cut": false, "longer": false, "gone": true, "inline": false, "inline gone": true} {
		for range 2 { // a forwarder tries again
			r, _ := s.Open(context.Background(), uid)
			_, err := io.ReadAll(r)
			r.Close()
			if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrMissing) != missing {
				t.Fatalf("read of %q: %v, want ErrCorrupt (ErrMissing %v)", uid, err, missing)
			}
			t.Logf("%s: %v", uid, err)
		}
	}
	evs, err := s.Events(context.Background(), EventQuery{Kinds: []Kind{KindStore}})
	if err != nil {
		t.Fatal(err)
	}
	reported := map[string]int{}
	for _, e := range evs {
		if e.Severity == Error {
			reported[e.Attrs["sop_instance_uid"]]++
		}
	}
	if len(reported) != 6 || reported["gone"] != 1 || reported["changed"] != 1 {
		t.Fatalf("events per damaged copy %v, want one each of 6", reported)
	}
}

// TestReadOfPurgedCopyIsNotFound: a copy whose record is gone (purged,
// discarded) reads as not found, not as damage.
func TestReadOfPurgedCopyIsNotFound(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	rng := rand.New(rand.NewPCG(5, 5))
	var recs []Instance
	for i, n := range []int{100 << 10, 1 << 10} {
		recs = append(recs, put(t, s, meta("1", "1.1", fmt.Sprint("1.1.", i), 1, i), randomBytes(rng, n), "pacs").Instance)
	}
	deliver(t, s, "pacs", recs[0].SOPInstanceUID)
	if err := s.Committed("pacs", recs[0].SOPInstanceUID, recs[1].SOPInstanceUID); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Purge(context.Background(), Policy{MaxAge: time.Nanosecond}); err != nil || res.Instances != 2 {
		t.Fatalf("purge: %+v, %v", res, err)
	}
	for _, r := range recs {
		if _, err := io.ReadAll(s.OpenInstance(context.Background(), r)); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) {
			t.Fatalf("read of purged copy %d: %v, want ErrNotFound", r.ID, err)
		}
	}
	if n := len(files(t, s)); n != 0 {
		t.Fatalf("%d files after the purge", n)
	}
	if evs, err := s.Events(context.Background(), EventQuery{Kinds: []Kind{KindStore}}); err != nil || len(evs) != 0 {
		t.Fatalf("events: %+v %v", evs, err)
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOptions())
	w, err := s.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(randomBytes(rand.New(rand.NewPCG(5, 6)), 500<<10)); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	if _, err := s.Instance("never"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("aborted instance: %v", err)
	}
	if n := len(files(t, s)); n != 0 {
		t.Fatalf("%d files left after abort", n)
	}
	// A writer abandoned without Abort (a crash) is swept at Open.
	w, _ = s.NewWriter()
	w.Write(make([]byte, 500<<10))
	if n := len(files(t, s)); n != 1 {
		t.Fatalf("%d files while writing, want 1", n)
	}
	s.Close()
	s = openTest(t, dir, testOptions())
	if n := len(files(t, s)); n != 0 {
		t.Fatalf("%d files left after reopen", n)
	}
}

// TestSealedWriterCommitsWhatItHadOrLeavesNothing: Seal (the last byte is
// in, the file syncs in the background) takes no more bytes; Commit after it
// keeps exactly what was written, inline or in a file, and Abort after it
// leaves no file.
func TestSealedWriterCommitsWhatItHadOrLeavesNothing(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	rng := rand.New(rand.NewPCG(11, 12))
	inlineMax := testOptions().InlineMax
	for i, n := range []int{0, 1, inlineMax, inlineMax + 1, writeBuffer, writeBuffer + 1, 3*writeBuffer + 17} {
		data := randomBytes(rng, n)
		uid := fmt.Sprint("1.2.", i)
		w, err := s.NewWriter()
		if err != nil {
			t.Fatal(err)
		}
		if err := writeFragments(w, data, rng); err != nil {
			t.Fatal(err)
		}
		w.Seal()
		if _, err := w.Write([]byte{1}); err == nil {
			t.Fatalf("%d bytes: a write after Seal was taken", n)
		}
		res, err := w.Commit(context.Background(), meta("2", "2.1", uid, 1, i), []string{"pacs"})
		if err != nil {
			t.Fatalf("%d bytes: commit after Seal: %v", n, err)
		}
		if got := readUID(t, s, uid); !bytes.Equal(got, data) {
			t.Fatalf("%d bytes read back as %d", n, len(got))
		}
		if wantInline := n <= inlineMax; res.Instance.Inline != wantInline {
			t.Fatalf("%d bytes: inline %v, want %v", n, res.Instance.Inline, wantInline)
		}
	}
	before := len(files(t, s))
	w, err := s.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(randomBytes(rng, 2*writeBuffer)); err != nil {
		t.Fatal(err)
	}
	w.Seal()
	w.Abort()
	if n := len(files(t, s)); n != before {
		t.Fatalf("%d files after a sealed writer's abort, want %d", n, before)
	}
	checkConsistent(t, s)
}

// TestInstanceSyncedWhileArrivingCommitsOrLeavesNothing: with the file
// synced in the background every buffer (syncAhead), a commit keeps exactly
// the bytes written, and an abort while a sync runs leaves no file.
func TestInstanceSyncedWhileArrivingCommitsOrLeavesNothing(t *testing.T) {
	defer func(v int64) { syncAhead = v }(syncAhead)
	syncAhead = writeBuffer
	s := openTest(t, t.TempDir(), testOptions())
	rng := rand.New(rand.NewPCG(13, 14))
	for i, n := range []int{writeBuffer + 1, 3 * writeBuffer, 12*writeBuffer + 5} {
		data := randomBytes(rng, n)
		uid := fmt.Sprint("1.3.", i)
		put(t, s, meta("3", "3.1", uid, 1, i), data, "pacs")
		if got := readUID(t, s, uid); !bytes.Equal(got, data) {
			t.Fatalf("%d bytes read back as %d", n, len(got))
		}
	}
	before := len(files(t, s))
	for _, seal := range []bool{false, true} {
		w, err := s.NewWriter()
		if err != nil {
			t.Fatal(err)
		}
		if err := writeFragments(w, randomBytes(rng, 6*writeBuffer), rng); err != nil {
			t.Fatal(err)
		}
		if seal {
			w.Seal()
		}
		w.Abort()
		if n := len(files(t, s)); n != before {
			t.Fatalf("sealed %v: %d files after abort, want %d", seal, n, before)
		}
	}
	checkConsistent(t, s)
}

// TestEveryInstanceInFilesReadsBack: with no instance inline, an empty one
// too has its file.
func TestEveryInstanceInFilesReadsBack(t *testing.T) {
	o := testOptions()
	o.InlineMax = -1
	s := openTest(t, t.TempDir(), o)
	rng := rand.New(rand.NewPCG(8, 8))
	for i, n := range []int{0, 1, 5000} {
		data := randomBytes(rng, n)
		uid := fmt.Sprint("1.1.", i)
		if res := put(t, s, meta("1", "1.1", uid, 1, i), data, "pacs"); res.Instance.Inline {
			t.Fatalf("%d bytes kept inline with InlineMax -1", n)
		}
		if got := readUID(t, s, uid); !bytes.Equal(got, data) {
			t.Fatalf("%d bytes read back as %d", n, len(got))
		}
	}
	if n := len(files(t, s)); n != 3 {
		t.Fatalf("%d files, want 3", n)
	}
	checkConsistent(t, s)
}

func TestCommitRejectsMissingUIDsAndLeavesNothing(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	_, err := tryPut(s, Instance{SOPInstanceUID: "1"}, []byte("abc"), "pacs")
	if err == nil {
		t.Fatal("commit without study and series UIDs succeeded")
	}
	if countKeys(t, s, tagInstance)+countKeys(t, s, tagQueue) != 0 {
		t.Fatal("a failed commit left rows")
	}
}
