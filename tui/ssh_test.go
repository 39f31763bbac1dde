package tui

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/consolekeys"
	"github.com/relais/relais/testdata/peers"
	gossh "golang.org/x/crypto/ssh"
)

// setUp makes a box the first-start wizard is not offered on.
func setUp(c *config.Config) { c.Modalities = []config.Modality{{AETitle: "CT1"}} }

// serveSSH serves the console over SSH on loopback until the test ends.
func serveSSH(t *testing.T, d *daemon, s SSH) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ServeSSH(ctx, ln, s, Options{Socket: d.socket}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	return ln.Addr().String()
}

func sshConfig(s gossh.Signer) *gossh.ClientConfig {
	return &gossh.ClientConfig{User: "team", Auth: []gossh.AuthMethod{gossh.PublicKeys(s)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}
}

func allow(t *testing.T, path string, keys ...gossh.Signer) {
	t.Helper()
	var b []byte
	for _, k := range keys {
		b = append(b, gossh.MarshalAuthorizedKey(k.PublicKey())...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestConsoleOverSSH: a key on the list gets the console in a pty; another
// key is refused until it is added (the list is read at each login); the
// host key is kept, owner only.
func TestConsoleOverSSH(t *testing.T) {
	d := startDaemon(t, setUp)
	team, stranger := peers.SSHKey(t), peers.SSHKey(t)
	list := filepath.Join(d.dir, consolekeys.File)
	allow(t, list, team)
	addr := serveSSH(t, d, SSH{DataDir: d.dir})

	if c, err := gossh.Dial("tcp", addr, sshConfig(stranger)); err == nil {
		c.Close()
		t.Fatal("a key not in console_authorized_keys was let in")
	}
	client, err := gossh.Dial("tcp", addr, sshConfig(team))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if fi, err := os.Stat(filepath.Join(d.dir, consolekeys.HostKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key: %v, mode %v; want 0600", err, fi.Mode())
	}
	out := peers.OpenSSHTerminal(t, client)
	out.WaitFor("the dashboard over SSH", "nothing received yet")
	out.WaitFor("the session named in the header", "(ssh team@127.0.0.1")
	out.Quit("q")

	allow(t, list, team, stranger)
	c, err := gossh.Dial("tcp", addr, sshConfig(stranger))
	if err != nil {
		t.Fatalf("a key added to the list while the console runs: %v", err)
	}
	c.Close()
}

// TestConsoleOverSSHTakesTheImageKeysUntilTheBoxHasItsOwn: with no list in
// the data folder, the image's keys log in; once the box has a list, only
// its keys do.
func TestConsoleOverSSHTakesTheImageKeysUntilTheBoxHasItsOwn(t *testing.T) {
	d := startDaemon(t, nil)
	site, team := peers.SSHKey(t), peers.SSHKey(t)
	image := filepath.Join(t.TempDir(), "console_authorized_keys")
	allow(t, image, site)
	addr := serveSSH(t, d, SSH{DataDir: d.dir, ImageKeys: image})
	c, err := gossh.Dial("tcp", addr, sshConfig(site))
	if err != nil {
		t.Fatalf("the image's key: %v", err)
	}
	c.Close()
	allow(t, filepath.Join(d.dir, consolekeys.File), team)
	if c, err := gossh.Dial("tcp", addr, sshConfig(site)); err == nil {
		c.Close()
		t.Fatal("the image's key still logs in once the box has its own list")
	}
	c, err = gossh.Dial("tcp", addr, sshConfig(team))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestConsoleBehindTheForwardNamesTheRealSource: with ProxyProtocol, the
// PROXY header relaisd's forward writes names the session's source, which
// the console's header shows (not loopback's).
func TestConsoleBehindTheForwardNamesTheRealSource(t *testing.T) {
	d := startDaemon(t, setUp)
	team := peers.SSHKey(t)
	allow(t, filepath.Join(d.dir, consolekeys.File), team)
	addr := serveSSH(t, d, SSH{DataDir: d.dir, ProxyProtocol: true})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PROXY TCP4 10.8.0.1 10.8.0.2 40001 22\r\n")
	sc, chans, reqs, err := gossh.NewClientConn(conn, addr, sshConfig(team))
	if err != nil {
		t.Fatal(err)
	}
	client := gossh.NewClient(sc, chans, reqs)
	defer client.Close()
	out := peers.OpenSSHTerminal(t, client)
	out.WaitFor("the center's address in the header", "(ssh team@10.8.0.1:40001)")
	out.Quit("q")
}

// TestConsoleOverSSHWithoutASizeTakes80x24: a pty of 0×0 (ssh -tt with no
// terminal of its own, like a serial line) still gets the dashboard.
func TestConsoleOverSSHWithoutASizeTakes80x24(t *testing.T) {
	d := startDaemon(t, setUp)
	team := peers.SSHKey(t)
	allow(t, filepath.Join(d.dir, consolekeys.File), team)
	client, err := gossh.Dial("tcp", serveSSH(t, d, SSH{DataDir: d.dir}), sshConfig(team))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	out := peers.OpenSSHTerminalSized(t, client, 0, 0)
	out.WaitFor("the dashboard in 80×24", "nothing received yet")
	out.Quit("q")
}
