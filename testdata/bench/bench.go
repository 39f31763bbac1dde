package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/relais/relais/testdata/peers"
)

// senderAET is the calling AE title of every DCMTK sender.
const senderAET = "STORESCU"

// bench is one run of the comparison.
type bench struct {
	opts    options
	log     *slog.Logger
	tmp     string
	procs   *procs
	relaisd string // the binary
	corpus  *corpus
	results *results
	dirs    int // folders made so far, to name the next one
}

// want reports whether a scenario is selected by -only.
func (b *bench) want(scenario string) bool {
	return b.opts.only == "" || slices.Contains(strings.Split(b.opts.only, ","), scenario)
}

// runAll runs each scenario once per run, runs after runs, so that slow
// moments of the machine fall on every server alike.
func (b *bench) runAll(ctx context.Context) error {
	for run := 1; run <= b.opts.runs; run++ {
		steps := []struct {
			name string
			fn   func(context.Context, int) error
		}{
			{"ingest", b.ingestRun},
			{"forward", b.forwardRun},
			{"tunnel", b.tunnelRun},
			{"latency", b.latencyRun},
		}
		for _, s := range steps {
			if !b.want(s.name) {
				continue
			}
			b.log.Info("scenario", "name", s.name, "run", run, "of", b.opts.runs)
			if err := s.fn(ctx, run); err != nil {
				return fmt.Errorf("%s, run %d: %w", s.name, run, err)
			}
		}
	}
	if b.want("scale") {
		b.log.Info("scenario", "name", "scale", "dicom", b.opts.scaleDICOM, "api", b.opts.scaleAPI)
		if err := b.scaleRun(ctx); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
	}
	if b.want("profile") {
		if err := b.profileRun(ctx); err != nil {
			return fmt.Errorf("relaisd CPU profile: %w", err)
		}
	}
	return nil
}

// checkTools fails early, saying what to install.
func (b *bench) checkTools() error {
	for _, t := range []string{"storescu", "dcmsend", "storescp", "Orthanc", "go"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s is not installed (bash .ci/run installs DCMTK and Orthanc): %w", t, err)
		}
	}
	return nil
}

// newDir makes a fresh folder for one server's data and logs.
func (b *bench) newDir(what string) (string, error) {
	b.dirs++
	dir := filepath.Join(b.tmp, fmt.Sprintf("%03d-%s", b.dirs, strings.ReplaceAll(what, " ", "-")))
	return dir, os.MkdirAll(dir, 0o755)
}

// dropDir removes a measurement's folder unless -keep.
func (b *bench) dropDir(dir string) {
	if !b.opts.keep {
		os.RemoveAll(dir)
	}
}

// send runs tool (storescu or dcmsend) with the set's files split among
// parallel senders to aet at port, and returns their wall time: from the
// first sender's start to the last one's exit, and the senders' CPU time.
func (b *bench) send(ctx context.Context, dir, tool string, parallel int, s set, aet string, port int) (time.Duration, usage, error) {
	groups := split(s.Files, parallel)
	start := time.Now()
	ps := make([]*proc, len(groups))
	for i, g := range groups {
		args := []string{"-aec", aet, "-aet", senderAET}
		if tool == "storescu" && s.TransferSyntax == implicitVRLittleEndian {
			args = append(args, "-xi") // send as is: storescu proposes one syntax family per option
		}
		args = append(args, "127.0.0.1", strconv.Itoa(port))
		args = append(args, g...)
		p, err := b.procs.start(filepath.Join(dir, fmt.Sprintf("%s-%d.log", tool, i)), peers.DCMTKEnv(), tool, args...)
		if err != nil {
			return 0, usage{}, err
		}
		ps[i] = p
	}
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); <-p.done }()
	}
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		return 0, usage{}, ctx.Err()
	}
	wall := time.Since(start)
	var u usage
	for _, p := range ps {
		if err := p.failure(); err != nil {
			return 0, usage{}, err
		}
		// Only CPU: a child's ru_maxrss may be its parent's (this
		// process's) before the exec, so it says nothing of the sender.
		if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			u.cpuTicks += (ru.Utime.Nano() + ru.Stime.Nano()) * clockTicks / 1e9
		}
	}
	return wall, u, nil
}

const implicitVRLittleEndian = "1.2.840.10008.1.2"

// split cuts files into n contiguous groups of nearly equal size.
func split(files []string, n int) [][]string {
	n = max(1, min(n, len(files)))
	var out [][]string
	for i := range n {
		out = append(out, files[i*len(files)/n:(i+1)*len(files)/n])
	}
	return out
}

// meter measures a server process (and its children) over a stretch.
type meter struct {
	p       *proc
	before  usage
	idle    int64 // resident memory at the start
	sampler *rssSampler
	start   time.Time
}

// startMeter starts measuring; tree follows children's memory too.
func startMeter(p *proc, tree bool) (*meter, error) {
	u, err := treeUsage(p.pid())
	if err != nil {
		return nil, fmt.Errorf("%s usage: %w", p.name, err)
	}
	idle, _ := treeRSS(p.pid(), tree)
	m := &meter{p: p, before: u, idle: idle, start: time.Now()}
	m.sampler = sampleRSS(p.pid(), tree, 20*time.Millisecond)
	return m, nil
}

// stop returns the wall time, the CPU time used since the start, the peak
// resident memory (VmHWM: over the process's whole life) and the peak of
// its anonymous part (sampled).
func (m *meter) stop() (sample, error) {
	wall := time.Since(m.start)
	peak, anon := m.sampler.end()
	u, err := treeUsage(m.p.pid())
	if err != nil {
		return sample{}, fmt.Errorf("%s usage: %w", m.p.name, err)
	}
	return sample{Wall: wall.Seconds(), CPU: ticksToSeconds(u.cpuTicks - m.before.cpuTicks),
		PeakRSS: max(peak, u.hwm), PeakAnon: anon, IdleRSS: m.idle}, nil
}

// waitFor polls cond every interval until it holds, fails, or within passes.
func waitFor(ctx context.Context, within, every time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(within)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v", what, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}

// expectHeld checks that a server holds n instances after a measurement.
func expectHeld(ctx context.Context, s server, n int) error {
	return waitHeld(ctx, s, n, 30*time.Second)
}

// waitHeld waits until a server holds n instances.
func waitHeld(ctx context.Context, s server, n int, within time.Duration) error {
	return waitFor(ctx, within, 50*time.Millisecond, fmt.Sprintf("%s holding %d instances", s.name(), n), func() (bool, error) {
		got, err := s.held(ctx)
		return err == nil && got >= n, nil
	})
}
