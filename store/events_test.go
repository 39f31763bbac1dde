package store

import (
	"fmt"
	"testing"
	"time"
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
	all, err := s.Events(EventQuery{})
	if err != nil || len(all) != 8 || all[0].Message != "7" || all[7].Message != "0" || all[0].Attrs["ae"] != "CT1" {
		t.Fatalf("all events: %+v, %v", all, err)
	}
	start := newClock().t
	got, _ := s.Events(EventQuery{Since: start.Add(2 * time.Minute), Until: start.Add(7 * time.Minute), Kinds: []Kind{KindStore, KindReject}})
	var msgs []string
	for _, e := range got {
		msgs = append(msgs, e.Message)
	}
	if fmt.Sprint(msgs) != "[6 5 2]" {
		t.Fatalf("store and reject events in [2m, 7m): %v, want [6 5 2]", msgs)
	}
	if got, _ := s.Events(EventQuery{Limit: 3}); len(got) != 3 || got[0].Message != "7" {
		t.Fatalf("limit 3: %+v", got)
	}
}

func TestEventLogIsBounded(t *testing.T) {
	o := testOptions()
	o.MaxEvents = 32
	dir := t.TempDir()
	s := openTest(t, dir, o)
	for i := range 200 {
		if err := s.Log(Event{Kind: KindStore, Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := s.Events(EventQuery{})
	if len(all) < 32 || len(all) > 32+32/16 || all[0].Message != "199" {
		t.Fatalf("%d events kept, newest %q; want about 32, newest 199", len(all), all[0].Message)
	}
	s.Close()
	s = openTest(t, dir, o)
	for range 10 {
		s.Log(Event{Kind: KindStore})
	}
	if all, _ := s.Events(EventQuery{}); len(all) > 32+32/16 {
		t.Fatalf("%d events after reopen, bound is 32", len(all))
	}
}
