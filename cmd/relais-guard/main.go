// relais-guard is the update guard of the Relais box (appliance/guard), a
// gokrazy program of its own so that it judges relaisd from outside: a
// relaisd that panics in init, exits at once, or stops answering is
// switched back to the previous image like any other.
//
// It watches relaisd's starts through gokrazy's local API (GET /status and
// /log on /run/gokrazy-http.sock), asks relaisd's control socket for its
// status (the store open, the tunnel), sends a C-ECHO to its SCP on
// loopback, and has relaisd C-ECHO each destination that answered before
// the update. Its verdict goes to relaisd's event log and status (POST
// /v1/events/guard), to stderr (gokrazy's status page), and to stdout as
// one line "verdict {json}", which make update reads through gokrazy's
// /log. A boot on which it cannot run at all is left to relais-bootcount.
//
// Exit codes, as gokrazy reads them: 0 stopped (SIGTERM, a reboot); 125
// cannot work on this box (not on gokrazy, its record damaged): gokrazy
// leaves it stopped; 1 a failure worth retrying (restarted after 1 s; its
// starts on an image under trial are counted).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/gokrazy"
	"github.com/relais/relais/appliance/guard"
)

const (
	exitStopped  = 0
	exitRetry    = 1
	exitDisabled = 125
)

func main() {
	o := defaultOptions()
	flag.StringVar(&o.data, "data", o.data, "relaisd's data folder: its control socket, and the guard's record in guard/")
	flag.StringVar(&o.service, "service", o.service, "the program judged, as gokrazy names it")
	flag.IntVar(&o.crashStarts, "crash-starts", o.crashStarts, "starts within -crash-window that are a crash loop")
	flag.DurationVar(&o.crashWindow, "crash-window", o.crashWindow, "see -crash-starts")
	flag.DurationVar(&o.crashDeadline, "crash-deadline", o.crashDeadline, "after boot: a relaisd that restarted and has not passed its checks by then is switched back")
	flag.DurationVar(&o.deadline, "deadline", o.deadline, "after boot: the checks must pass by then")
	flag.DurationVar(&o.baselineEvery, "baseline-every", o.baselineEvery, "how often, on a good image, the guard notes which destinations answer")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if _, err := os.Stat(guard.SBOMPath); err != nil {
		log.Info("not on gokrazy: nothing to guard")
		os.Exit(exitDisabled)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	api, err := gokrazy.NewLocalAPI(gokrazy.LocalSocket, gokrazy.PasswordFile)
	if err != nil {
		log.Error("no gokrazy API", "err", err)
		os.Exit(exitRetry)
	}
	os.Exit(run(ctx, o, box{api: api, image: guard.RunningImage, booted: bootTime(), stdout: os.Stdout, log: log}))
}

// options are the guard's settings (flags).
type options struct {
	data, service                        string
	crashStarts                          int
	crashWindow, crashDeadline, deadline time.Duration
	stable, poll, retry, every           time.Duration // not flags: tests shorten them
	baselineEvery                        time.Duration
	post                                 time.Duration // bound of a request to relaisd
}

func defaultOptions() options {
	return options{
		data: "/perm/relais", service: "relaisd",
		crashStarts: 5, crashWindow: 30 * time.Second, crashDeadline: 2 * time.Minute, deadline: 3 * time.Minute,
		stable: 10 * time.Second, poll: 500 * time.Millisecond, retry: 5 * time.Second, every: 5 * time.Second,
		baselineEvery: 15 * time.Minute, post: 5 * time.Second,
	}
}

// bootTime is when the box booted (deadlines count from it), from
// /proc/uptime; now if that cannot be read.
func bootTime() time.Time {
	now := time.Now()
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return now
	}
	var up float64
	if _, err := fmt.Sscan(string(b), &up); err != nil {
		return now
	}
	return now.Add(-time.Duration(up * float64(time.Second)))
}

// box is what the guard uses of the box, faked in tests.
type box struct {
	api    *gokrazy.LocalAPI
	image  func() (guard.Image, error)
	booted time.Time
	stdout io.Writer // the verdict lines, for make update
	log    *slog.Logger
}

// run is the guard for this boot; it returns the exit code.
func run(ctx context.Context, o options, b box) int {
	ctl := control.NewClient(filepath.Join(o.data, control.SocketName))
	svc := supervised{api: b.api, path: gokrazy.ServicePath(o.service)}
	t := &teller{ctl: ctl, svc: svc, stdout: b.stdout, log: b.log, bound: o.post}
	g := guard.New(guard.Config{
		Dir: filepath.Join(o.data, "guard"), API: b.api, Service: svc, Image: b.image, Booted: b.booted,
		CrashStarts: o.crashStarts, CrashWindow: o.crashWindow, CrashDeadline: o.crashDeadline, Deadline: o.deadline,
		Stable: o.stable, Poll: o.poll, Retry: o.retry,
		OnVerdict: t.print, Logger: b.log,
	})
	begin := g.Begin(ctx)
	b.log.Info(begin.String())
	switch begin.State {
	case guard.Broken:
		return exitDisabled
	case guard.RolledBack:
		<-ctx.Done() // gokrazy is rebooting the box
		return exitStopped
	case guard.Trial, guard.Stuck:
		t.checking(begin.Image)
		g.Verify(ctx, checks(ctl, g.Required()))
	default:
		if v := g.Last(); v != nil {
			t.print(*v) // for make update and the status page, at every boot
		}
	}
	if ctx.Err() == nil {
		keep(ctx, o, g, t, ctl)
	}
	return exitStopped
}
