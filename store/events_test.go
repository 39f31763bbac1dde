package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

func TestEventsNewestFirstByTimeAndKind(t *testing.T) {
	c := newClock()
	o := testOptions()
	o.Now = c.now
	dir := t.TempDir()
	s := openTest(t, dir, o)
	kinds := []Kind{KindAssociation, KindStore, KindReject, KindForward}
	for i := range 8 {
		err := s.Log(Event{Kind: kinds[i%4], Severity: Info, Message: fmt.Sprint(i), Attrs: map[string]string{"ae": "CT1"}})
		if err != nil {
			t.Fatal(err)
		}
		c.t = c.t.Add(time.Minute)
	}
	s.Close()
	s = openTest(t, dir, o) // persistent
	all, err := s.Events(t.Context(), EventQuery{})
	if err != nil || len(all) != 8 || all[0].Message != "7" || all[7].Message != "0" || all[0].Attrs["ae"] != "CT1" {
		t.Fatalf("all events: %+v, %v", all, err)
	}
	start := newClock().t
	got, _ := s.Events(t.Context(), EventQuery{Since: start.Add(2 * time.Minute), Until: start.Add(7 * time.Minute), Kinds: []Kind{KindStore, KindReject}})
	var msgs []string
	for _, e := range got {
		msgs = append(msgs, e.Message)
	}
	if fmt.Sprint(msgs) != "[6 5 2]" {
		t.Fatalf("store and reject events in [2m, 7m): %v, want [6 5 2]", msgs)
	}
	if got, _ := s.Events(t.Context(), EventQuery{Limit: 3}); len(got) != 3 || got[0].Message != "7" {
		t.Fatalf("limit 3: %+v", got)
	}
}

func TestEventLogIsBounded(t *testing.T) {
	o := testOptions()
	o.EventBudgets = map[Kind]int{KindStore: 32}
	dir := t.TempDir()
	s := openTest(t, dir, o)
	for i := range 200 {
		if err := s.Log(Event{Kind: KindStore, Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := s.Events(t.Context(), EventQuery{})
	if len(all) < 32 || len(all) > 32+32/16 || all[0].Message != "199" {
		t.Fatalf("%d events kept, newest %q; want about 32, newest 199", len(all), all[0].Message)
	}
	s.Close()
	s = openTest(t, dir, o)
	for range 10 {
		s.Log(Event{Kind: KindStore})
	}
	if all, _ := s.Events(t.Context(), EventQuery{}); len(all) > 32+32/16 {
		t.Fatalf("%d events after reopen, bound is 32", len(all))
	}
}

// TestNoiseCannotEvictConfigEvents: a flood of one kind trims that kind
// only; the counts are kept in Badger and read back without a scan.
func TestNoiseCannotEvictConfigEvents(t *testing.T) {
	var logged bytes.Buffer
	o := testOptions()
	o.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	o.EventBudgets = map[Kind]int{KindReject: 50, KindConfig: 20}
	dir := t.TempDir()
	s := openTest(t, dir, o)
	for i := range 5 {
		s.Log(Event{Kind: KindConfig, Message: fmt.Sprint("config ", i)})
	}
	s.Log(Event{Kind: KindStore, Message: "received 1 instance(s) from CT1"})
	for i := range 2000 {
		if err := s.Log(Event{Kind: KindReject, Message: fmt.Sprint("refused ", i)}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		t.Helper()
		all, err := s.Events(t.Context(), EventQuery{})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[Kind]int{}
		for _, e := range all {
			seen[e.Kind]++
		}
		counts := s.EventCounts()
		if seen[KindConfig] != 5 || seen[KindStore] != 1 || seen[KindReject] < 50 || seen[KindReject] > 50+50/16 {
			t.Fatalf("%s: events kept per kind %v; want 5 config, 1 store, about 50 reject", when, seen)
		}
		if !maps.Equal(seen, counts) {
			t.Fatalf("%s: counts %v, events in the log %v", when, counts, seen)
		}
		if all[0].Message != "refused 1999" || all[len(all)-1].Message != "config 0" {
			t.Fatalf("%s: newest %q, oldest %q", when, all[0].Message, all[len(all)-1].Message)
		}
		t.Logf("%s: %v", when, counts)
	}
	check("after 2000 refusals")
	s.Close()
	s = openTest(t, dir, o)
	check("after reopen")
	if strings.Contains(logged.String(), "indexed") {
		t.Fatalf("a store with counts was indexed again:\n%s", logged.String())
	}
}

// TestEventLogFromBeforeBudgetsIsIndexedOnce: a store whose events have no
// kind index nor counts opens, is indexed (with a log line) and trimmed
// kind by kind, once.
func TestEventLogFromBeforeBudgetsIsIndexedOnce(t *testing.T) {
	c := newClock()
	var logged bytes.Buffer
	o := testOptions()
	o.Now = c.now
	o.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	o.EventBudgets = map[Kind]int{KindReject: 100}
	dir := t.TempDir()
	s := openTest(t, dir, o)
	s.Log(Event{Kind: KindConfig, Message: "modality CT1 approved"})
	for i := range 3000 {
		c.t = c.t.Add(time.Millisecond)
		s.Log(Event{Kind: KindReject, Message: fmt.Sprint("refused ", i)})
	}
	// What an older relaisd left: every event is kept (its single budget
	// was larger), and neither index nor counts exist.
	for _, tag := range []byte{tagEventKind, tagEventCount} {
		if err := s.db.DropPrefix([]byte{tag}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.change(func(txn *badger.Txn) error {
		for i := range 3000 {
			b, _ := json.Marshal(Event{Time: c.t.Add(-time.Hour), Kind: KindReject, Message: fmt.Sprint("old ", i)})
			if err := txn.Set(eventKey(c.t.Add(-time.Hour).UnixNano(), uint64(10000+i)), b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTest(t, dir, o)
	if !strings.Contains(logged.String(), "indexed by kind") {
		t.Fatalf("no log line about indexing:\n%s", logged.String())
	}
	t.Logf("log: %s", strings.TrimSpace(logged.String()))
	counts := s.EventCounts()
	if counts[KindConfig] != 1 || counts[KindReject] != 100 {
		t.Fatalf("counts after indexing %v; want 1 config, 100 reject", counts)
	}
	all, _ := s.Events(t.Context(), EventQuery{})
	if len(all) != 101 || all[0].Message != "refused 2999" || all[len(all)-1].Message != "modality CT1 approved" {
		t.Fatalf("%d events, newest %q, oldest %q", len(all), all[0].Message, all[len(all)-1].Message)
	}
	// New events take sequence numbers above the old ones.
	if err := s.Log(Event{Kind: KindConfig, Message: "after"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	logged.Reset()
	s = openTest(t, dir, o)
	if strings.Contains(logged.String(), "indexed") {
		t.Fatalf("indexed twice:\n%s", logged.String())
	}
	if counts := s.EventCounts(); counts[KindConfig] != 2 || counts[KindReject] != 100 {
		t.Fatalf("counts after reopen %v", counts)
	}
}

// TestEventsKeptAsideAreBoundedAndAddedOnce: the aside file stops growing
// at asideMax (a modality sending all night to a broken store), the next
// Open adds what it holds and says that later ones were not kept, and the
// Open after adds nothing again.
func TestEventsKeptAsideAreBoundedAndAddedOnce(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOptions())
	line, err := json.Marshal(&Event{Time: time.Now(), Kind: KindReject, Severity: Error, Message: strings.Repeat("refused ", 500)})
	if err != nil {
		t.Fatal(err)
	}
	kept := 0
	for ; kept < 2*asideMax/len(line); kept++ {
		if s.keepAside(line) != nil {
			break
		}
	}
	fi, err := os.Stat(filepath.Join(dir, asideName))
	if err != nil || fi.Size() > asideMax+int64(len(line))+1 || kept == 2*asideMax/len(line) {
		t.Fatalf("kept %d events aside, file %v (%v): want it to stop at %d bytes", kept, fi.Size(), err, asideMax)
	}
	s.Close()
	count := func() (aside, said int) {
		evs, err := s.Events(t.Context(), EventQuery{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			switch {
			case e.Kind == KindReject:
				aside++
			case strings.Contains(e.Message, "were added to the log at their own times (the file was full: later ones were not kept)"):
				said++
			}
		}
		return aside, said
	}
	s = openTest(t, dir, testOptions())
	if aside, said := count(); aside != kept || said != 1 {
		t.Fatalf("after Open: %d of the %d events kept aside in the log, %d saying so (want 1)", aside, kept, said)
	}
	s.Close()
	s = openTest(t, dir, testOptions())
	if aside, said := count(); aside != kept || said != 1 {
		t.Fatalf("after the next Open: %d events of the aside file, %d saying so: want them added once", aside, said)
	}
}
