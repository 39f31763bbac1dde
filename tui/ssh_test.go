package tui

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"github.com/relais/relais/testdata/peers"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"
	"github.com/relais/relais/appliance/config"
	gossh "golang.org/x/crypto/ssh"
)

func newSigner(t *testing.T) gossh.Signer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConsoleOverSSH: a key listed in the data folder gets the console in
// a pty; another key is refused; the host key is kept, owner only.
func TestConsoleOverSSH(t *testing.T) {
	d := startDaemon(t, func(c *config.Config) { c.Modalities = []config.Modality{{AETitle: "CT1"}} })
	team, stranger := newSigner(t), newSigner(t)
	if err := os.WriteFile(filepath.Join(d.dir, AuthorizedKeysFile), gossh.MarshalAuthorizedKey(team.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ServeSSH(ctx, ln, d.dir, Options{Socket: d.socket}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})

	dial := func(s gossh.Signer) (*gossh.Client, error) {
		return gossh.Dial("tcp", ln.Addr().String(), &gossh.ClientConfig{User: "team", Auth: []gossh.AuthMethod{gossh.PublicKeys(s)},
			HostKeyCallback: gossh.InsecureIgnoreHostKey()})
	}
	if c, err := dial(stranger); err == nil {
		c.Close()
		t.Fatal("a key not in console_authorized_keys was let in")
	}
	client, err := dial(team)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if fi, err := os.Stat(filepath.Join(d.dir, HostKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key: %v, mode %v; want 0600", err, fi.Mode())
	}
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var mu sync.Mutex
	var out bytes.Buffer
	sess.Stdout = writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	})
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestPty("linux", 24, 80, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	seen := func(text string) func() (bool, string) {
		return func() (bool, string) {
			mu.Lock()
			s := ansi.Strip(out.String())
			mu.Unlock()
			return strings.Contains(s, text), s
		}
	}
	peers.Eventually(t, 30*time.Second, "the dashboard over SSH", seen("nothing received yet"))
	peers.Eventually(t, 30*time.Second, "the session named in the header", seen("(ssh team@127.0.0.1"))
	stdin.Write([]byte("q"))
	if err := sess.Wait(); err != nil {
		t.Fatalf("session ended with %v", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
