package powercut

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

func mountTest(t *testing.T) *FS {
	t.Helper()
	return Mount(t, filepath.Join(t.TempDir(), "backing"))
}

// writeFile creates (or replaces) path with data, fsyncing it when sync.
func writeFile(t *testing.T, path string, data []byte, sync bool) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

func syncDir(t *testing.T, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", dir, err)
	}
}

// wantFile asserts path holds want; nil want: path does not exist.
func wantFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	switch {
	case want == nil && errors.Is(err, fs.ErrNotExist):
	case want == nil:
		t.Errorf("%s: want no file, got %d bytes (err %v)", filepath.Base(path), len(got), err)
	case err != nil:
		t.Errorf("%s: %v", filepath.Base(path), err)
	case !bytes.Equal(got, want):
		t.Errorf("%s: got %d bytes %.16q…, want %d bytes %.16q…", filepath.Base(path), len(got), got, len(want), want)
	}
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestSyncedFileAndEntrySurviveACut(t *testing.T) {
	f := mountTest(t)
	rng := rand.New(rand.NewPCG(1, 2))
	data := randomBytes(rng, 3<<20+123) // pages, runs and a partial last page
	path := filepath.Join(f.Dir(), "a")
	writeFile(t, path, data, true)
	syncDir(t, f.Dir())

	f.Remount()
	wantFile(t, path, data)
	// And again: the durable state of a durable state is itself.
	f.Remount()
	wantFile(t, path, data)
}

func TestUnsyncedWritesVanishAtACut(t *testing.T) {
	f := mountTest(t)
	synced := bytes.Repeat([]byte("durable."), 2000)
	path := filepath.Join(f.Dir(), "a")
	writeFile(t, path, synced, true)
	// A file whose name is durable but whose data never was: empty.
	never := filepath.Join(f.Dir(), "never")
	writeFile(t, never, []byte("written, never synced"), false)
	syncDir(t, f.Dir())

	// Overwrite the middle and append, then close without syncing.
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteAt([]byte("LOST"), 5000)
	fh.WriteAt([]byte("appended, lost"), int64(len(synced)))
	fh.Close()
	got, _ := os.ReadFile(path)
	if len(got) != len(synced)+14 || string(got[5000:5004]) != "LOST" {
		t.Fatalf("before the cut the live bytes show the writes: %d bytes, %q", len(got), got[5000:5004])
	}

	f.Remount()
	wantFile(t, path, synced)
	wantFile(t, never, []byte{})
}

func TestUnsyncedEntriesVanishAtACut(t *testing.T) {
	f := mountTest(t)
	dir := f.Dir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kept", "unlinked", "renamed", "moved"} {
		writeFile(t, filepath.Join(dir, name), []byte(name), true)
	}
	syncDir(t, dir)

	// Synced data, unsynced name.
	writeFile(t, filepath.Join(dir, "new"), []byte("new"), true)
	if err := os.Mkdir(filepath.Join(dir, "newdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "unlinked")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "renamed"), filepath.Join(dir, "renamed2")); err != nil {
		t.Fatal(err)
	}
	// Across directories with only the source synced: the file is lost.
	if err := os.Rename(filepath.Join(dir, "moved"), filepath.Join(sub, "moved")); err != nil {
		t.Fatal(err)
	}
	// A file in a directory whose own name is not durable.
	writeFile(t, filepath.Join(dir, "newdir", "inner"), []byte("inner"), true)
	syncDir(t, filepath.Join(dir, "newdir"))

	f.Remount()
	wantFile(t, filepath.Join(dir, "kept"), []byte("kept"))
	wantFile(t, filepath.Join(dir, "new"), nil)
	wantFile(t, filepath.Join(dir, "unlinked"), []byte("unlinked"))
	wantFile(t, filepath.Join(dir, "renamed"), []byte("renamed"))
	wantFile(t, filepath.Join(dir, "renamed2"), nil)
	wantFile(t, filepath.Join(dir, "moved"), []byte("moved"))
	wantFile(t, filepath.Join(sub, "moved"), nil)
	if _, err := os.Stat(filepath.Join(dir, "newdir")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("newdir: want gone, got %v", err)
	}

	// The same changes, synced.
	if err := os.Rename(filepath.Join(dir, "renamed"), filepath.Join(dir, "renamed2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "moved"), filepath.Join(sub, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "unlinked")); err != nil {
		t.Fatal(err)
	}
	syncDir(t, sub)
	syncDir(t, dir)
	f.Remount()
	wantFile(t, filepath.Join(dir, "renamed"), nil)
	wantFile(t, filepath.Join(dir, "renamed2"), []byte("renamed"))
	wantFile(t, filepath.Join(dir, "moved"), nil)
	wantFile(t, filepath.Join(sub, "moved"), []byte("moved"))
	wantFile(t, filepath.Join(dir, "unlinked"), nil)
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range names {
		got = append(got, e.Name())
	}
	if want := []string{"kept", "renamed2", "sub"}; !slices.Equal(got, want) {
		t.Errorf("readdir: %v, want %v", got, want)
	}
}

func TestJournaledNamesNeedAnySync(t *testing.T) {
	f := MountJournaled(t, filepath.Join(t.TempDir(), "backing"), regexp.MustCompile(`\.log$`))
	dir := f.Dir()
	writeFile(t, filepath.Join(dir, "gone.log"), []byte("gone"), false)
	syncDir(t, dir)
	writeFile(t, filepath.Join(dir, "a.log"), []byte("a"), true) // any sync commits the journaled names
	writeFile(t, filepath.Join(dir, "b.dat"), []byte("b"), true)
	if err := os.Remove(filepath.Join(dir, "gone.log")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "c.log"), []byte("c"), false)
	writeFile(t, filepath.Join(dir, "sync.dat"), nil, true)
	writeFile(t, filepath.Join(dir, "d.log"), []byte("d"), false) // after the last sync

	f.Remount()
	wantFile(t, filepath.Join(dir, "a.log"), []byte("a"))
	wantFile(t, filepath.Join(dir, "b.dat"), nil)
	wantFile(t, filepath.Join(dir, "gone.log"), nil)
	wantFile(t, filepath.Join(dir, "c.log"), []byte{}) // its name, not its data
	wantFile(t, filepath.Join(dir, "sync.dat"), nil)
	wantFile(t, filepath.Join(dir, "d.log"), nil)
}

func TestTruncatedBytesReadAsZeros(t *testing.T) {
	f := mountTest(t)
	path := filepath.Join(f.Dir(), "t")
	writeFile(t, path, bytes.Repeat([]byte{0xAA}, 10000), true)
	syncDir(t, f.Dir())
	if err := os.Truncate(path, 100); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 9000); err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Repeat([]byte{0xAA}, 100), make([]byte, 8900)...)
	wantFile(t, path, want)
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := fh.Sync(); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	f.Remount()
	wantFile(t, path, want)
}

// The way Badger writes its logs: a file sized with ftruncate, mapped
// shared, written through the mapping, msync'ed.
func TestSharedMappingIsDurableAfterMsync(t *testing.T) {
	f := mountTest(t)
	path := filepath.Join(f.Dir(), "000001.vlog")
	const size = 1 << 20
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := fh.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := fh.Sync(); err != nil {
		t.Fatal(err)
	}
	syncDir(t, f.Dir())
	mem, err := unix.Mmap(int(fh.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	copy(mem[0:], "synced at the start")
	copy(mem[size-100:], "synced at the end")
	if err := unix.Msync(mem, unix.MS_SYNC); err != nil {
		t.Fatal(err)
	}
	copy(mem[4096:], "never synced")
	copy(mem[0:], "SYNCED")
	f.Cut()
	copy(mem[8192:], "after the cut") // the cut mount still answers
	if err := unix.Msync(mem, unix.MS_SYNC); err != nil {
		t.Fatalf("msync after the cut: %v", err)
	}
	unix.Munmap(mem)
	fh.Close()

	f.Remount()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, size)
	copy(want[0:], "synced at the start")
	copy(want[size-100:], "synced at the end")
	if !bytes.Equal(got, want) {
		t.Errorf("after the cut: start %q, page 1 %q, page 2 %q, end %q", got[:19], got[4096:4108], got[8192:8205], got[size-100:size-83])
	}
}

func TestOverlayHoldsOnlyUnsyncedPages(t *testing.T) {
	f := mountTest(t)
	fh, err := os.Create(filepath.Join(f.Dir(), "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	chunk := make([]byte, 1<<20)
	for range 64 {
		if _, err := fh.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.Unsynced(); got != 64<<20 {
		t.Errorf("64 MiB written, unsynced: %d bytes held", got)
	}
	if err := fh.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := f.Unsynced(); got != 0 {
		t.Errorf("after fsync: %d bytes held", got)
	}
	if _, err := fh.WriteAt([]byte("x"), 10<<20+5); err != nil {
		t.Fatal(err)
	}
	if got := f.Unsynced(); got != pageSize {
		t.Errorf("one byte written in a 64 MiB synced file: %d bytes held, want one page", got)
	}
}

// What plain programs (and Badger) do besides reading and writing.
func TestPlainFileCalls(t *testing.T) {
	f := mountTest(t)
	dir := f.Dir()
	path := filepath.Join(dir, "LOCK")
	a, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644); !errors.Is(err, fs.ErrExist) {
		t.Errorf("O_EXCL on an existing file: %v, want EEXIST", err)
	}
	if err := unix.Flock(int(a.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("flock: %v", err)
	}
	b, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := unix.Flock(int(b.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Errorf("second flock: %v, want EWOULDBLOCK", err)
	}

	log := filepath.Join(dir, "log")
	for _, line := range []string{"one\n", "two\n"} {
		fh, err := os.OpenFile(log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fh.WriteString(line)
		fh.Close()
	}
	wantFile(t, log, []byte("one\ntwo\n"))

	fh, err := os.OpenFile(log, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Fallocate(int(fh.Fd()), 0, 0, 1<<20); err != nil {
		t.Errorf("fallocate: %v", err)
	}
	fh.Close()
	if st, err := os.Stat(log); err != nil || st.Size() != 1<<20 {
		t.Errorf("after fallocate: %v %v", st.Size(), err)
	}
	if err := os.Truncate(log, 8); err != nil {
		t.Fatal(err)
	}

	for i := range 300 { // more than one readdir call's worth
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%03d", i)), nil, false)
	}
	names, err := os.ReadDir(dir)
	if err != nil || len(names) != 302 {
		t.Errorf("readdir: %d names, %v", len(names), err)
	}
	if err := os.Remove(dir + "/nothing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("remove a missing file: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "d", "x"), nil, false)
	if err := os.Remove(filepath.Join(dir, "d")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Errorf("rmdir of a full directory: %v", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Bavail == 0 {
		t.Errorf("statfs: %d blocks free, %v", st.Bavail, err)
	}
}

// Badger with SyncWrites on, written by goroutines while the power is cut:
// every write it acknowledged is there after the reboot, with its own
// files' names journaled (see BadgerFiles).
func TestBadgerKeepsAcknowledgedWritesAcrossCuts(t *testing.T) {
	f := MountJournaled(t, filepath.Join(t.TempDir(), "backing"), BadgerFiles)
	badgerAcrossCuts(t, f)
}

// badgerAcrossCuts writes to Badger from three goroutines, cuts the power
// at random moments, and checks after each reboot that every write
// acknowledged (Update returned nil) before the cut reads back.
func badgerAcrossCuts(t *testing.T, f *FS) {
	dir := filepath.Join(f.Dir(), "db")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	syncDir(t, f.Dir())
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithMemTableSize(1 << 20).
		WithValueLogFileSize(4 << 20).
		WithValueThreshold(1 << 10).
		WithNumMemtables(2).
		WithLogger(nil)
	acked := map[string][]byte{}
	const cuts = 8
	for cut := 0; ; cut++ {
		db, err := badger.Open(opts)
		if err != nil {
			t.Fatalf("after %d cuts: open: %v", cut, err)
		}
		closed := false
		t.Cleanup(func() {
			if !closed {
				db.Close()
			}
		})
		for k, v := range acked {
			err := db.View(func(txn *badger.Txn) error {
				item, err := txn.Get([]byte(k))
				if err != nil {
					return err
				}
				return item.Value(func(got []byte) error {
					if !bytes.Equal(got, v) {
						return fmt.Errorf("%d bytes, want %d", len(got), len(v))
					}
					return nil
				})
			})
			if err != nil {
				t.Fatalf("after %d cuts: acknowledged %s: %v; files %v", cut, k, err, listing(dir))
			}
		}
		if cut == cuts {
			closed = true
			db.Close()
			break
		}

		var mu sync.Mutex
		cutDone := false
		var wg sync.WaitGroup
		for g := range 3 {
			grng := rand.New(rand.NewPCG(seed, uint64(cut*10+g+1)))
			wg.Go(func() {
				for i := 0; ; i++ {
					k := fmt.Sprintf("%d/%d/%d", cut, g, i)
					v := randomBytes(grng, 1+grng.IntN(64<<10))
					err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(k), v) })
					mu.Lock()
					done := cutDone
					if err == nil && !done {
						acked[k] = v
					}
					mu.Unlock()
					if done || err != nil {
						return
					}
				}
			})
		}
		time.Sleep(time.Duration(50+rng.IntN(300)) * time.Millisecond)
		mu.Lock()
		cutDone = true
		f.Cut()
		mu.Unlock()
		wg.Wait()
		closed = true
		db.Close()
		f.Remount()
	}
	t.Logf("%d cuts, %d acknowledged writes checked", cuts, len(acked))
}

// listing names a directory's files with their sizes.
func listing(dir string) []string {
	var names []string
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		if info, err := e.Info(); err == nil {
			names = append(names, fmt.Sprintf("%s:%d", e.Name(), info.Size()))
		}
	}
	return names
}
