// Package guard is the update guard gokrazy lacks: after an update reboot it
// judges relaisd from outside — as gokrazy supervises it, and through its
// control socket and DICOM port — marks the new image good if it works, and
// switches back to the previous root partition if it does not.
//
// gokrazy keeps two root partitions; gok update writes the inactive one,
// switches the boot loader to it and reboots, with no way back on its own,
// and restarts a crashing program every second forever. The guard runs as
// its own program (cmd/relais-guard), so a relaisd that panics in init is
// judged too. It tells an update reboot by the running image's identity
// (root partition and SBOM hash, bootcount.Image) differing from the image
// it last marked good (counter.go). Verify (judge.go) then watches relaisd's
// starts (a crash loop is N starts within M seconds) and runs the health
// checks (checks.go), until a verdict: good, or a switch back through
// gokrazy's local API and a reboot. Deadlines count from the boot.
//
// Two counters keep it from ever rebooting in a loop, and from depending on
// itself: Begin counts the guard's own starts on an image under trial (a
// guard crashing half-way switches back at its next starts), and the boot
// counter (package bootcount, its own tiny program) switches back an image
// on which the guard could not run at all. Nothing here touches the store.
package guard

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/relais/relais/appliance/gokrazy"
	"github.com/relais/relais/appliance/guard/bootcount"
)

// Image identifies a booted system image (see bootcount.Image).
type Image = bootcount.Image

// Where gokrazy tells which image runs.
const (
	CmdlinePath = bootcount.CmdlinePath
	SBOMPath    = bootcount.SBOMPath
)

// RunningImage identifies the image this process runs on.
func RunningImage() (Image, error) { return bootcount.RunningImage() }

// State is what the guard found or decided.
type State string

const (
	// Found by Begin:
	First  State = "first"  // no image marked good yet (fresh box): this one is
	Known  State = "known"  // the image marked good
	Trial  State = "trial"  // a new image: Verify must pass, or it is left
	Stuck  State = "stuck"  // an image already switched away from runs again: no more switching
	Broken State = "broken" // the image could not be identified or the record read: the guard stands aside

	// Decided:
	Good       State = "good"        // the checks passed: marked good
	RolledBack State = "rolled-back" // switched to the previous image and rebooting
	Unhealthy  State = "unhealthy"   // the checks failed on a stuck image, or switching or rebooting failed: left running
)

// Report is a decision.
type Report struct {
	State  State
	Image  Image  // the running image
	Good   *Image // the image marked good (after the decision)
	Reason string // why, for a rollback or a failure
	// Verdict is set by a decision on an update (Good, RolledBack,
	// Unhealthy), and by Begin when it finds a verdict relaisd has not
	// logged yet (one made before a rollback).
	Verdict *Verdict
}

func (r Report) String() string {
	s := fmt.Sprintf("update guard: %s, image %s", r.State, r.Image)
	if r.Reason != "" {
		s += ": " + r.Reason
	}
	return s
}

// Service is the program the guard judges (relaisd), as gokrazy supervises
// it: gokrazy.Supervised on the box.
type Service interface {
	Name() string
	Status(ctx context.Context) (gokrazy.Service, error)
	// Output is the last lines the program wrote (gokrazy keeps 100).
	Output(ctx context.Context) ([]string, error)
}

// Config sets up a Guard. Zero values take the defaults.
type Config struct {
	// Dir holds the record and the boot counter; on the box
	// /perm/relais/guard.
	Dir string
	// API switches and reboots (gokrazy.LocalAPI on the box); required.
	API API
	// Service is the program judged; without one, only the checks judge.
	Service Service
	// Image identifies the running image; default RunningImage.
	Image func() (Image, error)
	// Booted is when the box booted: the deadlines count from it (default:
	// when New was called).
	Booted time.Time
	// CrashStarts starts of the service within CrashWindow are a crash
	// loop: the image is switched back at once (default 5 in 30 s).
	CrashStarts int
	CrashWindow time.Duration
	// CrashDeadline: a service that restarted at all and has not passed
	// its checks by then is switched back (default 2 minutes after boot).
	CrashDeadline time.Duration
	// Deadline bounds the checks after an update (default 3 minutes after
	// boot).
	Deadline time.Duration
	// Stable is how long the service must run without a restart before the
	// image is good (default 10 s).
	Stable time.Duration
	// Poll is how often gokrazy is asked for the service's state (default
	// 500 ms: gokrazy restarts a program one second after it ends).
	Poll time.Duration
	// Retry is the pause between rounds of failed checks (default 5 s).
	Retry time.Duration
	// MaxStarts is how many times the guard may start on an image under
	// trial without a verdict; the next start switches back without
	// checking (default 3).
	MaxStarts int
	// OnVerdict, if set, is called with every verdict once it is recorded
	// and before a rollback reboots, to tell relaisd and the status page.
	OnVerdict func(Verdict)
	Logger    *slog.Logger
	// Now stamps the record; default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Image == nil {
		c.Image = RunningImage
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Booted.IsZero() {
		c.Booted = c.Now()
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.CrashWindow, 30 * time.Second}, {&c.CrashDeadline, 2 * time.Minute}, {&c.Deadline, 3 * time.Minute},
		{&c.Stable, 10 * time.Second}, {&c.Poll, 500 * time.Millisecond}, {&c.Retry, 5 * time.Second}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.CrashStarts == 0 {
		c.CrashStarts = 5
	}
	if c.MaxStarts == 0 {
		c.MaxStarts = 3
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Guard decides whether the running image stays. Its methods may be called
// from several goroutines; they are serialized.
type Guard struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	state State // from Begin, updated by Verify
	img   Image
	rec   *record
}

// New returns a guard; it reads nothing until Begin.
func New(cfg Config) *Guard {
	cfg = cfg.withDefaults()
	return &Guard{cfg: cfg, log: cfg.Logger.With("part", "guard")}
}

// Begin identifies the running image and counts this start of the guard.
// On an image under trial on which the guard started MaxStarts times
// already, it switches back and reboots at once (State RolledBack).
func (g *Guard) Begin(ctx context.Context) Report {
	g.mu.Lock()
	defer g.mu.Unlock()
	img, err := g.cfg.Image()
	if err != nil {
		return g.standAside(img, err)
	}
	g.img = img
	rec, err := loadRecord(g.cfg.Dir)
	if err != nil {
		return g.standAside(img, err)
	}
	g.rec = rec
	g.takeCounterRollback()
	now := g.cfg.Now()
	switch {
	case rec.Good == nil:
		g.state = First
		rec.Good, rec.GoodSince = &img, now
		g.settle(First)
		return g.decide(First, "no image marked good yet: this one is, as installed")
	case *rec.Good == img:
		g.state = Known
		g.settle(Known)
		if rec.Trial == nil && len(rec.Rejected) == 0 {
			return g.withPending(g.report(Known, ""))
		}
		// Back on the good image after a rollback (or a trial image was
		// replaced before it finished): its record is done with.
		reason := fmt.Sprintf("back on the good image; left behind: %d image(s)", len(rec.Rejected)+trialLeft(rec, img))
		rec.Trial, rec.Rejected = nil, nil
		return g.withPending(g.decide(Known, reason))
	case rec.rejected(img):
		g.state = Stuck
		return g.decide(Stuck, "this image was switched away from, yet it runs again: not switching again")
	}
	if rec.Trial == nil || rec.Trial.Image != img {
		rec.Trial = &trial{Image: img}
	}
	rec.Trial.Starts++
	g.state = Trial
	if rec.Trial.Starts > g.cfg.MaxStarts {
		return g.rollback(ctx, fmt.Sprintf("the update guard started %d times on this image without a verdict", rec.Trial.Starts-1), nil)
	}
	// The counter must be on disk before anything can crash.
	return g.decide(Trial, fmt.Sprintf("new image (guard start %d of %d); previous good image %s", rec.Trial.Starts, g.cfg.MaxStarts, *rec.Good))
}

func trialLeft(rec *record, img Image) int {
	if rec.Trial != nil && rec.Trial.Image != img && !rec.rejected(rec.Trial.Image) {
		return 1
	}
	return 0
}

// takeCounterRollback turns a switch back made by the boot counter (the
// guard could not run on that image) into the last verdict.
func (g *Guard) takeCounterRollback() {
	rb, err := bootcount.TakeRollback(g.cfg.Dir)
	if err != nil {
		g.log.Warn("boot counter not read", "err", err)
	}
	if rb == nil || rb.Image == g.img {
		return
	}
	g.rec.Last = &Verdict{Entry: Entry{At: rb.At, Image: rb.Image, State: RolledBack, Reason: "by the boot counter: " + rb.Reason}, Running: g.img}
	g.rec.note(g.rec.Last.Entry)
}

// withPending adds the last verdict to a report on the good image while
// relaisd has not logged it.
func (g *Guard) withPending(r Report) Report {
	if v := g.rec.Last; v != nil && !v.Reported {
		v := *v
		v.Running = g.img
		r.Verdict = &v
	}
	return r
}

// Last returns the last verdict on an update, if any.
func (g *Guard) Last() *Verdict {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.rec == nil || g.rec.Last == nil {
		return nil
	}
	v := *g.rec.Last
	return &v
}

// Reported records that relaisd logged the last verdict: it is not logged
// again.
func (g *Guard) Reported() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.rec == nil || g.rec.Last == nil || g.rec.Last.Reported {
		return nil
	}
	g.rec.Last.Reported = true
	return g.rec.save(g.cfg.Dir)
}

// Baseline runs the checks marked IfHealthyBefore (until each passes or the
// deadline ends) and, on the good image, records which passed: such a check
// is required after the next update only if it passed here.
func (g *Guard) Baseline(ctx context.Context, checks []Check) {
	checks = slices.DeleteFunc(slices.Clone(checks), func(c Check) bool { return !c.IfHealthyBefore })
	if len(checks) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, g.cfg.Deadline)
	res := runChecks(cctx, checks, g.cfg.Retry)
	cancel()
	if ctx.Err() != nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state != Known && g.state != First && g.state != Good {
		return
	}
	g.rec.Baseline = map[string]bool{}
	for _, c := range checks {
		g.rec.Baseline[c.Name] = res[c.Name] == nil
	}
	g.rec.BaselineAt = g.cfg.Now()
	if err := g.rec.save(g.cfg.Dir); err != nil {
		g.log.Warn("baseline not recorded", "err", err)
		return
	}
	g.log.Debug("baseline recorded", "baseline", g.rec.Baseline)
}

// Required returns the names of the IfHealthyBefore checks that passed at
// the last baseline (the destinations that answered before the update).
func (g *Guard) Required() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var names []string
	if g.rec != nil {
		for n, ok := range g.rec.Baseline {
			if ok {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	return names
}

// History returns the last decisions, oldest first.
func (g *Guard) History() []Entry {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.rec == nil {
		return nil
	}
	return slices.Clone(g.rec.History)
}

// rollback switches to the previous root partition and reboots. The image
// is recorded as rejected only once the switch is done, so a failed switch
// is tried again at the next start, and a switch that did not take is not.
func (g *Guard) rollback(ctx context.Context, reason string, output []string) Report {
	g.log.Error("switching back to the previous image", "image", g.img, "reason", reason)
	if g.cfg.API == nil {
		return g.verdict(Unhealthy, reason+"; cannot switch back: no gokrazy API", output)
	}
	if err := g.cfg.API.Switch(ctx); err != nil {
		return g.verdict(Unhealthy, reason+"; switching back failed: "+err.Error(), output)
	}
	g.rec.Trial = nil
	g.rec.Rejected = append(g.rec.Rejected, g.img)
	g.state = RolledBack
	rep := g.verdict(RolledBack, reason, output)
	// Once switched, the reboot is asked for even if the guard is being
	// stopped meanwhile: the verdict is told, the bad image must not stay.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := g.cfg.API.Reboot(rctx); err != nil {
		// The boot loader points at the previous image already: the next
		// reboot, whatever its cause, goes there. Until then this one runs.
		return g.decide(Unhealthy, reason+"; switched back, but the reboot failed: "+err.Error())
	}
	return rep
}

// verdict records a decision on an update as the last verdict, settles the
// boot counter and tells OnVerdict.
func (g *Guard) verdict(s State, reason string, output []string) Report {
	running := g.img
	if s == RolledBack && g.rec.Good != nil {
		running = *g.rec.Good
	}
	v := &Verdict{Entry: Entry{At: g.cfg.Now(), Image: g.img, State: s, Reason: reason}, Running: running, Output: output}
	g.rec.Last = v
	rep := g.decide(s, reason)
	g.settle(s)
	rep.Verdict = v
	if g.cfg.OnVerdict != nil {
		g.cfg.OnVerdict(*v)
	}
	return rep
}

// settle tells the boot counter that the guard ran and decided on this
// image.
func (g *Guard) settle(s State) {
	if err := bootcount.Settle(g.cfg.Dir, g.img, string(s)); err != nil {
		g.log.Error("boot counter not settled", "err", err)
	}
}

// decide records a decision (synced before anything else happens) and
// reports it. A record that cannot be written is logged: the decision
// stands, and the counter errs on the side of checking again.
func (g *Guard) decide(s State, reason string) Report {
	g.rec.note(Entry{At: g.cfg.Now(), Image: g.img, State: s, Reason: reason})
	if err := g.rec.save(g.cfg.Dir); err != nil {
		g.log.Error("guard record not written", "err", err)
		reason += " (record not written: " + err.Error() + ")"
	}
	return g.report(s, reason)
}

func (g *Guard) report(s State, reason string) Report {
	r := Report{State: s, Image: g.img, Reason: reason}
	if g.rec != nil && g.rec.Good != nil {
		good := *g.rec.Good
		r.Good = &good
	}
	return r
}

func (g *Guard) locked(f func() Report) Report {
	g.mu.Lock()
	defer g.mu.Unlock()
	return f()
}

// standAside disables the guard for this run: without knowing the image or
// its history, any switch could be wrong.
func (g *Guard) standAside(img Image, err error) Report {
	g.state = Broken
	g.log.Error("update guard disabled", "err", err)
	return Report{State: Broken, Image: img, Reason: err.Error()}
}

func names(checks []Check) []string {
	n := make([]string, len(checks))
	for i, c := range checks {
		n[i] = c.Name
	}
	return n
}

// API is what the guard asks of gokrazy to go back to the previous image.
type API interface {
	// Switch makes the inactive root partition the one to boot next. After
	// an update reboot, the inactive partition holds the image from before.
	Switch(ctx context.Context) error
	// Reboot restarts the machine. gokrazy stops the services (relaisd gets
	// SIGTERM) and unmounts /perm first.
	Reboot(ctx context.Context) error
}
