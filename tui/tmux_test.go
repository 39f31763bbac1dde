package tui

import (
	"fmt"
	"github.com/relais/relais/testdata/peers"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relais/relais/appliance/config"
)

// TestConsoleInTmux runs the real `relais console` binary in a real
// terminal (tmux, 80×24, TERM=linux) against a real relaisd: it moves
// between screens with keys, allows a caller from the dashboard, and sees
// the dashboard update when that caller sends.
func TestConsoleInTmux(t *testing.T) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("tmux is not installed (.ci/run installs it): skipping the real-terminal test")
	}
	bin := filepath.Join(t.TempDir(), "relais")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/relais/relais/cmd/relais").CombinedOutput(); err != nil {
		t.Fatalf("build relais: %v\n%s", err, out)
	}
	d := startDaemon(t, func(c *config.Config) { c.Modalities = []config.Modality{{AETitle: "CT1"}} })

	server := fmt.Sprintf("relais-test-%d", os.Getpid())
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(tmux, append([]string{"-L", server}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("-f", "/dev/null", "new-session", "-d", "-s", "console", "-x", "80", "-y", "24",
		"env TERM=linux "+bin+" -data "+d.dir+" console")
	t.Cleanup(func() { exec.Command(tmux, "-L", server, "kill-server").Run() })
	screen := func() string { return run("capture-pane", "-p", "-t", "console") }
	waitFor := func(texts ...string) {
		t.Helper()
		peers.Eventually(t, 30*time.Second, fmt.Sprintf("tmux showing %q", texts), func() (bool, string) {
			s := screen()
			for _, x := range texts {
				if !strings.Contains(s, x) {
					return false, s
				}
			}
			return true, s
		})
	}
	keys := func(k ...string) { run(append([]string{"send-keys", "-t", "console"}, k...)...) }

	waitFor("1 Dashboard", "nothing received yet")
	keys("2")
	waitFor("No study received yet.")
	keys("3")
	waitFor("kind: all", "Relais started")
	keys("4")
	waitFor("This node", "AE title RELAIS")
	keys("1")
	waitFor("nothing received yet")

	if err := d.send(t, "CT_URG", 2, 7); err == nil {
		t.Fatal("an unknown modality was let in")
	}
	waitFor("unknown modality CT_URG (127.0.0.1) tried to send — press a to allow")
	keys("a")
	waitFor("Allow CT_URG (127.0.0.1) to send to this box?")
	keys("y")
	waitFor("CT_URG (127.0.0.1) may send now")
	cfg, err := d.api.Config(t.Context())
	if err != nil || !slices.ContainsFunc(cfg.Modalities, func(m config.Modality) bool { return m.AETitle == "CT_URG" }) {
		t.Fatalf("CT_URG not allowed in relaisd's configuration: %v %+v", err, cfg.Modalities)
	}
	if err := d.send(t, "CT_URG", 2, 7); err != nil {
		t.Fatalf("allowed modality: %v", err)
	}
	waitFor("last from CT_URG", "2 instance(s)")
	if s := screen(); strings.Contains(s, "press a to allow") {
		t.Fatalf("the alarm is still shown:\n%s", s)
	}
	keys("q")
	peers.Eventually(t, 30*time.Second, "the console to quit", func() (bool, string) {
		err := exec.Command(tmux, "-L", server, "has-session", "-t", "console").Run()
		return err != nil, "session still there"
	})
}
