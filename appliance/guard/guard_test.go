package guard

import (
	"context"
	"errors"
	"github.com/relais/relais/appliance/gokrazy"
	"github.com/relais/relais/appliance/gokrazy/gokrazytest"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeGokrazy stands in for gokrazy's local API (the real one runs only
// inside gokrazy): an HTTP server on a unix socket, with gokrazy's Basic
// authentication, recording the calls.
type fakeGokrazy struct {
	mu        sync.Mutex
	calls     []string
	failNext  int // answer this many switches with 500
	refusedPw int // requests with a wrong or missing password
}

func (f *fakeGokrazy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, p, ok := r.BasicAuth(); !ok || u != "gokrazy" || p != gokrazytest.Password {
		f.refusedPw++
		http.Error(w, "invalid username/password", http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "expected a POST request", http.StatusBadRequest)
		return
	}
	if r.URL.Path == "/update/switch" && f.failNext > 0 {
		f.failNext--
		http.Error(w, "cmdline.txt: read-only", http.StatusInternalServerError)
		return
	}
	f.calls = append(f.calls, r.Method+" "+r.URL.RequestURI())
}

func (f *fakeGokrazy) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// startFakeGokrazy serves f on a unix socket and returns a LocalAPI for it.
func startFakeGokrazy(t *testing.T, f *fakeGokrazy) *gokrazy.LocalAPI {
	return gokrazytest.ServeHandler(t, f)
}

// box is a Relais box across reboots: the record folder on /perm and
// gokrazy's API persist, the running image changes with updates.
type box struct {
	t       *testing.T
	dir     string
	api     API
	gokrazy *fakeGokrazy
	running Image
}

var (
	imageA = Image{Root: "PARTUUID=2e18c40c-0000-4000-8000-000000000000/PARTNROFF=1", SBOM: "aaaa"}
	imageB = Image{Root: "PARTUUID=2e18c40c-0000-4000-8000-000000000000/PARTNROFF=2", SBOM: "bbbb"}
)

func newBox(t *testing.T) *box {
	f := &fakeGokrazy{}
	return &box{t: t, dir: filepath.Join(t.TempDir(), "guard"), api: startFakeGokrazy(t, f), gokrazy: f, running: imageA}
}

// start is relaisd starting: a new Guard over the same /perm.
func (b *box) start() (*Guard, Report) {
	g := New(Config{
		Dir:      b.dir,
		API:      b.api,
		Image:    func() (Image, error) { return b.running, nil },
		Deadline: 50 * time.Millisecond,
		Retry:    time.Millisecond,
		Poll:     time.Millisecond,
		Logger:   slog.New(slog.DiscardHandler),
	})
	return g, g.Begin(context.Background())
}

// boot starts relaisd and verifies with checks, as relaisd does.
func (b *box) boot(checks ...Check) (begin, verify Report) {
	g, begin := b.start()
	return begin, g.Verify(context.Background(), checks)
}

func pass(name string) Check {
	return Check{Name: name, Run: func(context.Context) error { return nil }}
}

func fail(name string) Check {
	return Check{Name: name, Run: func(context.Context) error { return errors.New(name + " is down") }}
}

func wantState(t *testing.T, what string, r Report, want State) {
	t.Helper()
	if r.State != want {
		t.Fatalf("%s: state %s, want %s (%s)", what, r.State, want, r)
	}
}

func wantCalls(t *testing.T, b *box, want ...string) {
	t.Helper()
	if got := b.gokrazy.Calls(); !slices.Equal(got, want) {
		t.Fatalf("gokrazy API calls %q, want %q", got, want)
	}
}

var rollbackCalls = []string{"POST /update/switch", "POST /reboot?async=true&kexec=off"}

func TestHealthyUpdateIsMarkedGoodWithoutSwitching(t *testing.T) {
	b := newBox(t)
	begin, verify := b.boot(pass("store"))
	wantState(t, "first boot", begin, First)
	wantState(t, "first boot verify", verify, First)

	b.running = imageB // gok update wrote partition 3 and rebooted
	begin, verify = b.boot(pass("store"), pass("scp"), pass("tunnel"))
	wantState(t, "update boot", begin, Trial)
	wantState(t, "update verify", verify, Good)
	if verify.Good == nil || *verify.Good != imageB {
		t.Fatalf("good image %v, want %v", verify.Good, imageB)
	}
	wantCalls(t, b)

	begin, _ = b.boot(pass("store"))
	wantState(t, "next boot", begin, Known)
	wantCalls(t, b)
}

func TestUnhealthyUpdateSwitchesBackAndRebootsOnce(t *testing.T) {
	b := newBox(t)
	b.boot(pass("store"))

	b.running = imageB
	_, verify := b.boot(pass("store"), fail("scp"), pass("tunnel"))
	wantState(t, "update verify", verify, RolledBack)
	if !strings.Contains(verify.Reason, "scp: scp is down") {
		t.Errorf("reason %q does not say which check failed", verify.Reason)
	}
	wantCalls(t, b, rollbackCalls...)

	b.running = imageA // the switch took: the previous image boots
	g, begin := b.start()
	wantState(t, "boot after rollback", begin, Known)
	wantState(t, "verify after rollback", g.Verify(context.Background(), []Check{pass("store")}), Known)
	wantCalls(t, b, rollbackCalls...)

	h := g.History()
	i := slices.IndexFunc(h, func(e Entry) bool { return e.State == RolledBack })
	if i < 0 || h[i].Image != imageB || !strings.Contains(h[i].Reason, "scp") {
		t.Errorf("history does not record why image B was left: %+v", h)
	}
}

func TestBootCounterSwitchesBackAfterRepeatedStarts(t *testing.T) {
	b := newBox(t)
	b.boot(pass("store"))

	b.running = imageB
	for i := 1; i <= 3; i++ { // relaisd dies before its checks end, 3 times
		_, begin := b.start()
		wantState(t, "start on new image", begin, Trial)
	}
	wantCalls(t, b)
	_, begin := b.start()
	wantState(t, "fourth start", begin, RolledBack)
	wantCalls(t, b, rollbackCalls...)
}

func TestBootCounterStopsALoop(t *testing.T) {
	b := newBox(t)
	b.boot(pass("store"))

	b.running = imageB
	_, verify := b.boot(fail("store"))
	wantState(t, "update verify", verify, RolledBack)
	wantCalls(t, b, rollbackCalls...)

	// The switch did not take: image B boots again, and again.
	for range 5 {
		begin, verify := b.boot(fail("store"))
		wantState(t, "boot on rejected image", begin, Stuck)
		wantState(t, "verify on rejected image", verify, Unhealthy)
	}
	wantCalls(t, b, rollbackCalls...) // never switched or rebooted again

	// Healthy after all (the center came back): it is marked good.
	_, verify = b.boot(pass("store"))
	wantState(t, "stuck image passing", verify, Good)
}

func TestFailedSwitchIsTriedAgainAtNextStart(t *testing.T) {
	b := newBox(t)
	b.boot(pass("store"))
	b.gokrazy.failNext = 1

	b.running = imageB
	_, verify := b.boot(fail("store"))
	wantState(t, "verify with switch failing", verify, Unhealthy)
	wantCalls(t, b)

	begin, verify := b.boot(fail("store"))
	wantState(t, "next start", begin, Trial)
	wantState(t, "next verify", verify, RolledBack)
	wantCalls(t, b, rollbackCalls...)
}

func TestCenterUnreachableBeforeUpdateIsNotRequired(t *testing.T) {
	b := newBox(t)
	center := fail("center")
	center.IfHealthyBefore = true
	b.boot(pass("store"), center) // baseline: the center is down already

	b.running = imageB
	_, verify := b.boot(pass("store"), center)
	wantState(t, "update verify", verify, Good)
	wantCalls(t, b)
}

func TestCenterReachableBeforeUpdateIsRequired(t *testing.T) {
	b := newBox(t)
	up := pass("center")
	up.IfHealthyBefore = true
	b.boot(pass("store"), up)

	b.running = imageB
	down := fail("center")
	down.IfHealthyBefore = true
	_, verify := b.boot(pass("store"), down)
	wantState(t, "update verify", verify, RolledBack)
	wantCalls(t, b, rollbackCalls...)
}

func TestChecksInterruptedByShutdownDecideNothing(t *testing.T) {
	b := newBox(t)
	b.boot(pass("store"))

	b.running = imageB
	g, _ := b.start()
	ctx, cancel := context.WithCancel(context.Background())
	stop := Check{Name: "tunnel", Run: func(context.Context) error { cancel(); return errors.New("no handshake yet") }}
	wantState(t, "interrupted verify", g.Verify(ctx, []Check{stop}), Trial)
	wantCalls(t, b)
}

func TestDamagedRecordDisablesTheGuard(t *testing.T) {
	b := newBox(t)
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, RecordFile), []byte("{\"good\": "), 0o600); err != nil {
		t.Fatal(err)
	}
	b.running = imageB
	begin, verify := b.boot(fail("store"))
	wantState(t, "begin", begin, Broken)
	wantState(t, "verify", verify, Broken)
	wantCalls(t, b)
}

// A guard that starts late in the boot (restarted by gokrazy) still gets
// time to judge before a deadline fails the checks.
func TestDeadlinesLeaveALateGuardTimeToJudge(t *testing.T) {
	boot := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	g := New(Config{Booted: boot, CrashDeadline: 2 * time.Minute, Deadline: 3 * time.Minute})
	crash, checks := g.deadlines(boot.Add(5 * time.Second))
	if !crash.Equal(boot.Add(2*time.Minute)) || !checks.Equal(boot.Add(3*time.Minute)) {
		t.Errorf("on time: %v, %v", crash, checks)
	}
	late := boot.Add(4 * time.Minute)
	crash, checks = g.deadlines(late)
	if !crash.Equal(late.Add(minJudge)) || !checks.Equal(late.Add(minJudge)) {
		t.Errorf("late: %v, %v, want both %v", crash, checks, late.Add(minJudge))
	}
}
