package appliance

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"golang.org/x/crypto/ssh"

	"github.com/relais/relais/appliance/consolekeys"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/testdata/peers"
)

// fakeConsole stands where relais-ssh listens: it reads the PROXY header,
// answers with the source it names, then echoes; ended gets a value when a
// connection ends.
func fakeConsole(t *testing.T) (addr string, ended <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan struct{}, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { done <- struct{}{} }()
				defer c.Close()
				r := bufio.NewReader(c)
				h, err := proxyproto.Read(r)
				if err != nil {
					fmt.Fprintf(c, "no PROXY header: %v\n", err)
					return
				}
				fmt.Fprintf(c, "from %s\n", h.SourceAddr)
				io.Copy(c, r)
			}()
		}
	}()
	return ln.Addr().String(), done
}

// TestConsoleIsForwardedFromTheTunnelOnly: the tunnel's SSH port is handed
// to the console on loopback, with a PROXY header naming the reading
// center's address and an event saying so; nothing answers that port on
// loopback; when the tunnel's address changes, the forward follows it and
// the connection made through the old tunnel is closed at the console (the
// center's end cannot be told: the old tunnel is gone); with the console down,
// the connection is dropped and the event says why.
func TestConsoleIsForwardedFromTheTunnelOnly(t *testing.T) {
	dir := t.TempDir()
	rc, tunnel, _ := startNetstackCenter(t, dir)
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Tunnel = tunnel
	port := peers.FreePort(t)
	console, ended := fakeConsole(t)
	b := startBox(t, cfg, boxOptions{dir: dir, sshConsole: fmt.Sprintf("tunnel:%d=%s", port, console)})

	dial := func(host string) (net.Conn, *bufio.Reader) {
		t.Helper()
		var c net.Conn
		peers.Eventually(t, 30*time.Second, "the console's port at "+host, func() (bool, string) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			var err error
			c, err = rc.tun.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			return err == nil, fmt.Sprint(err)
		})
		return c, bufio.NewReader(c)
	}
	c, r := dial("10.9.0.2")
	first, _ := r.ReadString('\n')
	if !strings.HasPrefix(first, "from 10.9.0.1:") {
		t.Fatalf("the console heard %q, want the center's address", first)
	}
	fmt.Fprintf(c, "hello\n")
	if echo, _ := r.ReadString('\n'); echo != "hello\n" {
		t.Fatalf("echo %q", echo)
	}
	if _, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second); err == nil {
		t.Fatal("the console's tunnel port answers on loopback")
	}
	waitEvent(t, b.client, "console", "console over SSH: connection from 10.9.0.1")
	if st, err := b.client.Status(context.Background()); err != nil {
		t.Fatal(err)
	} else if a, ok := alarmWith(st, "cannot reach"); ok {
		t.Fatalf("with the console up: %q", a.Message)
	}

	cfg.Tunnel.Address = "10.9.0.3/24"
	if err := b.a.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the connection through the old tunnel is still open at the console")
	}
	c.Close()
	c, r = dial("10.9.0.3")
	if first, _ := r.ReadString('\n'); !strings.HasPrefix(first, "from 10.9.0.1:") {
		t.Fatalf("through the new address, the console heard %q", first)
	}
	c.Close()

	b.stop()
	b = startBox(t, cfg, boxOptions{dir: dir, sshConsole: fmt.Sprintf("tunnel:%d=127.0.0.1:%d", port, peers.FreePort(t))})
	c, r = dial("10.9.0.3")
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := r.ReadString('\n'); err == nil || isTimeout(err) {
		t.Fatalf("with the console down: %v, want the connection closed", err)
	}
	waitEvent(t, b.client, "console", "dropped: the console does not answer on 127.0.0.1:")
	// Found without anyone trying to log in: the health line says so.
	peers.Eventually(t, 30*time.Second, "a tunnel warning that the console does not answer", func() (bool, string) {
		st, err := b.client.Status(context.Background())
		if err != nil {
			return false, err.Error()
		}
		_, ok := alarmWith(st, "cannot reach the console over SSH", "does not answer")
		return ok && st.Health.Tunnel == control.LevelWarning, fmt.Sprintf("tunnel %s, alarms %+v", st.Health.Tunnel, st.Alarms)
	})
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// waitEvent waits for an event of kind whose message holds text.
func waitEvent(t *testing.T, c *control.Client, kind, text string) control.Event {
	t.Helper()
	var found control.Event
	peers.Eventually(t, 10*time.Second, "event "+text, func() (bool, string) {
		es, err := c.Events(context.Background(), control.EventQuery{Kinds: []string{kind}, Limit: 50})
		var msgs []string
		for _, e := range es {
			if strings.Contains(e.Message, text) {
				found = e
				return true, ""
			}
			msgs = append(msgs, e.Message)
		}
		return false, fmt.Sprintf("%v %q", err, msgs)
	})
	return found
}

func newPublicKey(t *testing.T, comment string) (ssh.PublicKey, string) {
	s := peers.SSHKey(t)
	return s.PublicKey(), peers.AuthorizedKey(s, comment)
}

// TestConsoleKeysAreEditedThroughTheControlAPI: the image's keys are in
// force while the box has no list; adding a key makes the box's own list
// (the image's keys kept), owner only; a bad line is refused with the
// reason; events name keys by fingerprint only; a removed key is gone.
func TestConsoleKeysAreEditedThroughTheControlAPI(t *testing.T) {
	image := filepath.Join(t.TempDir(), "console_authorized_keys")
	site, siteLine := newPublicKey(t, "site@build")
	os.WriteFile(image, []byte(siteLine+"\n"), 0o644)
	b := startBox(t, testConfig(peers.FreePort(t), nil, false), boxOptions{consoleKeysImage: image})
	ctx := context.Background()

	keys, err := b.client.ConsoleKeys(ctx)
	if err != nil || keys.From != control.ConsoleKeysImage || len(keys.Keys) != 1 || keys.Keys[0].Fingerprint != ssh.FingerprintSHA256(site) {
		t.Fatalf("before any edit: %+v, %v", keys, err)
	}
	if _, err := b.client.AddConsoleKey(ctx, "ssh-ed25519 not-a-key", "test"); err == nil || !strings.Contains(err.Error(), "not a public key line") {
		t.Fatalf("a bad line: %v", err)
	}
	team, teamLine := newPublicKey(t, "team@center")
	k, err := b.client.AddConsoleKey(ctx, teamLine, "test")
	if err != nil || k.Fingerprint != ssh.FingerprintSHA256(team) || k.Type != "ssh-ed25519" || k.Comment != "team@center" {
		t.Fatalf("add: %+v, %v", k, err)
	}
	if _, err := b.client.AddConsoleKey(ctx, teamLine, "test"); err != nil {
		t.Fatalf("the same key again: %v", err)
	}
	keys, _ = b.client.ConsoleKeys(ctx)
	if keys.From != control.ConsoleKeysBox || len(keys.Keys) != 2 {
		t.Fatalf("after adding: %+v", keys)
	}
	list := filepath.Join(b.dir, consolekeys.File)
	if fi, err := os.Stat(list); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the box's list: %v, mode %v; want 0600", err, fi.Mode())
	}
	allowed, err := b.client.Events(ctx, control.EventQuery{Kinds: []string{"console"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(allowed) != 1 || !strings.Contains(allowed[0].Message, "key "+k.Fingerprint+" (ssh-ed25519, team@center) allowed, by test (console/cli") {
		t.Fatalf("events %+v, want one naming the key and who", allowed)
	}
	if err := b.client.RemoveConsoleKey(ctx, ssh.FingerprintSHA256(site), "test"); err != nil {
		t.Fatal(err)
	}
	if err := b.client.RemoveConsoleKey(ctx, ssh.FingerprintSHA256(site), "test"); err == nil || !strings.Contains(err.Error(), "no such key") {
		t.Fatalf("removing it twice: %v", err)
	}
	files := consolekeys.In(b.dir, image)
	got, _, _ := files.Load()
	if len(got) != 1 || !consolekeys.Allows(got, team) {
		t.Fatalf("the list now: %v", got)
	}
	events, _ := b.client.Events(ctx, control.EventQuery{Kinds: []string{"console"}})
	secret := strings.Fields(teamLine)[1]
	for _, e := range events {
		if strings.Contains(fmt.Sprint(e), secret[20:]) {
			t.Fatalf("an event holds the key itself: %+v", e)
		}
	}
	waitEvent(t, b.client, "console", "key "+ssh.FingerprintSHA256(site)+" (ssh-ed25519, site@build) removed")

	// A list with a bad line is not edited: saving would drop the line unseen.
	os.WriteFile(list, []byte(teamLine+"\nbroken\n"), 0o600)
	if _, err := b.client.AddConsoleKey(ctx, siteLine, "test"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("editing a list with a bad line: %v", err)
	}
	if keys, _ := b.client.ConsoleKeys(ctx); !strings.Contains(keys.Error, "line 2") || len(keys.Keys) != 1 {
		t.Fatalf("a list with a bad line: %+v", keys)
	}
}
