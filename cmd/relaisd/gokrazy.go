package main

// relaisd under gokrazy (github.com/gokrazy/gokrazy): what the box needs
// before the services start, the exit codes its supervisor reads, and the
// update guard (appliance/guard) with relaisd's health checks. Everything
// here is detected at run time, so the same binary runs on a workstation,
// where it does nothing.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/relais/relais/appliance"
	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/appliance/gokrazy"
	"github.com/relais/relais/appliance/guard"
	"github.com/relais/relais/appliance/netconf"
	"github.com/relais/relais/store"
)

// Exit codes, as gokrazy's supervisor reads them (supervise.go): after 0 or
// 125 it leaves relaisd stopped; after any other code it starts it again
// one second later. gokrazy keeps only the last 100 lines of output, so every
// reason to exit is also in the store's event log when the store is open.
const (
	exitStopped  = 0   // stopped on purpose (SIGTERM, a reboot): stay stopped
	exitRestart  = 1   // failed, may work next time (disk, network): restart
	exitDisabled = 125 // cannot work on this box at all: do not restart
	// A flag refused at start (relaisd -port 99999): starting again with
	// the same flags cannot work, so gokrazy leaves relaisd stopped, with
	// the reason as the last line of its output.
	exitBadFlags = exitDisabled
)

// How long relaisd waits at boot before starting its services anyway. A
// modality must not wait long for the box: the SCP needs neither the clock
// nor a route, the forwarder and tunnel retry on their own.
const (
	routeWait = 30 * time.Second
	clockWait = 60 * time.Second
)

// clockFloor is a time before which this code cannot have been built: a
// clock earlier than it (a Raspberry Pi boots at 1970) has not been set yet.
var clockFloor = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// Guard settings: how long the checks may take after an update, and how often
// the baseline (is the reading center reachable now?) is refreshed.
const (
	guardDeadline = 10 * time.Minute
	baselineEvery = 15 * time.Minute
)

// onGokrazy reports whether relaisd runs in a gokrazy image (the packer
// writes the SBOM into every image).
func onGokrazy() bool {
	_, err := os.Stat(guard.SBOMPath)
	return err == nil
}

// updateGuard is the update guard as relaisd runs it.
type updateGuard struct {
	g     *guard.Guard
	begin guard.Report
	log   *slog.Logger
	last  atomic.Pointer[guard.Report] // the latest decision, for the metrics
}

// runningImage names the system image for the status and the metrics: the
// first 12 hex digits of its SBOM hash; "" outside gokrazy.
func runningImage() string {
	img, err := guard.RunningImage()
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%.12s", img.SBOM)
}

// state is the guard's latest decision and last rollback on record, for
// the metrics.
func (u *updateGuard) state() appliance.UpdateGuardState {
	var s appliance.UpdateGuardState
	if r := u.last.Load(); r != nil {
		s.State = string(r.State)
	}
	for _, e := range u.g.History() {
		if e.State == guard.RolledBack {
			s.LastRollback = e.At
		}
	}
	return s
}

// startGokrazy waits (bounded) for a default route and a set clock, then
// begins the update guard, whose record lives in dataDir/guard. Outside
// gokrazy it does nothing and returns nil. Call it before appliance.New, so
// that a new image whose relaisd cannot even open its store is counted.
func startGokrazy(ctx context.Context, dataDir string, log *slog.Logger) *updateGuard {
	if !onGokrazy() {
		return nil
	}
	if !waitFor(ctx, routeWait, time.Second, hasDefaultRoute) {
		log.Warn("no default route yet; starting anyway", "waited", routeWait)
	}
	floor := clockFloorFor(os.Executable)
	if !waitFor(ctx, clockWait, time.Second, func() bool { return time.Now().After(floor) }) {
		log.Warn("clock not set yet; starting anyway, timestamps may be wrong until it is", "now", time.Now(), "floor", floor)
	}
	api, err := gokrazy.NewLocalAPI(gokrazy.LocalSocket, gokrazy.PasswordFile)
	if err != nil {
		log.Error("update guard disabled", "err", err)
		return nil
	}
	g := guard.New(guard.Config{
		Dir:      filepath.Join(dataDir, "guard"),
		API:      api,
		Deadline: guardDeadline,
		Logger:   log,
	})
	u := &updateGuard{g: g, begin: g.Begin(ctx), log: log}
	u.last.Store(&u.begin)
	log.Info(u.begin.String())
	return u
}

// rolledBack reports whether Begin switched back already: relaisd then
// starts nothing and waits for the reboot's SIGTERM.
func (u *updateGuard) rolledBack() bool { return u != nil && u.begin.State == guard.RolledBack }

// run records the start in the appliance's event log, verifies the image and
// then keeps the baseline fresh, until ctx ends. Run it in its own goroutine
// once the appliance runs.
func (u *updateGuard) run(ctx context.Context, a *appliance.Appliance) {
	if u == nil {
		return
	}
	checks := guardChecks(a)
	logReport(a.Store(), u.begin)
	rep := u.g.Verify(ctx, checks)
	u.last.Store(&rep)
	if rep.State != u.begin.State || rep.Reason != "" {
		logReport(a.Store(), rep)
	}
	u.g.Watch(ctx, checks, baselineEvery)
}

// logReport puts a guard decision into the store's event log, which the
// console and the regional team read.
func logReport(st *store.Store, r guard.Report) {
	sev := store.Info
	switch r.State {
	case guard.RolledBack, guard.Unhealthy, guard.Broken:
		sev = store.Error
	case guard.Stuck, guard.Trial:
		sev = store.Warning
	}
	attrs := map[string]string{"image": r.Image.String()}
	if r.Good != nil {
		attrs["good_image"] = r.Good.String()
	}
	_ = st.Log(store.Event{Kind: store.Kind("update"), Severity: sev, Message: r.String(), Attrs: attrs})
}

// guardChecks are relaisd's health checks after an update: the store is
// consistent, the SCP answers C-ECHO on loopback, the tunnel has a
// handshake (when one is configured), and each destination answers C-ECHO
// (required only if it did on the image before).
func guardChecks(a *appliance.Appliance) []guard.Check {
	checks := []guard.Check{
		{Name: "store", Run: func(context.Context) error {
			_, err := a.Store().Stats()
			return err
		}},
		{Name: "scp", Run: func(ctx context.Context) error { return echoSelf(ctx, a) }},
		{Name: "tunnel", Run: func(context.Context) error {
			t := a.Status().Tunnel
			switch t.State {
			case "up", "not configured":
				return nil
			}
			if t.Error != "" {
				return fmt.Errorf("tunnel %s: %s", t.State, t.Error)
			}
			return fmt.Errorf("tunnel %s, no recent handshake", t.State)
		}},
	}
	for _, d := range a.Config().Destinations {
		checks = append(checks, guard.Check{
			Name:            "center " + d.Name,
			IfHealthyBefore: true,
			Run: func(ctx context.Context) error {
				res, err := a.Echo(ctx, control.EchoRequest{Destination: d.Name})
				switch {
				case err != nil:
					return err
				case !res.OK:
					return fmt.Errorf("C-ECHO to %s: %s%s", res.Target, res.Status, res.Error)
				}
				return nil
			},
		})
	}
	return checks
}

// echoSelf sends a C-ECHO to our own SCP on loopback, calling with our own
// AE title.
func echoSelf(ctx context.Context, a *appliance.Appliance) error {
	addr := a.Addr()
	if addr == nil {
		return errors.New("SCP not listening yet")
	}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("SCP listens on %s, not TCP", addr)
	}
	ae := a.Config().AETitle
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	assoc, err := dimse.Dial(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp.Port)), dimse.DialParams{
		CallingAE: ae, CalledAE: ae,
		Proposals: []dimse.Proposal{{AbstractSyntax: dimse.VerificationSOPClass, TransferSyntaxes: []string{dimse.ImplicitVRLittleEndian}}},
	})
	if err != nil {
		return err
	}
	defer assoc.Close()
	status, err := assoc.Echo(ctx)
	if err != nil {
		return err
	}
	if status != dimse.StatusSuccess {
		return fmt.Errorf("C-ECHO on loopback: status %s", status)
	}
	return nil
}

// clockFloorFor is the later of clockFloor and the executable's modification
// time: gokrazy's packer keeps the build time on the files of the root file
// system, so a clock before it has not been set.
func clockFloorFor(executable func() (string, error)) time.Time {
	floor := clockFloor
	if p, err := executable(); err == nil {
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(floor) {
			floor = fi.ModTime()
		}
	}
	return floor
}

// waitFor polls ok every poll until it is true (true) or max has passed or
// ctx ended (false).
func waitFor(ctx context.Context, max, poll time.Duration, ok func() bool) bool {
	if ok() {
		return true
	}
	deadline := time.NewTimer(max)
	defer deadline.Stop()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return ok()
		case <-tick.C:
			if ok() {
				return true
			}
		}
	}
}

// hasDefaultRoute reports whether the kernel has a usable default route,
// IPv4 or IPv6, as gokrazy's WaitFor("net-route") waits for one.
func hasDefaultRoute() bool {
	for _, f := range []struct {
		path  string
		parse func(io.Reader) bool
	}{{"/proc/net/route", defaultRoute4}, {"/proc/net/ipv6_route", defaultRoute6}} {
		r, err := os.Open(f.path)
		if err != nil {
			continue
		}
		found := f.parse(r)
		r.Close()
		if found {
			return true
		}
	}
	return false
}

// Route flags (linux/route.h).
const (
	rtfUp     = 0x1
	rtfReject = 0x200
)

// defaultRoute4 reads /proc/net/route: Iface Destination Gateway Flags
// RefCnt Use Metric Mask …, hexadecimal; a default route has destination
// and mask 0.
func defaultRoute4(r io.Reader) bool {
	return scanRoutes(r, 8, func(f []string) bool {
		return f[1] == "00000000" && f[7] == "00000000" && f[0] != "lo"
	}, 3)
}

// defaultRoute6 reads /proc/net/ipv6_route: destination, prefix length,
// source, prefix length, next hop, metric, refcnt, use, flags, device; a
// default route is ::/0 (the kernel keeps a rejecting one on lo).
func defaultRoute6(r io.Reader) bool {
	return scanRoutes(r, 10, func(f []string) bool {
		return strings.Trim(f[0], "0") == "" && f[1] == "00" && f[9] != "lo"
	}, 8)
}

// scanRoutes finds a line of at least n fields that match and whose flags
// (field flagsAt) say up and not reject.
func scanRoutes(r io.Reader, n int, match func([]string) bool, flagsAt int) bool {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < n || !match(f) {
			continue
		}
		flags, err := strconv.ParseUint(f[flagsAt], 16, 32)
		if err == nil && flags&rtfUp != 0 && flags&rtfReject == 0 {
			return true
		}
	}
	return false
}

// bootNetwork applies a static address from the configuration before
// anything waits for a route (gokrazy's DHCP client would wait for a lease
// that may never come), and returns the applier relaisd uses when the
// technician changes the setting. Outside gokrazy it returns nil: the host
// system owns its network.
func bootNetwork(ctx context.Context, cfgPath string, log *slog.Logger) appliance.NetworkApplier {
	if !onGokrazy() {
		return nil
	}
	api, err := gokrazy.NewLocalAPI(gokrazy.LocalSocket, gokrazy.PasswordFile)
	if err != nil {
		log.Error("network settings disabled", "err", err)
		return nil
	}
	a := netconf.OnGokrazy(api)
	cfg, err := config.Load(cfgPath)
	if err == nil && cfg.Network.Static() {
		if err := a.Apply(ctx, cfg.Network); err != nil {
			log.Error("static network not applied", "err", err)
		} else {
			log.Info("static network applied", "address", cfg.Network.Address, "gateway", cfg.Network.Gateway)
		}
	}
	return a
}
