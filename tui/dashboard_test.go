package tui

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/relais/relais/appliance/control"
)

// TestETASaysRoughlyHowLongIsLeft: the queue's bytes over the measured
// rate, in words a technician reads at a glance.
func TestETASaysRoughlyHowLongIsLeft(t *testing.T) {
	for _, c := range []struct {
		seconds float64
		want    string
	}{
		{3, "a few seconds left"},
		{42, "about 40 s left"},
		{57, "about 1 min left"},
		{185, "about 3 min left"},
		{3590, "about 1 h 00 min left"},
		{2*3600 + 11*60, "about 2 h 10 min left"},
		{5 * 86400, "about 5 days left"},
	} {
		if got := eta(c.seconds); got != c.want {
			t.Errorf("eta(%v) = %q, want %q", c.seconds, got, c.want)
		}
	}
}

// dashboardWith is a console on a w×h terminal showing a status with n
// alarms, "alarm 1 of n" to "alarm n of n"; it reaches no daemon.
func dashboardWith(t *testing.T, n, w, h int) *Model {
	m := New(Options{Socket: filepath.Join(t.TempDir(), "none")})
	m.resize(w, h)
	m.status = control.Status{AETitle: "RELAIS", Port: 104, Tunnel: control.Tunnel{State: "not configured"},
		Health: control.Health{Receiving: control.LevelWarning, Forwarding: control.LevelAlarm, Tunnel: control.LevelOK, Disk: control.LevelOK}}
	for i := 1; i <= n; i++ {
		level, key := control.LevelAlarm, "r"
		if i > 3 {
			level, key = control.LevelWarning, "a"
		}
		m.status.Alarms = append(m.status.Alarms, control.Alarm{Level: level, Key: key, Message: fmt.Sprintf("alarm %d of %d", i, n)})
	}
	m.haveStatus = true
	return m
}

// alarmScreen is what the console shows, as plain text, and what its
// alarm list says: the alarms shown in order, which one is selected, and
// the counts above and below (-1 when there is no such line).
type alarmScreen struct {
	text          string
	lines         int
	shown         []int
	selected      int
	above, below  int
	titled, small bool
}

var (
	alarmRow   = regexp.MustCompile(`^([› ]) ! alarm (\d+) of`)
	aboveLine  = regexp.MustCompile(`^  ↑ (\d+) more above$`)
	belowLine  = regexp.MustCompile(`^  ↓ (\d+) more below · ↑/↓ to scroll$`)
	smallTitle = regexp.MustCompile(`— enlarge the window, or enter reads alarm (\d+)`)
)

func readAlarms(t *testing.T, m *Model) alarmScreen {
	t.Helper()
	s := alarmScreen{text: ansi.Strip(m.render()), selected: -1, above: -1, below: -1}
	s.lines = len(strings.Split(strings.TrimRight(s.text, "\n"), "\n"))
	number := func(x string) int { n, _ := strconv.Atoi(x); return n }
	for _, l := range strings.Split(s.text, "\n") {
		l = strings.TrimRight(l, " ")
		switch {
		case strings.HasPrefix(l, fmt.Sprintf("Alarms (%d)", len(m.status.Alarms))):
			s.titled = true
			if g := smallTitle.FindStringSubmatch(l); g != nil {
				s.small, s.selected = true, number(g[1])
			}
		case alarmRow.MatchString(l):
			g := alarmRow.FindStringSubmatch(l)
			s.shown = append(s.shown, number(g[2]))
			if g[1] == "›" {
				s.selected = number(g[2])
			}
		case aboveLine.MatchString(l):
			s.above = number(aboveLine.FindStringSubmatch(l)[1])
		case belowLine.MatchString(l):
			s.below = number(belowLine.FindStringSubmatch(l)[1])
		}
	}
	return s
}

func press(m *Model, code rune) { m.Update(tea.KeyPressMsg{Code: code}) }

// TestDashboardScrollsThroughEveryAlarm: 15 alarms on an 80×24 console do
// not fit under the status lines; the list says how many there are, shows
// the first ones and how many are below, and the cursor scrolls it down to
// the last, which is then shown, selected, and opened by enter.
func TestDashboardScrollsThroughEveryAlarm(t *testing.T) {
	m := dashboardWith(t, 15, 80, 24)
	s := readAlarms(t, m)
	fits(t, s.text)
	if !s.titled || len(s.shown) == 0 || s.shown[0] != 1 || s.selected != 1 || s.above != -1 || s.below != 15-len(s.shown) {
		t.Fatalf("first screen: titled %v, shown %v, selected %d, %d above, %d below:\n%s", s.titled, s.shown, s.selected, s.above, s.below, s.text)
	}
	t.Logf("80×24: %d of 15 alarms on the first screen", len(s.shown))
	// Down, one alarm at a time: the selected one is always shown, and the
	// counts always add up to 15.
	for want := 2; want <= 15; want++ {
		press(m, tea.KeyDown)
		s = readAlarms(t, m)
		if s.lines > 24 || s.selected != want || max(s.above, 0)+len(s.shown)+max(s.below, 0) != 15 || s.shown[0] != max(s.above, 0)+1 {
			t.Fatalf("after %d down: %d lines, shown %v, selected %d, %d above, %d below:\n%s", want-1, s.lines, s.shown, s.selected, s.above, s.below, s.text)
		}
	}
	if s.shown[len(s.shown)-1] != 15 || s.below != -1 || s.above != 15-len(s.shown) {
		t.Fatalf("at the last alarm: shown %v, %d above, %d below:\n%s", s.shown, s.above, s.below, s.text)
	}
	press(m, tea.KeyHome)
	press(m, tea.KeyEnd)
	if e := readAlarms(t, m); e.selected != 15 || e.above != s.above {
		t.Fatalf("home then end: selected %d, %d above:\n%s", e.selected, e.above, e.text)
	}
	// An action's outcome under the list takes lines from it, not the
	// selected alarm.
	m.notice = strings.Repeat("an outcome long enough to wrap ", 4)
	if e := readAlarms(t, m); e.lines > 24 || e.selected != 15 || !strings.Contains(e.text, "an outcome") {
		t.Fatalf("with a notice: %d lines, selected %d:\n%s", e.lines, e.selected, e.text)
	}
	press(m, tea.KeyEnter)
	if page := ansi.Strip(m.render()); !strings.Contains(page, "alarm 15 of 15") || strings.Contains(page, "alarm 14 of 15") {
		t.Fatalf("enter on the last alarm shows:\n%s", page)
	}
}

// TestDashboardAlarmsOnEveryTerminalHeight: from a terminal too low for a
// single alarm row up to one that holds them all, at every cursor
// position, the screen keeps to its height and the title with the count,
// and the selected alarm is shown (or, when not one row fits, named in the
// title).
func TestDashboardAlarmsOnEveryTerminalHeight(t *testing.T) {
	smallest, all := 0, 0
	for h := 6; h <= 30; h++ {
		m := dashboardWith(t, 7, 80, h)
		for want := 1; want <= 7; want++ {
			s := readAlarms(t, m)
			switch {
			case s.lines > h:
				t.Fatalf("80×%d, alarm %d selected: %d lines:\n%s", h, want, s.lines, s.text)
			case !s.titled || s.selected != want:
				t.Fatalf("80×%d, alarm %d selected: titled %v, selected %d:\n%s", h, want, s.titled, s.selected, s.text)
			case s.small && len(s.shown) > 0:
				t.Fatalf("80×%d: a row shown under the small title:\n%s", h, s.text)
			}
			if s.small && h > smallest {
				smallest = h
			}
			if len(s.shown) == 7 && all == 0 {
				all = h
			}
			press(m, tea.KeyDown)
		}
	}
	t.Logf("7 alarms: the title alone up to 80×%d, all of them listed from 80×%d", smallest, all)
}
