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
	"runtime/pprof"
	"syscall"

	"github.com/relais/relais/appliance"
)

func main() {
	var (
		data    = flag.String("data", defaultDataDir, "data folder: store, configuration, control socket")
		port    = flag.Int("port", 0, "DICOM port, overriding the configuration (default "+fmt.Sprint(defaultPort)+")")
		ae      = flag.String("ae", "", "our AE title, overriding the configuration (default RELAIS)")
		cfgPath = flag.String("config", "", "configuration file (default DATA/relais.json)")
		verbose = flag.Bool("v", false, "log debug messages")
		cpuprof = flag.String("cpuprofile", "", "write a CPU profile to this file until relaisd stops (for benchmarks)")
		metrics = flag.String("metrics", "", "serve Prometheus /metrics on this TCP address (e.g. :9104), for monitoring through the tunnel")
	)
	flag.Parse()
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	raiseFileLimit(log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *cfgPath == "" {
		*cfgPath = filepath.Join(*data, "relais.json")
	}
	// On gokrazy: a static address first, then wait (bounded) for a route
	// and the clock, and count this start of a new image; nil elsewhere.
	network := bootNetwork(ctx, *cfgPath, log)
	ug := startGokrazy(ctx, *data, log)
	if ug.rolledBack() {
		// Switched back to the previous image already: gokrazy is rebooting us.
		<-ctx.Done()
		os.Exit(exitStopped)
	}
	opts := appliance.Options{DataDir: *data, ConfigPath: *cfgPath, Port: *port, AETitle: *ae, Logger: log, DefaultPort: defaultPort, Network: network, MetricsAddr: *metrics}
	a, err := appliance.New(opts)
	if err != nil {
		log.Error("relaisd cannot start", "err", err)
		os.Exit(exitRestart)
	}
	go ug.run(ctx, a) // checks a new image and marks it good, or switches back
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			log.Error("cpu profile", "err", err)
			os.Exit(exitRestart)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("relaisd stopped", "err", err)
		pprof.StopCPUProfile()
		os.Exit(exitRestart)
	}
}
