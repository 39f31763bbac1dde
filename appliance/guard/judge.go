package guard

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/relais/relais/appliance/gokrazy"
)

// outputLines is how many of the failing program's last lines a verdict
// keeps.
const outputLines = 12

// Verify judges an image found under trial by Begin (Trial, or Stuck). It
// watches the service's starts and runs the checks (those marked
// IfHealthyBefore only where they passed on the good image) until:
//   - the service starts CrashStarts times within CrashWindow, or stays
//     stopped (it exited 0 or 125): switched back at once;
//   - it restarted at all and has not passed by CrashDeadline: switched back;
//   - every check passed and the service ran Stable without a restart: Good;
//   - Deadline: switched back, with the checks' last errors.
//
// On a Stuck image a failure is reported Unhealthy and the image left
// running. On the good image Verify records the baseline and reports Known.
// If ctx ends first (a reboot, a stop), there is no verdict: the next start
// counts and judges again.
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
	g.log.Info("judging the new image", "image", g.img, "checks", names(required), "deadline", g.cfg.Deadline)

	state, reason, output := g.judge(ctx, required)
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case ctx.Err() != nil:
		return g.report(g.state, "no verdict: "+ctx.Err().Error())
	case state == Good:
		g.rec.Good, g.rec.GoodSince = &g.img, g.cfg.Now()
		g.rec.Trial = nil
		g.rec.Rejected = slices.DeleteFunc(g.rec.Rejected, func(i Image) bool { return i == g.img })
		g.state = Good
		return g.verdict(Good, reason, nil)
	case g.state == Stuck:
		return g.verdict(Unhealthy, reason, output)
	}
	return g.rollback(ctx, reason, output)
}

// judge runs the checks in a goroutine of its own and watches the service
// until a verdict: Good, or a failure (any other state) with its reason
// and the service's last output.
func (g *Guard) judge(ctx context.Context, checks []Check) (State, string, []string) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	crashDeadline, deadline := g.deadlines(time.Now())
	var (
		mu   sync.Mutex
		last results
		done bool // every check passed
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		cctx, ccancel := context.WithDeadline(ctx, deadline)
		defer ccancel()
		runChecks(cctx, checks, g.cfg.Retry, func(r results) {
			mu.Lock()
			defer mu.Unlock()
			last, done = r, r.failed(names(checks)) == ""
		})
	}()
	checked := func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		if last == nil {
			return false, "no check has ended yet"
		}
		return done, last.failed(names(checks))
	}

	w := &watch{cfg: g.cfg}
	tick := time.NewTicker(g.cfg.Poll)
	defer tick.Stop()
	for {
		now := time.Now()
		if s, reason := w.look(ctx, now); s != "" {
			return s, reason, w.output(ctx)
		}
		ok, failed := checked()
		switch {
		case ok && w.stable(now):
			return Good, fmt.Sprintf("all health checks passed (%s)", strings.Join(names(checks), ", ")), nil
		case !now.Before(crashDeadline) && w.restarts() > 0 && !ok:
			return RolledBack, fmt.Sprintf("%s restarted %d time(s) in %s and did not pass its checks: %s", w.name(), w.restarts(), round(now.Sub(g.cfg.Booted)), w.lastWords(ctx, failed)), w.output(ctx)
		case !now.Before(deadline):
			if ok {
				failed = w.name() + " kept restarting"
			}
			return RolledBack, fmt.Sprintf("health checks failed within %v of boot: %s", g.cfg.Deadline, failed), w.output(ctx)
		}
		select {
		case <-ctx.Done():
			return "", "", nil
		case <-tick.C:
		}
	}
}

// minJudge is the least time the guard takes to judge, whenever it starts:
// a guard restarted late in the boot must still see relaisd and run its
// checks before a deadline can fail them.
const minJudge = 30 * time.Second

// deadlines are the crash and check deadlines for a judgement starting at
// start: counted from the boot, but never sooner than minJudge (or the
// deadline itself, if shorter) after start.
func (g *Guard) deadlines(start time.Time) (crash, checks time.Time) {
	least := func(d time.Duration) time.Time {
		at := g.cfg.Booted.Add(d)
		if floor := start.Add(min(d, minJudge)); at.Before(floor) {
			return floor
		}
		return at
	}
	return least(g.cfg.CrashDeadline), least(g.cfg.Deadline)
}

// watch follows the service's starts as gokrazy reports them.
type watch struct {
	cfg       Config
	lastStart time.Time   // the service's StartTime at the last look
	starts    []time.Time // when the guard saw each start (monotonic)
	stopped   time.Time   // since when gokrazy reports it stopped
	lines     []string    // its output, once read
}

func (w *watch) name() string {
	if w.cfg.Service == nil {
		return "relaisd"
	}
	return w.cfg.Service.Name()
}

// look asks gokrazy once; a non-empty state is a verdict.
func (w *watch) look(ctx context.Context, now time.Time) (State, string) {
	if w.cfg.Service == nil {
		return "", ""
	}
	st, err := w.cfg.Service.Status(ctx)
	switch {
	case errors.Is(err, gokrazy.ErrNotFound):
		return RolledBack, w.name() + " is not in this image"
	case err != nil:
		return "", "" // gokrazy busy; the deadlines still run
	}
	if !st.StartTime.Equal(w.lastStart) {
		w.lastStart = st.StartTime
		w.starts = append(w.starts, now)
	}
	if n, in := w.crashLoop(now); n > 0 {
		return RolledBack, fmt.Sprintf("%s crashed %d times in %s: %s", w.name(), n-1, round(in), w.lastWords(ctx, ""))
	}
	if !st.Stopped {
		w.stopped = time.Time{}
		return "", ""
	}
	if w.stopped.IsZero() {
		w.stopped = now
	}
	// A shutdown stops every service at once, the guard with them: only a
	// service stopped for a while, the guard still running, is a verdict.
	if now.Sub(w.stopped) >= 3*w.cfg.Poll+time.Second {
		return RolledBack, fmt.Sprintf("%s exited and gokrazy does not restart it: %s", w.name(), w.lastWords(ctx, ""))
	}
	return "", ""
}

// crashLoop returns how many starts fell within the crash window, and the
// time between the first and the last, once they are CrashStarts.
func (w *watch) crashLoop(now time.Time) (int, time.Duration) {
	var in []time.Time
	for _, t := range w.starts {
		if now.Sub(t) <= w.cfg.CrashWindow {
			in = append(in, t)
		}
	}
	if len(in) < w.cfg.CrashStarts {
		return 0, 0
	}
	return len(in), in[len(in)-1].Sub(in[0])
}

// restarts is how many times the service started again since the guard
// first looked.
func (w *watch) restarts() int { return max(0, len(w.starts)-1) }

// stable reports whether the service ran Stable since its last start.
func (w *watch) stable(now time.Time) bool {
	if w.cfg.Service == nil {
		return true
	}
	return len(w.starts) > 0 && now.Sub(w.starts[len(w.starts)-1]) >= w.cfg.Stable && w.stopped.IsZero()
}

// output returns the service's last lines (read once).
func (w *watch) output(ctx context.Context) []string {
	if w.lines == nil && w.cfg.Service != nil {
		lines, err := w.cfg.Service.Output(context.WithoutCancel(ctx))
		if err != nil {
			lines = []string{"(output not read: " + err.Error() + ")"}
		}
		if len(lines) > outputLines {
			lines = lines[len(lines)-outputLines:]
		}
		w.lines = lines
	}
	return w.lines
}

// lastWords is the line of the output that says why: a panic, a fatal
// error, else the last line that is not gokrazy's own; fallback when none.
func (w *watch) lastWords(ctx context.Context, fallback string) string {
	lines := w.output(ctx)
	for _, prefix := range []string{"panic: ", "fatal error: ", "level=ERROR "} {
		for i := len(lines) - 1; i >= 0; i-- {
			if j := strings.Index(lines[i], prefix); j >= 0 {
				return strings.TrimSpace(lines[i][j:])
			}
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" && !strings.Contains(l, "gokrazy: ") && !strings.HasPrefix(l, "goroutine ") {
			return l
		}
	}
	if fallback == "" {
		fallback = "no output"
	}
	return fallback
}

// round prints a duration in seconds as people read it: "30 s", "4.2 s".
func round(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return fmt.Sprintf("%d s", int(d.Round(time.Second)/time.Second))
}
