package main

// The guard's decisions, program and all, against fakes: gokrazy's local
// API on a unix socket (gokrazytest), relaisd's control socket, and its SCP
// on loopback. Each test is a box across boots: /perm (the guard's record,
// relaisd's data folder) persists, the running image changes.

import (
	"bytes"
	"context"
	"encoding/json"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/appliance/gokrazy"
	"github.com/relais/relais/appliance/gokrazy/gokrazytest"
	"github.com/relais/relais/appliance/guard"
	"github.com/relais/relais/appliance/guard/bootcount"
)

var (
	imageA = guard.Image{Root: "PARTUUID=2e18c40c-02", SBOM: "aaaaaaaaaa11"}
	imageB = guard.Image{Root: "PARTUUID=2e18c40c-03", SBOM: "bbbbbbbbbb22"}
)

const relaisd = "/user/relaisd"

// fakeRelaisd is relaisd's control socket, and its SCP on loopback.
type fakeRelaisd struct {
	mu       sync.Mutex
	status   control.Status
	echoOK   bool // destinations answer
	verdicts []control.GuardVerdict
}

func (f *fakeRelaisd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.Method + " " + r.URL.Path {
	case "GET /v1/status":
		json.NewEncoder(w).Encode(f.status)
	case "POST /v1/events/guard":
		var v control.GuardVerdict
		json.NewDecoder(r.Body).Decode(&v)
		f.verdicts = append(f.verdicts, v)
		w.Write([]byte("{}"))
	case "POST /v1/actions/echo":
		json.NewEncoder(w).Encode(control.EchoResult{Target: "PACS@10.8.0.1:104", OK: f.echoOK, Status: "refused"})
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeRelaisd) Verdicts() []control.GuardVerdict {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.verdicts)
}

func (f *fakeRelaisd) set(change func(*control.Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(&f.status)
}

// testBox is a Relais box across boots.
type testBox struct {
	t       *testing.T
	data    string // relaisd's data folder on /perm
	init    *gokrazytest.Init
	api     *gokrazy.LocalAPI
	running guard.Image
	ctl     *http.Server // relaisd's control socket, while it runs
}

// reboot boots img: relaisd's control socket is gone until a relaisd
// serves it again, and gokrazy's output starts afresh.
func (b *testBox) reboot(img guard.Image) {
	if b.ctl != nil {
		b.ctl.Close()
		b.ctl = nil
	}
	b.running = img
	b.init.Update(relaisd, func(s *gokrazytest.Service) { s.Stderr = nil })
}

func newTestBox(t *testing.T) *testBox {
	data, err := os.MkdirTemp("", "rg") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })
	f := &gokrazytest.Init{}
	return &testBox{t: t, data: data, init: f, api: gokrazytest.Serve(t, f), running: imageA}
}

// healthy starts a relaisd that works: its control socket, its SCP (AE
// RELAIS on a loopback port), the tunnel up, one destination.
func (b *testBox) healthy() *fakeRelaisd {
	t := b.t
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&dimse.Server{Policy: &dimse.StaticPolicy{CalledAETitles: []string{"RELAIS"}}}).Serve(ctx, ln)
	}()
	t.Cleanup(func() { cancel(); <-done })
	f := &fakeRelaisd{echoOK: true, status: control.Status{
		AETitle: "RELAIS", Port: ln.Addr().(*net.TCPAddr).Port,
		Tunnel:       control.Tunnel{State: "up"},
		Destinations: []control.DestinationStatus{{Name: "center"}},
	}}
	b.serveControl(f)
	b.init.Start(relaisd, "level=INFO msg=\"relaisd started\"")
	return f
}

// serveControl serves f on the control socket (replacing the last one).
func (b *testBox) serveControl(f http.Handler) {
	sock := filepath.Join(b.data, control.SocketName)
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.t.Fatal(err)
	}
	srv := &http.Server{Handler: f}
	go srv.Serve(ln)
	b.t.Cleanup(func() { srv.Close() })
	if b.ctl != nil {
		b.ctl.Close()
	}
	b.ctl = srv
}

// crashLoop has gokrazy start relaisd every interval, each run writing
// lines and dying, until the test ends.
func (b *testBox) crashLoop(interval time.Duration, lines ...string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			b.init.Start(relaisd, lines...)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	b.t.Cleanup(func() { cancel(); <-done })
}

// lockedBuffer is the guard's stdout.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// verdicts are the verdict lines printed so far (make update's view).
func (l *lockedBuffer) verdicts() []control.Update {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []control.Update
	for line := range strings.Lines(l.b.String()) {
		if j, ok := strings.CutPrefix(strings.TrimSpace(line), VerdictPrefix); ok {
			var u control.Update
			if json.Unmarshal([]byte(j), &u) == nil {
				out = append(out, u)
			}
		}
	}
	return out
}

func testOptions(data string) options {
	o := defaultOptions()
	o.data = data
	o.crashStarts, o.crashWindow, o.crashDeadline, o.deadline = 5, 3*time.Second, 2*time.Second, 3*time.Second
	o.stable, o.poll, o.retry, o.every, o.post = 200*time.Millisecond, 10*time.Millisecond, 50*time.Millisecond, 20*time.Millisecond, time.Second
	return o
}

// boot runs the guard for one boot of the running image until done says
// the test has seen enough (or 10 s), then stops it as a reboot would.
func (b *testBox) boot(done func(out *lockedBuffer) bool) *lockedBuffer {
	b.t.Helper()
	out := &lockedBuffer{}
	var logs strings.Builder
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	running := b.running
	go func() {
		exited <- run(ctx, testOptions(b.data), box{api: b.api, image: func() (guard.Image, error) { return running, nil }, booted: time.Now(), stdout: out, log: logger})
	}()
	deadline := time.Now().Add(60 * time.Second) // a bound for a hung boot, not a measure
	for !done(out) {
		if time.Now().After(deadline) {
			cancel()
			<-exited
			logMu.Lock()
			defer logMu.Unlock()
			b.t.Fatalf("boot of %s: what the test waits for did not come in 60 s; stdout:\n%s\nstderr:\n%s", running.Short(), out.b.String(), logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if code := <-exited; code != exitStopped {
		b.t.Fatalf("exit code %d, want %d", code, exitStopped)
	}
	return out
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// decided waits for a verdict line other than "checking".
func decided(out *lockedBuffer) bool {
	v := out.verdicts()
	return len(v) > 0 && v[len(v)-1].State != UpdateChecking
}

// told waits until relaisd has n verdicts.
func told(f *fakeRelaisd, n int) func(*lockedBuffer) bool {
	return func(*lockedBuffer) bool { return len(f.Verdicts()) >= n }
}

func last(out *lockedBuffer) control.Update {
	v := out.verdicts()
	return v[len(v)-1]
}

var rollbackCalls = []string{"POST /update/switch", "POST /reboot"}

// wantRolledBack checks the last verdict printed: rolled back, saying why,
// and gokrazy asked to switch and reboot.
func wantRolledBack(t *testing.T, b *testBox, out *lockedBuffer, why string) control.Update {
	t.Helper()
	u := last(out)
	if u.State != control.UpdateRolledBack || !strings.Contains(u.Message, why) {
		t.Fatalf("verdict %q, want rolled back: …%s…", u.Message, why)
	}
	wantCalls(t, b, rollbackCalls...)
	return u
}

// wantCalls checks the calls made to gokrazy, giving the last (a reboot
// follows the verdict) a moment to arrive.
func wantCalls(t *testing.T, b *testBox, want ...string) {
	t.Helper()
	got := b.init.Calls()
	for deadline := time.Now().Add(20 * time.Second); len(got) < len(want) && time.Now().Before(deadline); got = b.init.Calls() {
		time.Sleep(10 * time.Millisecond)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("gokrazy API calls %q, want %q", got, want)
	}
}

// installed is a box running image A, marked good, with its baseline (the
// tunnel up, the destination answering) noted; then updated to B.
func installed(t *testing.T) (*testBox, *fakeRelaisd) {
	b := newTestBox(t)
	a := b.healthy()
	b.boot(func(*lockedBuffer) bool {
		rec, err := os.ReadFile(filepath.Join(b.data, "guard", guard.RecordFile))
		return err == nil && strings.Contains(string(rec), `"center center": true`) && strings.Contains(string(rec), `"tunnel": true`)
	})
	wantCalls(t, b)
	b.reboot(imageB) // gok update wrote the other root partition and rebooted
	return b, a
}

// backOnA reboots into image A after a rollback, relaisd healthy there, and
// returns what relaisd was told.
func backOnA(t *testing.T, b *testBox) control.GuardVerdict {
	b.reboot(imageA)
	a := b.healthy()
	b.boot(told(a, 1))
	v := a.Verdicts()[0]
	if !v.Log || v.State != control.UpdateRolledBack || v.Running != imageA.Short() || v.Image != imageB.Short() {
		t.Fatalf("relaisd on A was told %+v", v)
	}
	return v
}

func TestGoodUpdateIsMarkedGoodAndSaysWhichImageRuns(t *testing.T) {
	b, _ := installed(t)
	f := b.healthy()
	out := b.boot(told(f, 1))
	u := last(out)
	if u.State != control.UpdateGood || !strings.Contains(u.Message, "update to bbbbbbbbbb is good") || !strings.Contains(u.Message, "bbbbbbbbbb runs") {
		t.Fatalf("verdict %+v", u)
	}
	if v := f.Verdicts()[0]; !v.Log || v.Message != u.Message {
		t.Fatalf("relaisd was told %+v", v)
	}
	wantCalls(t, b)
	for _, c := range []string{"control", "store", "scp", "tunnel", "center center"} {
		if !strings.Contains(u.Message, c) {
			t.Errorf("verdict %q does not name check %q", u.Message, c)
		}
	}
}

func TestCrashInInitIsRolledBackWithItsPanic(t *testing.T) {
	b, _ := installed(t)
	// relaisd panics in init: no control socket, gokrazy restarts it.
	b.crashLoop(100*time.Millisecond, "panic: relaisd: flag provided but not defined: -metrics", "", "goroutine 1 [running]:", "main.init.0()")
	start := time.Now()
	out := b.boot(decided)
	u := last(out)
	if u.State != control.UpdateRolledBack || !strings.Contains(u.Message, "update to bbbbbbbbbb rolled back: relaisd crashed 4 times in") ||
		!strings.HasSuffix(u.Message, "panic: relaisd: flag provided but not defined: -metrics") {
		t.Fatalf("verdict %q", u.Message)
	}
	t.Logf("crash loop judged after %v", time.Since(start).Round(time.Millisecond)) // a figure, not an assertion
	if !slices.Contains(u.Output, "main.init.0()") {
		t.Errorf("output %q: want the panic's last lines", u.Output)
	}
	wantCalls(t, b, rollbackCalls...)
	backOnA(t, b)
}

func TestExitAtStartIsRolledBack(t *testing.T) {
	b, _ := installed(t)
	b.crashLoop(100*time.Millisecond, `time=2026-12-01T10:00:00Z level=ERROR msg="relaisd cannot start" err="store: open /perm/relais/store: permission denied"`)
	u := wantRolledBack(t, b, b.boot(decided), "relaisd crashed 4 times in")
	if !strings.HasSuffix(u.Message, `level=ERROR msg="relaisd cannot start" err="store: open /perm/relais/store: permission denied"`) {
		t.Fatalf("verdict %q does not end with relaisd's last words", u.Message)
	}
}

func TestExitThatGokrazyDoesNotRestartIsRolledBack(t *testing.T) {
	b, _ := installed(t)
	b.init.Start(relaisd, `level=ERROR msg="relaisd cannot work on this box" err="no /perm"`, "gokrazy: process should not be supervised, stopping")
	b.init.Update(relaisd, func(s *gokrazytest.Service) { s.Stopped = true }) // exit 125
	wantRolledBack(t, b, b.boot(decided), "relaisd exited and gokrazy does not restart it: level=ERROR")
}

func TestSCPNotAnsweringIsRolledBackAtTheDeadline(t *testing.T) {
	b, _ := installed(t)
	f := b.healthy()
	// The SCP's port accepts and then says nothing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	f.set(func(s *control.Status) { s.Port = ln.Addr().(*net.TCPAddr).Port })
	start := time.Now()
	// relaisd on B answers its control socket: the verdict reaches it too.
	out := b.boot(func(o *lockedBuffer) bool { return decided(o) && told(f, 1)(o) })
	u := last(out)
	if u.State != control.UpdateRolledBack || !strings.Contains(u.Message, "health checks failed within 3s of boot: scp: ") {
		t.Fatalf("verdict %q", u.Message)
	}
	// Judged at the deadline, not before it (how long after is the machine's load).
	if d := time.Since(start); d < 3*time.Second {
		t.Errorf("judged after %v, before the 3 s deadline", d)
	} else {
		t.Logf("judged %v after the boot began (deadline 3 s)", d.Round(time.Millisecond))
	}
	wantCalls(t, b, rollbackCalls...)
	if v := f.Verdicts(); len(v) != 1 || v[0].State != control.UpdateRolledBack {
		t.Fatalf("relaisd on B told %+v, want the roll-back", v)
	}
}

func TestStoreNotOpeningIsRolledBack(t *testing.T) {
	b, _ := installed(t)
	f := b.healthy()
	f.set(func(s *control.Status) { s.StoreError = "badger: manifest has unsupported version: 9" })
	wantRolledBack(t, b, b.boot(decided), "store: relaisd's store cannot be read: badger: manifest")
}

func TestTunnelDownWhenItWasUpIsRolledBack(t *testing.T) {
	b, _ := installed(t)
	f := b.healthy()
	f.set(func(s *control.Status) {
		s.Tunnel = control.Tunnel{State: "down", Error: "handshake did not complete after 5 attempts"}
	})
	wantRolledBack(t, b, b.boot(decided), "tunnel: tunnel down: handshake did not complete")
}

// What was down on the good image is not required after the update.
func TestTunnelAndCenterDownBeforeAreNotRequired(t *testing.T) {
	b := newTestBox(t)
	f := b.healthy()
	f.echoOK = false
	f.set(func(s *control.Status) { s.Tunnel = control.Tunnel{State: "down"} })
	b.boot(func(*lockedBuffer) bool {
		rec, _ := os.ReadFile(filepath.Join(b.data, "guard", guard.RecordFile))
		return strings.Contains(string(rec), `"tunnel": false`) && strings.Contains(string(rec), `"center center": false`)
	})
	b.reboot(imageB)
	f = b.healthy()
	f.echoOK = false
	f.set(func(s *control.Status) { s.Tunnel = control.Tunnel{State: "down"} })
	out := b.boot(decided)
	if u := last(out); u.State != control.UpdateGood {
		t.Fatalf("verdict %q", u.Message)
	}
	wantCalls(t, b)
}

func TestCenterThatAnsweredBeforeIsRequired(t *testing.T) {
	b, _ := installed(t)
	f := b.healthy()
	f.echoOK = false
	out := b.boot(decided)
	if u := last(out); u.State != control.UpdateRolledBack || !strings.Contains(u.Message, "center center: C-ECHO to center (PACS@10.8.0.1:104): refused") {
		t.Fatalf("verdict %q", u.Message)
	}
}

// The guard is missing from image B (or cannot run at all): the boot
// counter reboots once, switches back at the next boot, and the guard on
// image A tells relaisd why.
func TestGuardMissingIsRolledBackByTheBootCounter(t *testing.T) {
	b, _ := installed(t)
	b.healthy() // relaisd B may well work; nobody judges it
	count := func() bootcount.Outcome {
		var logs strings.Builder
		o, err := bootcount.Run(context.Background(), bootcount.Config{
			Dir: filepath.Join(b.data, "guard"), API: b.api, Image: func() (guard.Image, error) { return b.running, nil },
			Wait: 100 * time.Millisecond, Poll: 10 * time.Millisecond, Log: log.New(&logs, "", 0),
		})
		if err != nil {
			t.Fatalf("%v\n%s", err, logs.String())
		}
		return o
	}
	if o := count(); o != bootcount.Rebooted {
		t.Fatalf("first boot of B: %s", o)
	}
	if o := count(); o != bootcount.SwitchedBack {
		t.Fatalf("second boot of B: %s", o)
	}
	wantCalls(t, b, "POST /reboot", "POST /update/switch", "POST /reboot")
	b.reboot(imageA)
	if o := count(); o != bootcount.Nothing {
		t.Fatalf("boot of A: %s", o)
	}
	v := backOnA(t, b)
	if !strings.Contains(v.Message, "update to bbbbbbbbbb rolled back: by the boot counter: the update guard gave no verdict in 1 boot(s) of this image: it could not run") {
		t.Fatalf("relaisd told %q", v.Message)
	}
}
