package tui

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/teatest/v2"
	"github.com/relais/relais/appliance"
	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/appliance/part10"
	"github.com/relais/relais/testdata/dcmgen"
	"github.com/relais/relais/testdata/peers"
)

// daemon is a real relaisd running in the test process: real store, real
// DICOM port, real control socket.
type daemon struct {
	dir, socket string
	port        int
	api         *control.Client
}

// startDaemon starts relaisd with the test configuration changed by change.
func startDaemon(t testing.TB, change func(*config.Config)) *daemon {
	t.Helper()
	return startDaemonWith(t, change, nil)
}

// startDaemonWith also lets the test set relaisd's network applier (as on
// the box).
func startDaemonWith(t testing.TB, change func(*config.Config), network appliance.NetworkApplier) *daemon {
	t.Helper()
	return startDaemonIn(t, t.TempDir(), change, network)
}

// startDaemonIn starts relaisd on the data folder dir, whose control
// socket a console may already be trying.
func startDaemonIn(t testing.TB, dir string, change func(*config.Config), network appliance.NetworkApplier) *daemon {
	t.Helper()
	return startDaemonOpts(t, dir, change, func(o *appliance.Options) { o.Network = network })
}

// startDaemonOpts lets the test change relaisd's options.
func startDaemonOpts(t testing.TB, dir string, change func(*config.Config), opts func(*appliance.Options)) *daemon {
	t.Helper()
	d := &daemon{dir: dir, port: peers.FreePort(t)}
	cfg := config.Default()
	cfg.Port = d.port
	if change != nil {
		change(&cfg)
	}
	if err := config.Save(filepath.Join(d.dir, "relais.json"), cfg); err != nil {
		t.Fatal(err)
	}
	o := appliance.Options{
		DataDir:  d.dir,
		Listen:   fmt.Sprintf("127.0.0.1:%d", d.port),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		RetryMin: 100 * time.Millisecond,
		RetryMax: time.Second,
	}
	if opts != nil {
		opts(&o)
	}
	a, err := appliance.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("relaisd stopped with: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("relaisd did not stop within 30 s")
		}
	})
	peers.WaitForPort(t, d.port)
	d.socket = appliance.SocketPath(d.dir)
	d.api = control.NewClient(d.socket)
	return d
}

func (d *daemon) addr() string { return "127.0.0.1:" + strconv.Itoa(d.port) }

// send C-STOREs n generated instances of study seed as a modality.
func (d *daemon) send(t testing.TB, callingAE string, n int, seed uint64) error {
	t.Helper()
	dir := t.TempDir()
	var files []string
	for i := 1; i <= n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("%03d.dcm", i))
		in := dcmgen.Instance{Rows: 16, Columns: 16, InstanceNumber: i, Seed: seed, PatientName: "Martin^Jeanne", StudyDescription: "CT chest"}
		if _, err := in.WriteFile(p); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	assoc, err := dimse.Dial(context.Background(), d.addr(), dimse.DialParams{CallingAE: callingAE, CalledAE: "RELAIS",
		Proposals: []dimse.Proposal{{AbstractSyntax: dcmgen.CTImageStorage, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}}}})
	if err != nil {
		return err
	}
	defer assoc.Close()
	for _, f := range files {
		m, rc, err := part10.OpenDataSet(f)
		if err != nil {
			t.Fatal(err)
		}
		_, err = assoc.Store(context.Background(), dimse.StoreParams{SOPClassUID: m.MediaStorageSOPClassUID,
			SOPInstanceUID: m.MediaStorageSOPInstanceUID, TransferSyntaxUID: m.TransferSyntaxUID}, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return assoc.Release(context.Background())
}

// probe wraps the console to keep its last frame as plain text, for tests
// to read while the program runs.
type probe struct {
	*Model
	mu   sync.Mutex
	last string
}

func (p *probe) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	_, cmd := p.Model.Update(msg)
	return p, cmd
}

func (p *probe) View() tea.View {
	v := p.Model.View()
	p.mu.Lock()
	p.last = ansi.Strip(v.Content)
	p.mu.Unlock()
	return v
}

func (p *probe) screen() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// console runs a console on an 80×24 test terminal.
type console struct {
	t  testing.TB
	tm *teatest.TestModel
	p  *probe
}

func startConsole(t testing.TB, opts Options) *console {
	p := &probe{Model: New(opts)}
	tm := teatest.NewTestModel(t, p, teatest.WithInitialTermSize(80, 24))
	c := &console{t: t, tm: tm, p: p}
	t.Cleanup(func() {
		tm.Quit()
		tm.WaitFinished(t, teatest.WithFinalTimeout(30*time.Second))
	})
	return c
}

// waitFor waits until the screen shows every text.
func (c *console) waitFor(texts ...string) string {
	c.t.Helper()
	return waitForScreen(c.t, "screen", c.p.screen, texts...)
}

// waitForScreen waits until screen shows every text, and returns it.
func waitForScreen(t testing.TB, what string, screen func() string, texts ...string) string {
	t.Helper()
	var s string
	peers.Eventually(t, 30*time.Second, fmt.Sprintf("%s showing %q", what, texts), func() (bool, string) {
		s = screen()
		for _, x := range texts {
			if !strings.Contains(s, x) {
				return false, s
			}
		}
		return true, s
	})
	return s
}

// press sends keys: single characters, or names like enter, esc, tab.
func (c *console) press(keys ...string) {
	for _, k := range keys {
		switch k {
		case "enter":
			c.tm.Send(tea.KeyPressMsg{Code: tea.KeyEnter})
		case "esc":
			c.tm.Send(tea.KeyPressMsg{Code: tea.KeyEscape})
		case "tab":
			c.tm.Send(tea.KeyPressMsg{Code: tea.KeyTab})
		case "down":
			c.tm.Send(tea.KeyPressMsg{Code: tea.KeyDown})
		case "backspace":
			c.tm.Send(tea.KeyPressMsg{Code: tea.KeyBackspace})
		default:
			c.tm.Type(k)
		}
	}
}

// volatile are the parts of a screen that change from run to run: clock
// times, ages, ports, the host's disk.
var volatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d`), "YYYY-MM-DD hh:mm:ss"},
	{regexp.MustCompile(`\d\d-\d\d \d\d:\d\d:\d\d`), "MM-DD hh:mm:ss"},
	{regexp.MustCompile(`\(attempt \d+\)`), "(attempt N)"},
	{regexp.MustCompile(`\d\d:\d\d:\d\d`), "hh:mm:ss"},
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:PORT"},
	{regexp.MustCompile(`(waiting|for|answering \() ?\d[\dhmsµ.]*s\b`), "$1 AGE"},
	{regexp.MustCompile(`Disk( +)\d+ % used · [\d.]+ [kMGT]?B free`), "Disk${1}USED % used · FREE free"},
	{regexp.MustCompile(`(?m)^[█▀▄][█▀▄ ]{29,}`), "[QR code]  "},
	{regexp.MustCompile(`\b[1-9][\d.]* (kB|MB|GB|TB)\b`), "SIZE"},
	{regexp.MustCompile(`[A-Za-z0-9+/]{43}=`), "PUBLIC-KEY"},
	{regexp.MustCompile(`in [\d.]+ ms`), "in RTT ms"},
}

// normalize masks what changes between runs.
func normalize(screen string, ports ...int) string {
	for _, p := range ports {
		screen = regexp.MustCompile(`\b`+strconv.Itoa(p)+`\b`).ReplaceAllString(screen, "PORT")
	}
	lines := strings.Split(screen, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	screen = strings.Join(lines, "\n")
	for _, v := range volatile {
		screen = v.re.ReplaceAllString(screen, v.with)
	}
	return screen
}

// fits checks the screen is at most 80×24.
func fits(t testing.TB, screen string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(screen, "\n"), "\n")
	if len(lines) > 24 {
		t.Errorf("screen has %d lines, more than 24", len(lines))
	}
	for i, l := range lines {
		if w := ansi.StringWidth(l); w > 80 {
			t.Errorf("line %d is %d cells wide: %q", i+1, w, l)
		}
	}
}
