package store

import (
	"testing"

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
