package main

// relaisd under gokrazy (github.com/gokrazy/gokrazy): what the box needs
// before the services start, and the exit codes its supervisor reads. The
// update guard judges relaisd from outside, as its own program
// (cmd/relais-guard). Everything here is detected at run time, so the same
// binary runs on a workstation, where it does nothing.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/relais/relais/appliance"
	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/gokrazy"
	"github.com/relais/relais/appliance/guard/bootcount"
	"github.com/relais/relais/appliance/netconf"
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

// clockWait bounds the wait for a set clock at boot. relaisd does not wait
// for a default route: the SCP listens on every address at once, and the
// forwarder and the tunnel retry on their own. The clock matters to what
// relaisd records (received-at times, which retention reads; events): a Pi
// has no real-time clock and boots at 1970 until NTP answers, so relaisd
// waits for it there, bounded, for a Pi without network must still receive
// studies. A PC's clock is set from its RTC: no wait.
const clockWait = 60 * time.Second

// clockFloor is a time before which this code cannot have been built: a
// clock earlier than it (a Raspberry Pi boots at 1970) has not been set yet.
var clockFloor = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// onGokrazy reports whether relaisd runs in a gokrazy image (the packer
// writes the SBOM into every image).
func onGokrazy() bool {
	_, err := os.Stat(bootcount.SBOMPath)
	return err == nil
}

// runningImage names the system image for the status and the metrics: the
// first 12 hex digits of its SBOM hash; "" outside gokrazy.
func runningImage() string {
	img, err := bootcount.RunningImage()
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%.12s", img.SBOM)
}

// waitForClock waits (bounded) for a clock after floor on gokrazy, and
// returns at once elsewhere or when the clock is set already.
func waitForClock(ctx context.Context, floor time.Time, log *slog.Logger) {
	if !onGokrazy() {
		return
	}
	if !waitFor(ctx, clockWait, time.Second, func() bool { return time.Now().After(floor) }) {
		log.Warn("clock not set yet; starting anyway, timestamps may be wrong until it is", "now", time.Now(), "floor", floor)
	}
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

// bootNetwork applies a static address from the configuration first
// (gokrazy's DHCP client would wait for a lease that may never come), and returns the applier relaisd uses when the
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
