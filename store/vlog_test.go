package store

import (
	"os"
	"path/filepath"
	"testing"
)

// Badger v4.9.6 only logs a failed sync of its value log, so a value there
// could be acknowledged without being on disk: the store writes none (see
// Options.ValueThreshold). A store through every kind of change, inline
// instances, events and a purge included, leaves its value logs empty.
func TestNothingIsWrittenToTheValueLog(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := churned(t, dir, 17)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	logs, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("value logs: %v %v", logs, err)
	}
	for _, l := range logs {
		fi, err := os.Stat(l)
		if err != nil {
			t.Fatal(err)
		}
		// A value log holds a 20-byte header (key id and base IV) before
		// its entries.
		if fi.Size() > 20 {
			t.Errorf("%s holds %d bytes: values were written to the value log", filepath.Base(l), fi.Size())
		}
	}
}
