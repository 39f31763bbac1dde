package tui

import (
	"strings"
	"testing"

	"github.com/relais/relais/appliance/consolekeys"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/testdata/peers"
	gossh "golang.org/x/crypto/ssh"
)

// TestConsoleKeysAreAddedAndRemovedInSetup: a pasted line that is not a
// key is refused in the form; a key is allowed once confirmed (relaisd's
// list has it, the screen shows its fingerprint), then removed.
func TestConsoleKeysAreAddedAndRemovedInSetup(t *testing.T) {
	d := startDaemon(t, setUp)
	c := startConsole(t, Options{Socket: d.socket, Where: "tty2"})
	c.press("4")
	c.waitFor("Console keys  none: nobody can open the console over SSH")
	for range int(consoleKeysSection) {
		c.press("down")
	}
	c.press("enter")
	c.waitFor("No list: nobody can log in over SSH.", "+ add a key")
	c.press("enter")
	c.waitFor("paste its line")
	c.press("ssh-ed25519 nonsense", "enter")
	c.waitFor("not a public key line")
	for range len("ssh-ed25519 nonsense") {
		c.press("backspace")
	}
	team := peers.SSHKey(t)
	fp := gossh.FingerprintSHA256(team.PublicKey())
	c.press(peers.AuthorizedKey(team, "team@center"), "enter")
	c.waitFor("Apply now?")
	c.press("enter")
	c.waitFor("done: key "+fp+" allowed", "The box's own list.", "team@center")
	keys, _, err := consolekeys.In(d.dir, "").Load()
	if err != nil || len(keys) != 1 || !consolekeys.Allows(keys, team.PublicKey()) {
		t.Fatalf("relaisd's list: %v, %v", keys, err)
	}
	evs, err := d.api.Events(t.Context(), control.EventQuery{Kinds: []string{"console"}})
	if err != nil || len(evs) != 1 || !strings.Contains(evs[0].Message, "allowed, by console (tty2)") {
		t.Fatalf("events %+v, %v", evs, err)
	}

	c.press("x")
	c.waitFor("Remove key " + fp + " (team@center)?")
	c.press("y")
	c.waitFor("done: key "+fp+" removed", "+ add a key")
	if keys, _, err := consolekeys.In(d.dir, "").Load(); err != nil || len(keys) != 0 {
		t.Fatalf("after removing: %v %v", keys, err)
	}
}
