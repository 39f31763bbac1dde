package appliance

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var testIP = netip.MustParseAddr("192.0.2.7")

func messages(ls []line) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.msg)
	}
	return out
}

// TestCallerBookKeepsTheLatestAndCountsTheRest: a flood of distinct AE
// titles keeps maxCallers entries, most recent first, and counts the others.
func TestCallerBookKeepsTheLatestAndCountsTheRest(t *testing.T) {
	b := newCallerBook()
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	b.refused("CT1", testIP, now)
	for i := range 5000 {
		b.refused(fmt.Sprintf("X%05d", i), testIP, now.Add(time.Duration(i)*time.Millisecond))
	}
	cs, dropped := b.list()
	if len(cs) != maxCallers || dropped != 5001-maxCallers || cs[0].AETitle != "X04999" || cs[maxCallers-1].AETitle != fmt.Sprintf("X%05d", 5000-maxCallers) {
		t.Fatalf("%d listed (first %s), %d dropped", len(cs), cs[0].AETitle, dropped)
	}
	// A listed caller knocking again moves to the front with its counts.
	later := now.Add(time.Hour)
	b.refused("X04950", testIP, later)
	cs, _ = b.list()
	if c := cs[0]; c.AETitle != "X04950" || c.Attempts != 2 || !c.LastSeen.Equal(later) || c.FirstSeen.After(now.Add(5*time.Second)) {
		t.Fatalf("front after a second knock: %+v", c)
	}
	b.forget("X04950", "")
	if cs, _ := b.list(); len(cs) != maxCallers-1 || cs[0].AETitle == "X04950" {
		t.Fatalf("after forget: %d, front %s", len(cs), cs[0].AETitle)
	}
}

// TestRefusalsAreAggregated: a caller's first refusal is logged at once,
// the next ones once per callerLogPeriod with their count; beyond
// refusalLines callers a minute, one summary line counts the rest; every
// refusal is counted once.
func TestRefusalsAreAggregated(t *testing.T) {
	b := newCallerBook()
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	var got []line
	got = append(got, b.refused("MR1", testIP, now)...)
	for i := range 50 {
		got = append(got, b.refused("MR1", testIP, now.Add(time.Duration(i)*time.Second))...)
	}
	if len(got) != 1 || !strings.Contains(got[0].msg, "unknown modality MR1 (192.0.2.7) tried to send") {
		t.Fatalf("one caller knocking 51 times in a minute: %q", messages(got))
	}
	got = b.flush(now.Add(5 * time.Minute))
	if len(got) != 0 {
		t.Fatalf("flush before the period: %q", messages(got))
	}
	got = b.flush(now.Add(callerLogPeriod))
	if len(got) != 1 || !strings.Contains(got[0].msg, "tried to send 50 more time(s) since") || got[0].attrs["attempts"] != "50" {
		t.Fatalf("flush after the period: %q", messages(got))
	}

	// A flood: 1000 distinct callers within one minute.
	t0 := now.Add(time.Hour)
	got = nil
	for i := range 1000 {
		got = append(got, b.refused(fmt.Sprintf("X%04d", i), testIP, t0.Add(time.Duration(i)*time.Millisecond))...)
	}
	if len(got) != refusalLines {
		t.Fatalf("%d lines in the flood's first minute, want %d", len(got), refusalLines)
	}
	got = b.flush(t0.Add(refusalWindow))
	if len(got) != 1 || got[0].msg != "990 refused association requests from 990 unknown callers in the last minute: not each logged; relais callers lists the latest" {
		t.Fatalf("summary: %q", messages(got))
	}
	if got := b.flush(t0.Add(2 * refusalWindow)); len(got) != 0 {
		t.Fatalf("a quiet minute: %q", messages(got))
	}
	// Wrong called AE titles share the cap.
	t1 := t0.Add(time.Hour)
	got = nil
	for i := range 30 {
		got = append(got, b.wrongCalled(fmt.Sprint("wrong ", i), nil, t1)...)
	}
	got = append(got, b.close(t1)...)
	if len(got) != refusalLines+1 || !strings.Contains(got[refusalLines].msg, "20 refused association requests in the last minute (20 of them called another AE title)") {
		t.Fatalf("wrong called AE: %q", messages(got))
	}
}
