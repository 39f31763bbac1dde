package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestFailedSyncFailsTheCommitAndLeavesNothing makes the disk fail one sync
// of an instance: a sync made ahead while the bytes arrive, the file's last
// fdatasync, its directory's, or that of Badger's log when the record
// commits. Linux reports a writeback error once, and the power-cut
// filesystem does the same (the syncs after the failed one succeed), so a
// later sync cannot be trusted to see an earlier failure: the commit must
// fail anyway. After a file's failed sync nothing of the instance is
// visible and the store takes the next one. After a directory's, the names
// made since are in doubt (on ext4 such a failure aborts the journal:
// nothing is written until a reboot anyway); after Badger's, the record is
// visible but not known to be on disk, and the instance sent again would
// be found held: so the store refuses every change until the box reboots,
// and then holds the instance whole or not at all. After a power cut every
// instance acknowledged is intact and no file is left without a record.
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
		reboot bool // the store refuses until the box reboots
	}{
		{"a sync ahead", instanceFile, 64 << 10, "sync ahead: input/output error", 1 << 20, false},
		{"the last fdatasync", instanceFile, 0, "sync file of copy", 1 << 20, false},
		{"the directory's sync", instanceDir, 0, "input/output error", 256 << 10, true},
		{"Badger's log sync", regexp.MustCompile(`\.mem$`), 0, "the disk failed a write", 256 << 10, true},
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
		_, visible := s.Instance(uid)
		if visible == nil && !errors.Is(err, ErrWriteFailed) {
			t.Fatalf("%s failed: the instance is there", c.name)
		}
		if _, cause := s.WriteFailure(); (cause != nil) != c.reboot {
			t.Fatalf("%s failed: the store's write failure is %v", c.name, cause)
		}
		if c.reboot {
			_, err := tryPut(s, meta("S", "S.1", uid, 1, i), data, "pacs")
			if err == nil || !strings.Contains(err.Error(), c.fails) {
				t.Fatalf("%s failed, then the retry: commit returned %v, want the same error until the box reboots", c.name, err)
			}
			// The event of the refusal cannot go into Badger now: it is kept
			// aside, synced, and added to the log at the next Open.
			refused := Event{Time: s.now().Add(-time.Second), Kind: KindReject, Severity: Error, Message: "refused " + uid + ": the disk failed to save it"}
			if err := s.Log(refused); err == nil || !strings.Contains(err.Error(), "kept aside for the next start") {
				t.Fatalf("%s failed, then an event: %v, want it kept aside", c.name, err)
			}
			s.Close() // may fail: it writes
			pc.Remount()
			s = openTest(t, dir, o)
			evs, err := s.Events(t.Context(), EventQuery{Since: refused.Time})
			if err != nil {
				t.Fatal(err)
			}
			var found, said bool
			for _, e := range evs {
				found = found || (e.Message == refused.Message && e.Time.Equal(refused.Time) && e.Kind == KindReject)
				said = said || strings.Contains(e.Message, "1 event(s) from "+refused.Time.Local().Format(time.DateTime)+" on, recorded while the store could not write, were added")
			}
			if !found || !said {
				t.Fatalf("%s failed, after the reboot: events %+v, want the refusal at its own time and a word on it", c.name, evs)
			}
			if _, err := os.Stat(filepath.Join(dir, asideName)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("%s failed, after the reboot: the aside file is still there (%v)", c.name, err)
			}
			if got, err := s.Open(t.Context(), uid); err == nil {
				b, err := io.ReadAll(got)
				got.Close()
				if err != nil || !bytes.Equal(b, data) {
					t.Fatalf("%s failed, after the reboot: %d bytes read back (%v), want none or the %d sent", c.name, len(b), err, len(data))
				}
				t.Logf("%s failed, after the reboot: the instance is held whole", c.name)
			} else if !errors.Is(err, ErrNotFound) {
				t.Fatalf("%s failed, after the reboot: %v", c.name, err)
			}
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
