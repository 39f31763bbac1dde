package store

import (
	"bytes"
	"os"
	"syscall"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// TestNoIdIsHandedOutTwiceAcrossARestart: an inline copy leaves no file,
// and once purged no key either; the counter written with every change
// still keeps its id from being handed out again (value-log GC could bring
// back bytes keyed by it).
func TestNoIdIsHandedOutTwiceAcrossARestart(t *testing.T) {
	dir := t.TempDir()
	o := testOptions()
	s := openTest(t, dir, o)
	// A writer still streaming a large instance holds the swept mark below
	// its id: the mark alone says nothing of the ids after it.
	open, err := s.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open.Write(make([]byte, 2*o.InlineMax)); err != nil {
		t.Fatal(err)
	}
	rec := put(t, s, meta("1", "1.1", "1.1.1", 1, 1), []byte("small"), "pacs").Instance
	if !rec.Inline {
		t.Fatalf("a 5-byte instance is not inline: %+v", rec)
	}
	// Purged: its record, index rows, queue entry and bytes go.
	if err := s.change(func(txn *badger.Txn) error { return s.removeInstance(txn, &rec) }); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, dir, o) // the large instance never committed: cut by the restart
	w, err := s.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if w.id <= rec.ID {
		t.Fatalf("after a restart, id %d handed out again (the purged copy had %d)", w.id, rec.ID)
	}
}

// TestReadingACopyLeavesItsInodeAlone: forwarding reads every file once,
// and under relatime that first read would rewrite the inode (its access
// time), journal work each other sync on the disk then waits for.
func TestReadingACopyLeavesItsInodeAlone(t *testing.T) {
	o := testOptions()
	s := openTest(t, t.TempDir(), o)
	data := bytes.Repeat([]byte("pixel"), o.InlineMax) // a file, not inline
	rec := put(t, s, meta("1", "1.1", "1.1.1", 1, 1), data).Instance
	path := s.filePath(rec.ID)
	// An access time before the modification time: relatime would update it.
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(path, old, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got := readUID(t, s, rec.SOPInstanceUID); !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, want the %d stored", len(got), len(data))
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	atime := time.Unix(st.Sys().(*syscall.Stat_t).Atim.Unix())
	if atime.After(old.Add(time.Second)) {
		t.Fatalf("reading the copy set its access time to %v (was %v)", atime, old)
	}
}
