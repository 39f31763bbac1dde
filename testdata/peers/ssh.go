package peers

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"os/exec"
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

// Terminal is a console seen through a terminal: an SSH session in a pty,
// or a program (OpenSSH's ssh -tt), its output collected as plain text.
type Terminal struct {
	t     testing.TB
	stdin io.Writer
	wait  func() error
	mu    sync.Mutex
	out   bytes.Buffer
}

// OpenSSHTerminal starts a shell in a pty (80×24, TERM linux) on c; it is
// closed when the test ends.
func OpenSSHTerminal(t testing.TB, c *ssh.Client) *Terminal {
	t.Helper()
	return OpenSSHTerminalSized(t, c, 80, 24)
}

// OpenSSHTerminalSized is OpenSSHTerminal with a pty of width×height.
func OpenSSHTerminalSized(t testing.TB, c *ssh.Client, width, height int) *Terminal {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	s := &Terminal{t: t, wait: sess.Wait}
	sess.Stdout = s
	if s.stdin, err = sess.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestPty("linux", height, width, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	return s
}

// StartTerminal runs cmd with its output collected and its input typed; it
// is killed if still running when the test ends.
func StartTerminal(t testing.TB, cmd *exec.Cmd) *Terminal {
	t.Helper()
	s := &Terminal{t: t, wait: cmd.Wait}
	cmd.Stdout, cmd.Stderr = s, s
	var err error
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return s
}

func (s *Terminal) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}

// Screen is everything shown so far, without escape sequences.
func (s *Terminal) Screen() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ansi.Strip(s.out.String())
}

// WaitFor waits until text was shown.
func (s *Terminal) WaitFor(what, text string) {
	s.t.Helper()
	Eventually(s.t, 30*time.Second, what, func() (bool, string) {
		screen := s.Screen()
		return strings.Contains(screen, text), screen
	})
}

// Quit types keys (the console's "q") and waits for the end.
func (s *Terminal) Quit(keys string) {
	s.t.Helper()
	s.stdin.Write([]byte(keys))
	if err := s.wait(); err != nil {
		s.t.Fatalf("the terminal ended with %v:\n%s", err, s.Screen())
	}
}
