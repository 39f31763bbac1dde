// relaisd is the daemon of the Relais box: it receives studies over DICOM,
// keeps them in its store and forwards them to the reading center.
//
// With no flags and no configuration it starts with embedded defaults:
// data in ./relais-data (/perm/relais on the box), AE title RELAIS, DICOM
// port 11112 (104 on the box), and no destination yet (the queue holds).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"

	"github.com/relais/relais/appliance"
	"github.com/relais/relais/appliance/consolekeys"
)

func main() {
	f, err := parseFlags(os.Args[1:], os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(exitStopped)
	case err != nil:
		fmt.Fprintf(os.Stderr, "relaisd: %v\n", err)
		os.Exit(exitBadFlags)
	}
	if f.version {
		fmt.Println(versionLine(runningImage()))
		return
	}
	level := slog.LevelInfo
	if f.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	raiseFileLimit(log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.config == "" {
		f.config = filepath.Join(f.data, "relais.json")
	}
	// On gokrazy: a static address first, then wait (bounded) for the
	// clock if it is not set; no wait elsewhere.
	network := bootNetwork(ctx, f.config, log)
	floor := clockFloorFor(os.Executable)
	waitForClock(ctx, floor, log)
	opts := appliance.Options{DataDir: f.data, ConfigPath: f.config, Port: f.port, AETitle: f.ae, ListenAddress: f.listen, Logger: log, DefaultPort: defaultPort, Network: network,
		MetricsAddr: f.metrics, SSHConsole: f.sshConsole, ConsoleKeysImage: consolekeys.ImageFile, Image: runningImage(), ClockFloor: floor}
	a, err := appliance.New(opts)
	if err != nil {
		log.Error("relaisd cannot start", "err", err)
		os.Exit(exitRestart)
	}
	if f.cpuprofile != "" {
		prof, err := os.Create(f.cpuprofile)
		if err != nil {
			log.Error("cpu profile", "err", err)
			os.Exit(exitRestart)
		}
		pprof.StartCPUProfile(prof)
		defer pprof.StopCPUProfile()
	}
	go releaseMemory(ctx, releaseEvery, releaseAbove, log) // ends with ctx
	if err := a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("relaisd stopped", "err", err)
		pprof.StopCPUProfile()
		os.Exit(exitRestart)
	}
}

// versionLine is what relaisd -version prints.
func versionLine(image string) string {
	if image == "" {
		image = "none (not a gokrazy image)"
	}
	return fmt.Sprintf("relaisd %s, image %s, %s", appliance.Version, image, runtime.Version())
}
