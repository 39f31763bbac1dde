package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mountSmallDisk mounts a 64 MiB tmpfs for the test and unmounts it after.
func mountSmallDisk(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("disk-full test needs root to mount a 64 MiB tmpfs")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64m,mode=0700"); err != nil {
		t.Skipf("disk-full test cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func TestDiskFullFailsTypedAndRecoversAfterPurge(t *testing.T) {
	dir := mountSmallDisk(t)
	o := testOptions()
	o.MemTableSize = 2 << 20
	o.ValueLogFileSize = 4 << 20
	o.Reserve = 12 << 20
	s, err := Open(dir+"/db", o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }() // before the unmount registered above

	rng := rand.New(rand.NewPCG(9, 9))
	var stored []string
	var full error
	for i := 0; i < 100 && full == nil; i++ {
		uid := fmt.Sprintf("1.%d", i)
		_, err := tryPut(s, meta(fmt.Sprintf("S%d", i), "1", uid, 1, 1), randomBytes(rng, 1<<20), "pacs")
		switch {
		case errors.Is(err, ErrFull):
			full = err
		case err != nil:
			t.Fatalf("instance %d: %v, want success or ErrFull", i, err)
		default:
			stored = append(stored, uid)
		}
	}
	if full == nil || len(stored) < 20 {
		t.Fatalf("stored %d MiB on a 64 MiB disk, then %v; want ErrFull after about 45", len(stored), full)
	}
	t.Logf("stored %d instances, then: %v", len(stored), full)
	for _, uid := range stored {
		readUID(t, s, uid)
	}
	if _, err := s.Stats(); err != nil {
		t.Fatal(err)
	}
	// The oldest half is committed; a purge frees its space.
	half := stored[:len(stored)/2]
	for _, uid := range half {
		s.Delivered("pacs", uid)
		if err := s.Committed("pacs", uid); err != nil {
			t.Fatalf("commit bookkeeping on a full disk: %v", err)
		}
	}
	before, _ := statfs(dir)
	res, err := s.Purge(context.Background(), Policy{MaxAge: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := statfs(dir)
	t.Logf("purge %+v: free %d → %d MiB", res, before.Free>>20, after.Free>>20)
	if after.Free < before.Free+uint64(len(half)/2)<<20 {
		t.Fatalf("purge of %d MiB freed only %d bytes on disk", len(half), after.Free-before.Free)
	}
	if res.Instances != len(half) {
		t.Fatalf("purged %d instances, want %d", res.Instances, len(half))
	}
	for i := range 5 {
		uid := fmt.Sprintf("2.%d", i)
		if _, err := tryPut(s, meta("T", "1", uid, 1, i), randomBytes(rng, 1<<20), "pacs"); err != nil {
			t.Fatalf("write %d after purge: %v", i, err)
		}
	}
	for _, uid := range stored[len(half):] {
		readUID(t, s, uid)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir+"/db", o)
	if err != nil {
		t.Fatal(err)
	}
	recs := checkConsistent(t, s)
	if want := len(stored) - len(half) + 5; len(recs) != want {
		t.Fatalf("%d instances after reopen, want %d", len(recs), want)
	}
}
