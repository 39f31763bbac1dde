package tui

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais/relais/appliance"
	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/testdata/peers"
)

// TestConsoleInTmux runs the real `relais console` binary in a real
// terminal (tmux, 80×24, TERM=linux) against a real relaisd: it moves
// between screens with keys, opens the list of keys, allows a caller from
// the dashboard, and sees the dashboard update when that caller sends;
// then, with more alarms than a lower terminal holds, it scrolls to the last.
func TestConsoleInTmux(t *testing.T) {
	tmux := requireTmux(t)
	bin := buildCommand(t, "relais")
	d := startDaemon(t, func(c *config.Config) { c.Modalities = []config.Modality{{AETitle: "CT1"}} })
	term := startTmux(t, tmux, "env TERM=linux "+bin+" -data "+d.dir+" console")

	term.waitFor("1 Dashboard", "nothing received yet")
	term.keys("2")
	term.waitFor("No study received yet.")
	term.keys("3")
	term.waitFor("kind: all", "Relais started")
	term.keys("4")
	term.waitFor("This node", "AE title RELAIS")
	term.keys("1")
	term.waitFor("nothing received yet")
	term.keys("?") // the keys of the screen, in a real terminal; Escape closes them
	term.waitFor("Keys: Dashboard", "Everywhere", "esc back · ? keys · q quit")
	term.keys("Escape")
	term.waitFor("nothing received yet", "? keys · q quit")

	if err := d.send(t, "CT_URG", 2, 7); err == nil {
		t.Fatal("an unknown modality was let in")
	}
	term.waitFor("unknown modality CT_URG (127.0.0.1) tried to send — press a to allow")
	term.keys("a")
	term.waitFor("Allow CT_URG (127.0.0.1) to send to this box?")
	term.keys("y")
	term.waitFor("CT_URG (127.0.0.1) may send now")
	cfg, err := d.api.Config(t.Context())
	if err != nil || !slices.ContainsFunc(cfg.Modalities, func(m config.Modality) bool { return m.AETitle == "CT_URG" }) {
		t.Fatalf("CT_URG not allowed in relaisd's configuration: %v %+v", err, cfg.Modalities)
	}
	if err := d.send(t, "CT_URG", 2, 7); err != nil {
		t.Fatalf("allowed modality: %v", err)
	}
	term.waitFor("last from CT_URG", "2 instance(s)")
	if s := term.screen(); strings.Contains(s, "press a to allow") {
		t.Fatalf("the alarm is still shown:\n%s", s)
	}

	// More alarms than a lower terminal has rows for: six unknown callers
	// (three lines and one for the rest) and no destination. The list
	// says how many, scrolls, and reaches the last.
	for i := range 6 {
		if out, err := peers.DCMTK(t, "echoscu", "-aet", fmt.Sprintf("US%d", i+1), "-aec", "RELAIS", "127.0.0.1", strconv.Itoa(d.port)); err == nil {
			t.Fatalf("echoscu from an unknown AE title was answered:\n%s", out)
		}
	}
	term.run("resize-window", "-t", "console", "-y", "20")
	term.waitFor("Alarms (5)", "› ! no destination configured", "more below · ↑/↓ to scroll")
	term.keys("End")
	screen := term.waitFor("Alarms (5)", "more above", "› ! and 3 other callers tried to send")
	if strings.Contains(screen, "more below") || len(strings.Split(strings.TrimRight(screen, "\n"), "\n")) > 20 {
		t.Fatalf("at the last alarm, 80×20:\n%s", screen)
	}
	term.keys("q")
	term.waitForExit()
}

// TestWizardFromAFreshBoxToAVerifiedEchoInTmux is the technician's first
// start, with the real binaries: relaisd on an empty data folder (its
// embedded defaults), a real Orthanc as the reading center, and `relais
// console` in tmux 80×24. The wizard is offered unasked; the test keeps this
// node, skips the modality, types Orthanc's AE title, address and port,
// skips the tunnel, the network and retention, and the wizard's echo of
// Orthanc succeeds on screen. It logs how many keystrokes that took.
func TestWizardFromAFreshBoxToAVerifiedEchoInTmux(t *testing.T) {
	tmux := requireTmux(t)
	peers.Require(t, "Orthanc")
	relaisd, relais := buildCommand(t, "relaisd"), buildCommand(t, "relais")
	center := peers.StartOrthanc(t, peers.OrthancOptions{})

	dir := t.TempDir()
	port := peers.FreePort(t)
	started := time.Now()
	peers.Start(t, relaisd, "-data", dir, "-port", strconv.Itoa(port), "-listen", "127.0.0.1")
	peers.WaitForPort(t, port)
	term := startTmux(t, tmux, "env TERM=linux "+relais+" -data "+dir+" console")

	term.waitFor("This box is not set up yet. Start the setup wizard?")
	term.keys("y")
	term.waitFor("step 1 of 7: This node", "AE title")
	term.keys("Enter", "Enter") // AE title RELAIS and the port, as they are
	term.waitFor("step 2 of 7: Modality allowed to send")
	term.keys("Enter") // no modality yet
	term.waitFor("step 3 of 7: New destination", "Name")
	term.keys("Enter", center.AET, "Enter") // the name "center", then Orthanc's AE title
	term.waitFor("┃ Address")
	term.keys("127.0.0.1", "Enter")
	term.waitFor("┃ Port")
	term.keys("C-u", strconv.Itoa(center.DICOM), "Enter")
	term.waitFor("The reading center must register this box:", "AE title RELAIS, address 127.0.0.1, port "+strconv.Itoa(port))
	term.keys("Enter", "Enter") // storage commitment yes, a reading center
	term.waitFor("Apply now?")
	term.keys("Enter")
	term.waitFor("step 4 of 7: the tunnel", "p paste its text")
	term.keys("n")
	term.waitFor("step 5 of 7: Network")
	term.keys("Enter") // DHCP, as it is
	term.waitFor("step 6 of 7: Retention")
	term.keys("Enter", "Enter", "Enter")
	screen := term.waitFor("Setup wizard done:", "Destinations  set: center (ORTHANC at 127.0.0.1:"+strconv.Itoa(center.DICOM)+")",
		"echo "+center.AET+" at "+center.Addr()+": answered in")
	t.Logf("fresh box to a verified echo of Orthanc: %d keystrokes, %s (relaisd started to echo shown)", term.keystrokes.Load(), time.Since(started).Round(100*time.Millisecond))

	cfg, err := control.NewClient(appliance.SocketPath(dir)).Config(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := config.Destination{Name: "center", AETitle: center.AET, Host: "127.0.0.1", Port: center.DICOM, Commitment: true}
	if len(cfg.Destinations) != 1 || !destinationIs(cfg.Destinations[0], want) {
		t.Fatalf("relaisd's destinations %+v, want %+v; screen:\n%s", cfg.Destinations, want, screen)
	}
	if len(cfg.Modalities) != 0 {
		t.Errorf("a skipped modality step added %+v", cfg.Modalities)
	}
	term.keys("q")
	term.waitForExit()
}

func destinationIs(d, want config.Destination) bool {
	return d.Name == want.Name && d.AETitle == want.AETitle && d.Host == want.Host && d.Port == want.Port &&
		d.Commitment == want.Commitment && len(d.Only.CallingAETitles) == 0
}

func requireTmux(t *testing.T) string {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("tmux is not installed (.ci/run installs it): skipping the real-terminal test")
	}
	return tmux
}

// buildCommand builds the project's cmd/name for this test.
func buildCommand(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/relais/relais/cmd/"+name).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, out)
	}
	return bin
}

// tmuxTerm is a program in a tmux session of its own, 80×24; it counts the
// keystrokes sent to it.
type tmuxTerm struct {
	t          *testing.T
	tmux       string
	server     string
	keystrokes atomic.Int64
}

var tmuxServers atomic.Int64

func startTmux(t *testing.T, tmux, command string) *tmuxTerm {
	term := &tmuxTerm{t: t, tmux: tmux, server: fmt.Sprintf("relais-test-%d-%d", os.Getpid(), tmuxServers.Add(1))}
	term.run("-f", "/dev/null", "new-session", "-d", "-s", "console", "-x", "80", "-y", "24", command)
	t.Cleanup(func() { exec.Command(tmux, "-L", term.server, "kill-server").Run() })
	return term
}

func (term *tmuxTerm) run(args ...string) string {
	term.t.Helper()
	out, err := exec.Command(term.tmux, append([]string{"-L", term.server}, args...)...).CombinedOutput()
	if err != nil {
		term.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (term *tmuxTerm) screen() string { return term.run("capture-pane", "-p", "-t", "console") }

// waitFor waits until the screen shows every text, and returns it.
func (term *tmuxTerm) waitFor(texts ...string) string {
	term.t.Helper()
	return waitForScreen(term.t, "tmux", term.screen, texts...)
}

// keys sends each argument: a tmux key name (Enter, C-u...) as one
// keystroke, any other text literally, one keystroke per character.
func (term *tmuxTerm) keys(keys ...string) {
	term.t.Helper()
	for _, k := range keys {
		if tmuxKeyNames[k] {
			term.run("send-keys", "-t", "console", k)
			term.keystrokes.Add(1)
		} else {
			term.run("send-keys", "-t", "console", "-l", k)
			term.keystrokes.Add(int64(len([]rune(k))))
		}
	}
}

var tmuxKeyNames = map[string]bool{"Enter": true, "Escape": true, "BSpace": true, "Tab": true, "Up": true, "Down": true, "End": true, "C-u": true}

func (term *tmuxTerm) waitForExit() {
	term.t.Helper()
	peers.Eventually(term.t, 30*time.Second, "the console to quit", func() (bool, string) {
		err := exec.Command(term.tmux, "-L", term.server, "has-session", "-t", "console").Run()
		return err != nil, "session still there"
	})
}
