package peers

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"
	"golang.org/x/crypto/ssh"
)

// SSHKey makes an ed25519 key pair for a test: the regional team's, or a
// stranger's.
func SSHKey(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// AuthorizedKey is s's public key as an authorized_keys line, with comment.
func AuthorizedKey(s ssh.Signer, comment string) string {
	line := string(ssh.MarshalAuthorizedKey(s.PublicKey()))
	return line[:len(line)-1] + " " + comment
}

// SSHTerminal is a session in a pty (80×24, TERM linux) on an SSH client,
// its output collected as plain text.
type SSHTerminal struct {
	t     testing.TB
	sess  *ssh.Session
	stdin io.Writer
	mu    sync.Mutex
	out   bytes.Buffer
}

// OpenSSHTerminal starts a shell in a pty on c; it is closed when the test ends.
func OpenSSHTerminal(t testing.TB, c *ssh.Client) *SSHTerminal {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	s := &SSHTerminal{t: t, sess: sess}
	sess.Stdout = s
	if s.stdin, err = sess.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestPty("linux", 24, 80, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *SSHTerminal) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}

// WaitFor waits until text was shown, without escape sequences.
func (s *SSHTerminal) WaitFor(what, text string) {
	s.t.Helper()
	Eventually(s.t, 30*time.Second, what, func() (bool, string) {
		s.mu.Lock()
		screen := ansi.Strip(s.out.String())
		s.mu.Unlock()
		return strings.Contains(screen, text), screen
	})
}

// Quit types keys (the console's "q") and waits for the session to end.
func (s *SSHTerminal) Quit(keys string) {
	s.t.Helper()
	s.stdin.Write([]byte(keys))
	if err := s.sess.Wait(); err != nil {
		s.t.Fatalf("session ended with %v", err)
	}
}
