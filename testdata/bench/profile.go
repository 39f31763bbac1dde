package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/relais/relais/appliance/config"
)

// profileRun runs relaisd once more with -cpuprofile, outside the timed
// runs (profiling costs a little): one profile while it receives the CT
// series and the small instances, one while it forwards them to Orthanc.
// Each is saved in the results folder with its `go tool pprof -top`.
func (b *bench) profileRun(ctx context.Context) error {
	if err := os.MkdirAll(b.opts.out, 0o755); err != nil {
		return err
	}
	dir, err := b.newDir("profile")
	if err != nil {
		return err
	}
	defer b.dropDir(dir)
	o := &orthancServer{procs: b.procs, pdu: b.opts.peerPDU}
	if err := o.start(ctx, filepath.Join(dir, "orthanc")); err != nil {
		return err
	}
	defer o.stop()
	stamp := b.results.stamp()
	ingestProf := filepath.Join(b.opts.out, "relaisd-ingest-"+stamp+".pprof")
	forwardProf := filepath.Join(b.opts.out, "relaisd-forward-"+stamp+".pprof")

	cfg := benchConfig()
	cfg.Destinations = []config.Destination{{Name: orthancDest, AETitle: o.aet(), Host: "127.0.0.1", Port: o.port(), Paused: true}}
	data := filepath.Join(dir, "relaisd")
	r := &relaisdServer{bin: b.relaisd, procs: b.procs, cfg: cfg, profile: ingestProf}
	if err := r.start(ctx, data); err != nil {
		return err
	}
	n := 0
	for _, s := range []set{b.corpus.CT, b.corpus.Small} {
		if _, _, err := b.send(ctx, dir, "storescu", 1, s, r.aet(), r.port()); err != nil {
			r.stop()
			return err
		}
		n += len(s.Files)
	}
	r.stop()

	// The same store, restarted with the destination open.
	cfg.Destinations[0].Paused = false
	r = &relaisdServer{bin: b.relaisd, procs: b.procs, cfg: cfg, profile: forwardProf}
	if err := r.start(ctx, data); err != nil {
		return err
	}
	err = waitHeld(ctx, o, n, 10*time.Minute)
	r.stop()
	if err != nil {
		return err
	}
	for _, p := range []string{ingestProf, forwardProf} {
		top, err := pprofTop(ctx, b.relaisd, p)
		if err != nil {
			return err
		}
		b.results.Profiles = append(b.results.Profiles, profile{File: p, Top: top})
	}
	return nil
}

// profile is a saved CPU profile and its heaviest functions.
type profile struct {
	File string   `json:"file"`
	Top  []string `json:"top"`
}

// pprofTop returns the head of `go tool pprof -top -cum`: where the time
// goes, caller by caller.
func pprofTop(ctx context.Context, bin, prof string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=80", bin, prof).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof %s: %w\n%s", prof, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var keep []string
	for _, l := range lines {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Type:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		keep = append(keep, l)
	}
	return keep, nil
}
