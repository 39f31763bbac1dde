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
	"testing"

	badger "github.com/dgraph-io/badger/v4"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		runCrashChild(dir) // never returns
	}
	os.Exit(m.Run())
}

// testOptions are small, so tests exercise several chunks, memtables and
// value log files with little data.
func testOptions() Options {
	o := DefaultOptions()
	o.ChunkSize = 64 << 10
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
		if res.Outcome != Stored || res.Instance.Size != int64(n) || res.Instance.Chunks != (n+(64<<10)-1)/(64<<10) {
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
	if countKeys(t, s, tagPending) != 0 {
		t.Fatal("pending markers left after commits")
	}
}

func TestReadDetectsCorruptChunk(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	res := put(t, s, meta("1", "1.1", "1.1.1", 1, 1), randomBytes(rand.New(rand.NewPCG(3, 4)), 100<<10), "pacs")
	err := s.write(func(txn *badger.Txn) error {
		return txn.Set(chunkKey(res.Instance.ID, 1), []byte("not the bytes"))
	})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := s.Open(context.Background(), "1.1.1")
	if _, err := io.ReadAll(r); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read of a changed chunk: %v, want ErrCorrupt", err)
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
	if _, err := s.Purge(context.Background(), Policy{}); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, s, tagChunk) + countKeys(t, s, tagPending); n != 0 {
		t.Fatalf("%d chunk or marker keys left after abort and purge", n)
	}
	// A writer abandoned without Abort (a crash) is swept at Open.
	w, _ = s.NewWriter()
	w.Write(make([]byte, 200<<10))
	s.Close()
	s = openTest(t, dir, testOptions())
	if n := countKeys(t, s, tagChunk) + countKeys(t, s, tagPending); n != 0 {
		t.Fatalf("%d chunk or marker keys left after reopen", n)
	}
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
