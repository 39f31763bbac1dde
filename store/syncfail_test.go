package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestFailedSyncFailsTheCommitAndLeavesNothing makes the disk fail one sync
// of an instance: a sync made ahead while the bytes arrive, the file's last
// fdatasync, or its directory's. Linux reports a writeback error once, and
// the power-cut filesystem does the same (the syncs after the failed one
// succeed), so the sync at commit cannot be trusted to see an earlier
// failure: the commit must fail anyway, and nothing of the instance may be
// visible. After a file's failed sync the store takes the next instance;
// after a directory's it refuses every one until it is opened again, since
// the names made since are in doubt (on ext4 such a failure aborts the
// journal: nothing is written until a reboot anyway). After a power cut
// every instance acknowledged is intact and no file is left without a
// record.
func TestFailedSyncFailsTheCommitAndLeavesNothing(t *testing.T) {
	pc, dir := mountPowerCut(t)
	defer func(v int64) { syncAhead = v }(syncAhead)
	o := testOptions()
	s := openTest(t, dir, o)

	instanceFile := regexp.MustCompile(`^[0-9a-f]+$`) // files/<dir>/<id>; Badger's names have a dot or capitals
	instanceDir := regexp.MustCompile(`^[0-9a-f]+/$`)
	acked := map[string][]byte{}
	rng := rand.New(rand.NewPCG(1, 2))
	for i, c := range []struct {
		name   string
		names  *regexp.Regexp
		ahead  int64
		fails  string
		length int
		reopen bool // the store refuses until opened again
	}{
		{"a sync ahead", instanceFile, 64 << 10, "sync ahead: input/output error", 1 << 20, false},
		{"the last fdatasync", instanceFile, 0, "sync file of copy", 1 << 20, false},
		{"the directory's sync", instanceDir, 0, "input/output error", 256 << 10, true},
	} {
		syncAhead = c.ahead
		data := make([]byte, c.length)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		uid := fmt.Sprintf("1.2.3.%d", i)
		pc.FailSyncs(c.names, 1)
		_, err := tryPut(s, meta("S", "S.1", uid, 1, i), data, "pacs")
		pc.FailSyncs(nil, 0)
		if err == nil || !strings.Contains(err.Error(), c.fails) {
			t.Fatalf("%s failed: commit returned %v, want an error saying %q", c.name, err, c.fails)
		}
		t.Logf("%s failed: %v", c.name, err)
		if _, err := s.Instance(uid); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s failed: the instance is there (%v)", c.name, err)
		}
		if c.reopen {
			_, err := tryPut(s, meta("S", "S.1", uid, 1, i), data, "pacs")
			if err == nil || !strings.Contains(err.Error(), c.fails) {
				t.Fatalf("%s failed, then the retry: commit returned %v, want the same error until the store is opened again", c.name, err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openTest(t, dir, o)
		}
		// The disk works again: the modality's retry is taken.
		put(t, s, meta("S", "S.1", uid, 1, i), data, "pacs")
		acked[uid] = data
		if got := readUID(t, s, uid); !bytes.Equal(got, data) {
			t.Fatalf("%s failed, then the retry: %d bytes read back, want the %d sent", c.name, len(got), len(data))
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	pc.Remount() // and the power goes
	s = openTest(t, dir, o)
	defer s.Close()
	checkConsistent(t, s)
	for uid, data := range acked {
		if got := readUID(t, s, uid); !bytes.Equal(got, data) {
			t.Errorf("after the cut, %s: %d bytes read back, want the %d acknowledged", uid, len(got), len(data))
		}
	}
	files := 0
	err := filepath.WalkDir(filepath.Join(dir, filesDir), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files++
		}
		return err
	})
	if err != nil || files != len(acked) {
		t.Errorf("after the cut: %d instance files (%v), want %d: one per instance acknowledged", files, err, len(acked))
	}
}
