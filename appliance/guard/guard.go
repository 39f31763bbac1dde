// Package guard is the update guard gokrazy lacks: after an update reboot it
// checks that the box still works, marks the new image good if it does, and
// switches back to the previous root partition if it does not.
//
// gokrazy keeps two root partitions; gok update writes the inactive one,
// switches the boot loader to it and reboots, with no way back on its own.
// The guard tells an update reboot by the running image's identity (root
// partition and SBOM hash, image.go) differing from the image it last marked
// good (counter.go). It then runs relaisd's health checks (checks.go) for a
// bounded time; on failure it asks gokrazy's local API to switch and reboot
// (gokrazyapi.go). A boot counter and the list of images it switched away
// from keep it from ever rebooting in a loop. Nothing here touches the store.
//
// relaisd calls Begin as it starts, before it opens the store (so a new
// binary that cannot even start is counted), then Verify once its services
// run, then Watch for as long as it runs.
package guard

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

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

// Report is a decision, for relaisd's event log and the console.
type Report struct {
	State  State
	Image  Image  // the running image
	Good   *Image // the image marked good (after the decision)
	Reason string // why, for a rollback or a failure
}

func (r Report) String() string {
	s := fmt.Sprintf("update guard: %s, image %s", r.State, r.Image)
	if r.Reason != "" {
		s += ": " + r.Reason
	}
	return s
}

// Config sets up a Guard. Zero values take the defaults.
type Config struct {
	// Dir holds the record; on the box /perm/relais/guard.
	Dir string
	// API switches and reboots (gokrazy.LocalAPI on the box); required.
	API API
	// Image identifies the running image; default RunningImage.
	Image func() (Image, error)
	// Deadline bounds the checks after an update (default 10 minutes: the
	// tunnel needs a route, a handshake and the center its own time).
	Deadline time.Duration
	// Retry is the pause between rounds of failed checks (default 5 s).
	Retry time.Duration
	// MaxStarts is how many times relaisd may start on an image under trial
	// without passing; the next start switches back without checking
	// (default 3). It catches a new relaisd that crashes, or a kernel that
	// hangs and is reset by the watchdog.
	MaxStarts int
	Logger    *slog.Logger
	// Now stamps the record; default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Image == nil {
		c.Image = RunningImage
	}
	if c.Deadline == 0 {
		c.Deadline = 10 * time.Minute
	}
	if c.Retry == 0 {
		c.Retry = 5 * time.Second
	}
	if c.MaxStarts == 0 {
		c.MaxStarts = 3
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
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

// Begin identifies the running image and counts this start. On an image
// under trial that has started MaxStarts times already, it switches back and
// reboots at once (State RolledBack): relaisd should then start nothing and
// wait for the SIGTERM of the reboot.
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
	now := g.cfg.Now()
	switch {
	case rec.Good == nil:
		g.state = First
		rec.Good, rec.GoodSince = &img, now
		return g.decide(First, "no image marked good yet: this one is, as installed")
	case *rec.Good == img:
		g.state = Known
		if rec.Trial == nil && len(rec.Rejected) == 0 {
			return g.report(Known, "")
		}
		// Back on the good image after a rollback (or a trial image was
		// replaced before it finished): its record is done with.
		reason := fmt.Sprintf("back on the good image; left behind: %d image(s)", len(rec.Rejected))
		rec.Trial, rec.Rejected = nil, nil
		return g.decide(Known, reason)
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
		return g.rollback(ctx, fmt.Sprintf("relaisd started %d times on this image without passing its health checks", rec.Trial.Starts-1))
	}
	// The counter must be on disk before anything can crash.
	return g.decide(Trial, fmt.Sprintf("new image (start %d of %d); previous good image %s", rec.Trial.Starts, g.cfg.MaxStarts, *rec.Good))
}

// Verify runs the checks if Begin found an image to test (Trial, or Stuck):
// all required ones pass within the deadline → the image is marked Good;
// otherwise it switches back and reboots (RolledBack), or, on a stuck image,
// reports Unhealthy and leaves it running. On the good image it records the
// baseline instead (see Watch) and reports Known.
func (g *Guard) Verify(ctx context.Context, checks []Check) Report {
	g.mu.Lock()
	state, rec := g.state, g.rec
	g.mu.Unlock()
	switch state {
	case Known, First:
		g.Baseline(ctx, checks)
		return g.locked(func() Report { return g.report(state, "") })
	case Trial, Stuck:
	default:
		return g.locked(func() Report { return g.report(state, "") })
	}

	g.mu.Lock()
	var required []Check
	for _, c := range checks {
		if !c.IfHealthyBefore || rec.Baseline[c.Name] {
			required = append(required, c)
		}
	}
	g.mu.Unlock()
	g.log.Info("checking the new image", "image", g.img, "checks", names(required), "deadline", g.cfg.Deadline)
	cctx, cancel := context.WithTimeout(ctx, g.cfg.Deadline)
	res := runChecks(cctx, required, g.cfg.Retry)
	cancel()

	g.mu.Lock()
	defer g.mu.Unlock()
	if failed := res.failed(names(required)); failed != "" {
		if ctx.Err() != nil {
			// relaisd is stopping (a reboot, a restart): no verdict; the
			// next start counts and checks again.
			return g.report(g.state, "checks interrupted: "+ctx.Err().Error())
		}
		if g.state == Stuck {
			return g.decide(Unhealthy, "health checks failed: "+failed)
		}
		return g.rollback(ctx, "health checks failed within "+g.cfg.Deadline.String()+": "+failed)
	}
	g.rec.Good, g.rec.GoodSince = &g.img, g.cfg.Now()
	g.rec.Trial = nil
	g.rec.Rejected = slices.DeleteFunc(g.rec.Rejected, func(i Image) bool { return i == g.img })
	g.state = Known
	return g.decide(Good, "all health checks passed: "+fmt.Sprint(names(required)))
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
	if g.state != Known && g.state != First {
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

// Watch refreshes the baseline every interval until ctx ends, so that the
// baseline is recent when an update comes.
func (g *Guard) Watch(ctx context.Context, checks []Check, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.Baseline(ctx, checks)
		}
	}
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
func (g *Guard) rollback(ctx context.Context, reason string) Report {
	g.log.Error("switching back to the previous image", "image", g.img, "reason", reason)
	if g.cfg.API == nil {
		return g.decide(Unhealthy, reason+"; cannot switch back: no gokrazy API")
	}
	if err := g.cfg.API.Switch(ctx); err != nil {
		return g.decide(Unhealthy, reason+"; switching back failed: "+err.Error())
	}
	g.rec.Trial = nil
	g.rec.Rejected = append(g.rec.Rejected, g.img)
	g.state = RolledBack
	rep := g.decide(RolledBack, reason)
	if err := g.cfg.API.Reboot(ctx); err != nil {
		// The boot loader points at the previous image already: the next
		// reboot, whatever its cause, goes there. Until then this one runs.
		return g.decide(Unhealthy, reason+"; switched back, but the reboot failed: "+err.Error())
	}
	return rep
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
