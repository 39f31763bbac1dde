package tui

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/relais/relais/appliance"
	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/testdata/peers"
	"github.com/relais/relais/vpn"
)

// centerWGQuick is a wg-quick file as the regional team sends it, with a
// private key the box must ignore (WireGuard's documentation keys).
const centerWGQuick = `[Interface]
PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
Address = 10.8.0.2/24

[Peer]
PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
Endpoint = vpn.example.org:51820
AllowedIPs = 10.8.0.0/24
PersistentKeepalive = 25
`

// TestWizardOfferedWhenTheConsoleStartsFirst starts the console before
// relaisd, as at boot on the box: the wizard is offered as soon as relaisd
// answers, without a key pressed. Then it walks the wizard skipping every
// step (the tunnel's after a pasted wg-quick file fills its form), and
// compares the offer, the tunnel step, the paste, the filled form and the
// summary with testdata/.
func TestWizardOfferedWhenTheConsoleStartsFirst(t *testing.T) {
	dir := t.TempDir()
	c := startConsole(t, Options{Socket: appliance.SocketPath(dir)})
	c.waitFor("waiting for relaisd…", "daemon not answering")
	d := startDaemonIn(t, dir, nil, nil)

	check := func(name string, texts ...string) {
		t.Helper()
		s := c.waitFor(texts...)
		fits(t, s)
		t.Run(name, func(t *testing.T) { golden.RequireEqual(t, normalize(s, d.port)) })
	}
	check("offered", "This box is not set up yet. Start the setup wizard?", "nothing received yet")
	c.press("y")
	c.waitFor("Setup wizard, step 1 of 7: This node", "AE title")
	c.press("enter", "enter") // kept as they are: nothing to apply
	c.waitFor("Setup wizard, step 2 of 7: Modality allowed to send", "empty Enter adds none")
	c.press("enter")
	c.waitFor("Setup wizard, step 3 of 7: New destination", "Name")
	c.press("enter", "enter") // the name, then no AE title: no destination
	check("tunnel-step", "Setup wizard, step 4 of 7: the tunnel", "p paste its text", "n skip this step")
	c.press("p")
	c.waitFor("Paste the wg-quick file the regional team sent")
	c.tm.Send(tea.PasteMsg{Content: centerWGQuick})
	check("paste", "PersistentKeepalive = 25")
	c.press("enter")
	check("tunnel-form", "Setup wizard, step 4 of 7: Tunnel to the reading center", "vpn.example.org:51820",
		"the file's PrivateKey was ignored: this box keeps its own")
	for range 5 {
		c.press("enter")
	}
	c.waitFor("Apply now?")
	c.press("n") // not now
	c.waitFor("Setup wizard, step 5 of 7: Network", "DHCP")
	c.press("esc")
	c.waitFor("Stop the setup wizard?")
	c.press("n")
	c.waitFor("Setup wizard, step 5 of 7: Network")
	c.press("enter")
	c.waitFor("Setup wizard, step 6 of 7: Retention")
	c.press("enter", "enter", "enter")
	check("done", "Setup wizard done; no reading center to echo:", "Retention     not changed")

	cfg, err := d.api.Config(t.Context())
	if err != nil || len(cfg.Modalities) != 0 || len(cfg.Destinations) != 0 || cfg.Tunnel.PeerPublicKey != "" {
		t.Fatalf("skipped steps changed the configuration: %+v %v", cfg, err)
	}
}

// TestWizardDeclinedSaysOnceHowToStartIt: "not now" says where the wizard
// is, and the question is not asked again when the configuration is read
// again.
func TestWizardDeclinedSaysOnceHowToStartIt(t *testing.T) {
	d := startDaemon(t, nil)
	c := startConsole(t, Options{Socket: d.socket})
	c.waitFor("Start the setup wizard?")
	c.press("n")
	c.waitFor("The setup wizard is on Setup: press 4, then w, to run it later.")
	c.press("4")
	c.waitFor("Modalities    none allowed yet")
	c.press("5", "4")
	s := c.waitFor("Modalities    none allowed yet")
	if strings.Contains(s, "Start the setup wizard?") || strings.Contains(s, "press 4, then w") {
		t.Fatalf("asked or told again:\n%s", s)
	}
	c.press("w")
	c.waitFor("Setup wizard, step 1 of 7: This node")
	c.press("esc")
	c.waitFor("Stop the setup wizard?")
	c.press("y")
	c.waitFor("Setup wizard stopped; what was applied stays. Press w on Setup to run it again.")
}

// TestPastedPresharedKeyIsKeptUnseen: a pasted wg-quick file's
// PresharedKey is never on screen, and once the values are confirmed
// relaisd holds it (and the file's values); its PrivateKey is not kept.
func TestPastedPresharedKeyIsKeptUnseen(t *testing.T) {
	const psk = "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE="
	endpoint := fmt.Sprintf("127.0.0.1:%d", peers.FreePort(t)) // nothing answers: the tunnel only starts
	text := strings.Replace(centerWGQuick, "PersistentKeepalive = 25", "PresharedKey = "+psk+"\nPersistentKeepalive = 25", 1)
	text = strings.Replace(text, "vpn.example.org:51820", endpoint, 1)
	d := startDaemon(t, func(c *config.Config) { c.Tunnel.Mode = "netstack" }) // no privileges, no device
	c := startConsole(t, Options{Socket: d.socket})
	c.waitFor("Start the setup wizard?")
	c.press("n", "4")
	c.waitFor("Tunnel        not configured")
	c.press("down", "down", "down", "enter")
	c.waitFor("p paste its text")
	c.press("p")
	c.waitFor("Paste the wg-quick file")
	c.tm.Send(tea.PasteMsg{Content: text})
	s := c.waitFor("# PresharedKey kept aside, not shown", "# PrivateKey taken out")
	c.press("enter")
	s += c.waitFor("its PresharedKey is not shown; relaisd keeps it", endpoint)
	for range 5 {
		c.press("enter")
	}
	s += c.waitFor("Apply now?")
	c.press("enter")
	s += c.waitFor("done: tunnel settings: saved and applied")
	if strings.Contains(s, psk) || strings.Contains(s, "yAnz5TF") {
		t.Fatalf("a secret key was shown:\n%s", s)
	}

	got, err := vpn.LoadPresharedKey(filepath.Join(d.dir, "wireguard"))
	want, _ := vpn.ParseSecretKey(psk)
	if err != nil || got == nil || *got != want {
		t.Fatalf("relaisd's preshared key: %v %v", got != nil, err)
	}
	info, err := d.api.Tunnel(t.Context())
	tc := info.Config
	if err != nil || tc.PeerPublicKey != "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=" || tc.Endpoint != endpoint || tc.Address != "10.8.0.2/24" || tc.Mode != "netstack" {
		t.Fatalf("relaisd's tunnel %+v (%v)", tc, err)
	}
	if info.Status.PublicKey == "" || strings.Contains(info.Status.PublicKey, "xTIBA5") {
		t.Fatalf("the box's own key changed: %q", info.Status.PublicKey)
	}
}
