package tui

import (
	"context"
	"sync"
	"testing"

	"github.com/relais/relais/appliance/config"
)

// TestSetupValidatesFieldsThenAppliesLive: a bad AE title is refused in the
// form with the reason; a good one, once confirmed, is applied by relaisd.
func TestSetupValidatesFieldsThenAppliesLive(t *testing.T) {
	d, c := setupOfNewBox(t)
	c.press("enter")
	c.waitFor("the called AE title modalities send to")
	for range 6 {
		c.press("backspace")
	}
	c.press("THIS TITLE IS TOO LONG", "enter")
	c.waitFor("is 22 characters long; an AE title has at most 16")
	for range 22 {
		c.press("backspace")
	}
	c.press("HUB", "enter", "enter")
	c.waitFor("Apply now?")
	c.press("enter")
	c.waitFor("done: this node: saved and applied", "AE title HUB")
	cfg, err := d.api.Config(t.Context())
	if err != nil || cfg.AETitle != "HUB" {
		t.Fatalf("relaisd has AE title %q (%v), want HUB", cfg.AETitle, err)
	}
}

// TestNetworkWithoutEndpointSaysNotAvailable: the network form is
// validated, and a daemon without /v1/network gets a plain message.
// recordingNetwork stands in for netconf on the box (tested for real in
// appliance/netconf, in a network namespace): it records what it is asked.
type recordingNetwork struct {
	mu  sync.Mutex
	got []config.Network
}

func (r *recordingNetwork) Apply(_ context.Context, n config.Network) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, n)
	return nil
}

// fillStaticNetwork walks the network form to a static address.
func fillStaticNetwork(c *console) {
	for range 4 {
		c.press("down")
	}
	c.press("enter")
	c.waitFor("DHCP: the network gives one")
	c.press("down", "enter") // static
	c.waitFor("┃ Static address")
	c.press("192.168.1.999/24", "enter")
	c.waitFor("want an address with its network")
	for range 6 {
		c.press("backspace")
	}
	c.press("20/24", "enter")
	c.waitFor("┃ Gateway")
	c.press("192.168.1.1", "enter")
	c.waitFor("┃ DNS servers")
	c.press("192.168.1.1", "enter")
	c.waitFor("Apply now?")
	c.press("enter")
}

func TestNetworkIsSetOnTheBoxOnly(t *testing.T) {
	t.Run("elsewhere", func(t *testing.T) {
		_, c := setupOfNewBox(t)
		c.waitFor("Network       dhcp")
		fillStaticNetwork(c)
		c.waitFor("failed: the network is set on the box only")
	})
	t.Run("on the box", func(t *testing.T) {
		net := &recordingNetwork{}
		d := startDaemonWith(t, nil, net)
		c := startConsole(t, Options{Socket: d.socket})
		c.waitFor("not set up yet")
		c.press("n", "4")
		c.waitFor("Network       dhcp")
		fillStaticNetwork(c)
		c.waitFor("Network       static 192.168.1.20/24")
		net.mu.Lock()
		defer net.mu.Unlock()
		if len(net.got) != 1 || net.got[0].Address != "192.168.1.20/24" || net.got[0].Gateway != "192.168.1.1" || net.got[0].DNS[0] != "192.168.1.1" {
			t.Fatalf("applied %+v", net.got)
		}
	})
}

// setupOfNewBox shows the Setup screen of a box not set up yet, the wizard
// declined.
func setupOfNewBox(t *testing.T) (*daemon, *console) {
	d := startDaemon(t, nil)
	c := startConsole(t, Options{Socket: d.socket})
	c.waitFor("not set up yet")
	c.press("n", "4")
	c.waitFor("AE title RELAIS")
	return d, c
}
