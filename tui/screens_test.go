package tui

import (
	"fmt"
	"testing"
	"time"

	"github.com/charmbracelet/x/exp/golden"
	"github.com/relais/relais/appliance"
	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/testdata/peers"
)

// TestScreensMatchGolden drives the console with keys against a real
// relaisd holding a study for a paused destination and an unknown caller
// knocking, and compares each screen with testdata/ (go test -update
// rewrites them). Clock times, ages, ports and the host's disk are masked.
func TestScreensMatchGolden(t *testing.T) {
	pacs := peers.FreePort(t) // nothing listens there: the destination is paused anyway
	d := startDaemon(t, func(c *config.Config) {
		c.Modalities = []config.Modality{{AETitle: "CT1", Address: "127.0.0.1"}, {AETitle: "MR1", Address: "10.1.2.0/24", Port: 104}}
		c.Destinations = []config.Destination{{Name: "center", AETitle: "PACS", Host: "127.0.0.1", Port: pacs, Commitment: true, Paused: true}}
	})
	if err := d.send(t, "CT1", 3, 1); err != nil {
		t.Fatal(err)
	}
	// The reception is logged when the association ends: wait for it, so
	// the event log's order does not depend on timing.
	peers.Eventually(t, 30*time.Second, "the reception logged", func() (bool, string) {
		evs, err := d.api.Events(t.Context(), control.EventQuery{Kinds: []string{"store"}})
		return err == nil && len(evs) == 1, fmt.Sprint(evs, err)
	})
	if err := d.send(t, "CT_URG", 1, 2); err == nil {
		t.Fatal("an unknown modality was let in")
	}
	// A study is "receiving" for 10 s after its last instance.
	peers.Eventually(t, 30*time.Second, "the study queued", func() (bool, string) {
		ss, err := d.api.Studies(t.Context(), 10)
		return err == nil && len(ss) == 1 && ss[0].State == "queued", describeStudies(ss, err)
	})

	c := startConsole(t, Options{Socket: d.socket})
	check := c.golden(t, d.port, pacs)
	check("dashboard", "unknown modality CT_URG (127.0.0.1) tried to send — press a to allow", "center is paused", "queue 3")
	c.press("2")
	check("studies", "Martin Jeanne", "queued")
	c.press("enter")
	check("timeline", "Timeline", "→ center: 3 waiting")
	c.press("esc", "3")
	check("events", "kind: all", "CT_URG")
	c.press("f", "f", "f")
	check("events-reject", "kind: reject", "CT_URG")
	c.press("esc", "4")
	check("setup", "This node", "AE title RELAIS", "center (PACS", "Network       dhcp", "Console keys  none")
	c.press("down", "down", "enter")
	check("destinations", "+ add a destination", "storage commitment (paused)")
	c.press("enter")
	check("destination-form", "Destination center (a destination's name never changes)", "Storage commitment")
	c.press("esc", "esc", "down", "enter")
	check("tunnel", "This box's public key", "not configured", "endpoint not set")
	c.press("esc", "down", "enter")
	check("network-form", "DHCP")
	c.press("esc", "5")
	check("actions", "Echo center", "Allow caller CT_URG")
}

// TestExplainScreensMatchGolden: a destination that does not answer and an
// unknown caller give long alarms; the dashboard says where to send, ?
// lists the keys, enter shows an alarm and an event in full with their
// technical cause, at 80×24.
func TestExplainScreensMatchGolden(t *testing.T) {
	pacs := peers.FreePort(t) // nothing listens there: connection refused
	d := startDaemonOpts(t, t.TempDir(), func(c *config.Config) {
		c.Modalities = []config.Modality{{AETitle: "CT1", Address: "127.0.0.1"}}
		c.Destinations = []config.Destination{{Name: "center", AETitle: "PACS", Host: "127.0.0.1", Port: pacs}}
	}, func(o *appliance.Options) {
		// One attempt while the test runs: the alarm's text, and so its
		// wrapping, stays the same from run to run.
		o.RetryMin, o.RetryMax = time.Hour, time.Hour
	})
	if err := d.send(t, "CT1", 2, 3); err != nil {
		t.Fatal(err)
	}
	if err := d.send(t, "CT_SCANNER_ROOM3", 1, 4); err == nil {
		t.Fatal("an unknown modality was let in")
	}
	c := startConsole(t, Options{Socket: d.socket})
	check := c.golden(t, d.port, pacs)
	check("dashboard", "Send to     RELAIS at 127.0.0.1 port", "› ! center unreachable for", "unknown modality CT_SCANNER_ROOM3")
	c.press("?")
	check("keys", "Keys: Dashboard", "enter", "details", "Everywhere")
	c.press("esc", "enter")
	check("alarm", "Alarm\n", "is the PACS running, is the port right?", "Technical cause", "connect: connection", "Press r to retry now")
	c.press("esc", "3", "f", "f", "f", "f", "f")
	check("events-retry", "kind: retry", "center unreachable for")
	c.press("enter")
	check("event", "Event", "retry", "is the PACS running, is the port right?", "Technical cause", "connect: connection", "dest")
	c.press("esc")
	c.waitFor("kind: retry")
}

// golden returns a check of screens: once the screen shows every text, it
// fits 80×24 and matches testdata/ under name, with ports masked.
func (c *console) golden(t *testing.T, ports ...int) func(name string, texts ...string) {
	return func(name string, texts ...string) {
		t.Helper()
		s := c.waitFor(texts...)
		fits(t, s)
		t.Run(name, func(t *testing.T) { golden.RequireEqual(t, normalize(s, ports...)) })
	}
}

func describeStudies(ss []control.Study, err error) string {
	if err != nil {
		return err.Error()
	}
	s := ""
	for _, x := range ss {
		s += x.StudyInstanceUID + " " + string(x.State) + "\n"
	}
	return s
}
