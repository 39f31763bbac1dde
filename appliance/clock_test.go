package appliance

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/testdata/peers"
)

// TestClockNotSetIsWarnedAndItsStepsSaid: a box whose clock reads 1970 (a
// Raspberry Pi before NTP answers) says so in its health with the action;
// when the clock is set, set back (a PC booted two hours ahead) and set
// forward, each step is an event saying from what to what. The metrics
// carry the box's clock for the monitoring to compare.
func TestClockNotSetIsWarnedAndItsStepsSaid(t *testing.T) {
	var offset atomic.Int64 // how far the box's wall clock is from the real one
	wall := func() time.Time { return time.Now().Round(0).Add(time.Duration(offset.Load())) }
	offset.Store(int64(time.Until(time.Date(1970, 1, 1, 0, 1, 0, 0, time.UTC))))
	cfg := testConfig(peers.FreePort(t), nil, false)
	b := startBox(t, cfg, boxOptions{clockFloor: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), clock: wall})
	status := func() control.Status {
		st, err := b.client.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := status()
	a, ok := alarmWith(st, "the box's clock is not set")
	if !ok {
		t.Fatalf("no alarm for a clock at 1970: %+v", st.Alarms)
	}
	const want = "the box's clock is not set (it reads 1970-01-01 00:01 UTC): received times and the event log's times are wrong; action: let the box reach an NTP server"
	if a.Level != control.LevelWarning || len(a.Message) < len(want) || a.Message[:len(want)] != want {
		t.Fatalf("alarm %+v, want a warning starting %q", a, want)
	}
	if st.Health.Forwarding != control.LevelWarning {
		t.Errorf("forwarding health %q with the clock unset, want warning", st.Health.Forwarding)
	}
	// The monitoring compares the box's clock with its own (RelaisClockOff).
	if v, ok := metricValue(t, b.a, "relais_clock_seconds", nil); !ok || v < 60 || v > 3600 {
		t.Errorf("relais_clock_seconds %v (%v), want the box's clock: a minute or so past 1970", v, ok)
	}

	offset.Store(0) // NTP answers
	waitEvent(t, b.client, "config", "the clock is set: it read 1970-01-01 00:01")
	if _, ok := alarmWith(status(), "clock"); ok {
		t.Fatalf("clock alarm still there once set: %+v", status().Alarms)
	}
	offset.Store(int64(-2 * time.Hour))
	e := waitEvent(t, b.client, "config", "the clock was set back by 2h0m0s")
	if e.Severity != "warning" {
		t.Errorf("set back: severity %q, want warning", e.Severity)
	}
	offset.Store(int64(-time.Hour))
	waitEvent(t, b.client, "config", "the clock was set forward by 1h0m0s")
}

// TestAWaitFromAnUnsetClockIsCountedFromTheStart: a study received while the
// clock read 1970 has not waited 56 years once the clock is set; it has
// waited at least since relaisd started, which is what the health says.
func TestAWaitFromAnUnsetClockIsCountedFromTheStart(t *testing.T) {
	now := time.Now()
	started := now.Add(-10 * time.Minute)
	c := newClockWatch(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), nil)
	if got := c.waited(now.Sub(time.Date(1970, 1, 1, 0, 1, 0, 0, time.UTC)), now, started); got < 10*time.Minute || got > 11*time.Minute {
		t.Errorf("a wait from 1970 is %v, want the 10 min since the start", got)
	}
	if got := c.waited(5*time.Minute, now, started); got != 5*time.Minute {
		t.Errorf("a wait of 5 min is %v", got)
	}
	if got := newClockWatch(time.Time{}, nil).waited(time.Hour, now, started); got != time.Hour {
		t.Errorf("with no floor known a wait of 1h is %v", got)
	}
}
