package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/store"
	"github.com/relais/relais/testdata/peers"
	"github.com/relais/relais/testdata/storefill"
)

// Scale: what a large store costs relaisd when nothing arrives. relaisd is
// started on a store holding many small instances — stored through DICOM
// (the bench's own sender, several associations at once) or filled through
// the store's API (testdata/storefill, as the store's scale tests do),
// queued for a paused destination — and measured: process start to the
// first C-ECHO answered (echoscu, polling), the control socket's status and
// metrics latency, the first list of studies, idle CPU (once Badger's
// compactions after the start are over) and RSS, and the CPU of a console
// polling what its dashboard polls every second.

const (
	scaleDest     = "pacs" // paused: what it holds stays queued
	scalePerStudy = 100
	scaleSenders  = 4 // associations storing at once
	scaleCalls    = 50
	// Idle and console polling are measured in turns of scaleTurn each.
	scaleTurns     = 4
	scaleTurn      = 5 * time.Second
	scaleFillWrite = 64 // writers filling through the API
	// Idle is measured once relaisd used less than scaleSettled % of a
	// core over 5 s, or after scaleSettleMax.
	scaleSettled   = 1
	scaleSettleMax = time.Minute
)

// How a scale store was filled, as the table says it.
const (
	filledDICOM = "DICOM"
	filledAPI   = "store API"
)

// scaleSize is one store to measure.
type scaleSize struct {
	instances int
	how       string // filledDICOM or filledAPI
}

// scaleRow is what one store size cost, as the table and results show it.
type scaleRow struct {
	Instances int    `json:"instances"`
	Filled    string `json:"filled"`
	// FillSeconds is how long filling took (through DICOM: relaisd
	// receiving, with scaleSenders associations).
	FillSeconds float64 `json:"fill_seconds"`
	// StartToEcho is process start → first C-ECHO answered, seconds, one
	// per start.
	StartToEcho stat `json:"start_to_echo_seconds"`
	StatusMS    stat `json:"status_ms"`  // GET /v1/status, over scaleCalls calls
	MetricsMS   stat `json:"metrics_ms"` // GET /metrics, over scaleCalls calls
	// StudiesFirstMS is the first GET /v1/studies?limit=50: the list built
	// from the store, as after each change.
	StudiesFirstMS stat `json:"studies_first_ms"`
	// SettleSeconds is how long relaisd stayed busy (Badger compacting)
	// before the idle figure.
	SettleSeconds float64 `json:"settle_seconds"`
	// IdleCPU and PollingCPU are % of one core: nothing happening, and a
	// console polling every second (minus idle).
	IdleCPU    float64 `json:"idle_cpu_percent"`
	PollingCPU float64 `json:"polling_cpu_percent"`
	IdleRSSMB  float64 `json:"idle_rss_mb"`
	IdleAnonMB float64 `json:"idle_anon_mb"` // of which anonymous (heap, stacks); the rest is mapped files, Badger's tables mostly
	Profile    string  `json:"profile,omitempty"`
}

// scaleSizes are the stores -scale-dicom and -scale-api ask for, smallest first.
func (b *bench) scaleSizes() ([]scaleSize, error) {
	var out []scaleSize
	for _, f := range []struct{ flag, list, how string }{{"-scale-dicom", b.opts.scaleDICOM, filledDICOM}, {"-scale-api", b.opts.scaleAPI, filledAPI}} {
		ns, err := parseCounts(f.list)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.flag, err)
		}
		for _, n := range ns {
			out = append(out, scaleSize{n, f.how})
		}
	}
	slices.SortStableFunc(out, func(x, y scaleSize) int { return x.instances - y.instances })
	return out, nil
}

func parseCounts(list string) ([]int, error) {
	var out []int
	for _, f := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' }) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a number of instances", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// scaleRun fills and measures each size, a fresh store each. The largest
// is measured with relaisd's CPU profile on (its cost is in proportion to
// the CPU used, so it barely touches idle figures).
func (b *bench) scaleRun(ctx context.Context) error {
	sizes, err := b.scaleSizes()
	if err != nil {
		return err
	}
	for i, sz := range sizes {
		prof := ""
		if i == len(sizes)-1 {
			if err := os.MkdirAll(b.opts.out, 0o755); err != nil {
				return err
			}
			prof = filepath.Join(b.opts.out, fmt.Sprintf("relaisd-scale-%d-%s.pprof", sz.instances, b.results.stamp()))
		}
		row, err := b.scaleOnce(ctx, sz, prof)
		if err != nil {
			return fmt.Errorf("%d instances (%s): %w", sz.instances, sz.how, err)
		}
		b.log.Info("scale", "instances", sz.instances, "filled", sz.how, "fill s", fmt.Sprintf("%.0f", row.FillSeconds),
			"start→echo s", fmt.Sprintf("%.2f", row.StartToEcho.Median), "status ms", fmt.Sprintf("%.2f", row.StatusMS.Median),
			"idle CPU %", fmt.Sprintf("%.2f", row.IdleCPU), "polling CPU %", fmt.Sprintf("%.2f", row.PollingCPU))
		b.results.Scale = append(b.results.Scale, row)
		if prof != "" {
			top, err := pprofTop(ctx, b.relaisd, prof)
			if err != nil {
				return err
			}
			b.results.Profiles = append(b.results.Profiles, profile{File: prof, Top: top})
		}
	}
	return nil
}

// scaleConfig lets the senders in and queues everything for a paused
// destination (nothing listens at its port).
func scaleConfig() (config.Config, error) {
	port, err := freePort()
	if err != nil {
		return config.Config{}, err
	}
	cfg := benchConfig()
	cfg.Destinations = []config.Destination{{Name: scaleDest, AETitle: "PACS", Host: "127.0.0.1", Port: port, Paused: true}}
	return cfg, nil
}

func (b *bench) scaleOnce(ctx context.Context, sz scaleSize, prof string) (*scaleRow, error) {
	dir, err := b.newDir(fmt.Sprintf("scale-%d", sz.instances))
	if err != nil {
		return nil, err
	}
	defer b.dropDir(dir)
	cfg, err := scaleConfig()
	if err != nil {
		return nil, err
	}
	row := &scaleRow{Instances: sz.instances, Filled: sz.how}
	data := filepath.Join(dir, "relaisd")
	begin := time.Now()
	kept := false
	if sz.how == filledAPI {
		kept, err = b.fillThroughAPI(ctx, filepath.Join(data, "store"), sz.instances)
	} else {
		err = b.fillThroughDICOM(ctx, cfg, data, sz.instances)
	}
	if err != nil {
		return nil, fmt.Errorf("fill: %w", err)
	}
	if kept {
		row.Filled += ", kept in -corpus"
	} else {
		row.FillSeconds = time.Since(begin).Seconds()
	}

	// Started runs times; the last start stays up for the other figures.
	var starts []float64
	var r *relaisdServer
	for run := 1; run <= b.opts.runs; run++ {
		r = &relaisdServer{bin: b.relaisd, procs: b.procs, cfg: cfg}
		if run == b.opts.runs {
			r.profile = prof
		}
		d, err := b.startToEcho(ctx, r, data)
		if err != nil {
			r.stop()
			return nil, err
		}
		starts = append(starts, d.Seconds())
		if run < b.opts.runs {
			r.stop()
		}
	}
	defer r.stop()
	row.StartToEcho = statOf(starts)
	st, err := r.client.Status(ctx)
	if err != nil {
		return nil, err
	}
	if st.Stored.Instances != sz.instances {
		return nil, fmt.Errorf("relaisd holds %d instances, want %d", st.Stored.Instances, sz.instances)
	}

	metrics := metricsGetter(filepath.Join(data, control.SocketName))
	if row.StatusMS, err = timeCalls(scaleCalls, func() error { _, err := r.client.Status(ctx); return err }); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	if row.MetricsMS, err = timeCalls(scaleCalls, func() error { return metrics(ctx) }); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}

	// What the console's dashboard polls each second (tui/poll.go: the
	// status and the newest studies), and the metrics a scraper reads.
	// The first studies list is built from the store; the console polls
	// again and again, and relaisd serves it again while nothing changes.
	studies := func() error { _, err := r.client.Studies(ctx, 50); return err }
	if row.StudiesFirstMS, err = timeCalls(1, studies); err != nil {
		return nil, fmt.Errorf("studies: %w", err)
	}
	poll := func() error {
		if _, err := r.client.Status(ctx); err != nil {
			return err
		}
		if err := studies(); err != nil {
			return err
		}
		return metrics(ctx)
	}

	// Badger compacts for a while after a start on a store just filled:
	// busy, not idle.
	settle := time.Now()
	for time.Since(settle) < scaleSettleMax {
		busy, err := cpuOver(ctx, r.proc(), 5*time.Second, nil)
		if err != nil {
			return nil, fmt.Errorf("settle: %w", err)
		}
		if busy < scaleSettled {
			break
		}
	}
	row.SettleSeconds = time.Since(settle).Seconds()
	// Idle and polling in turns, so that a compaction now and then falls
	// in one pair, which the median of the pairs' differences leaves out.
	var idle float64
	var extra []float64
	for range scaleTurns {
		quiet, err := cpuOver(ctx, r.proc(), scaleTurn, nil)
		if err != nil {
			return nil, fmt.Errorf("idle: %w", err)
		}
		polled, err := cpuOver(ctx, r.proc(), scaleTurn, poll)
		if err != nil {
			return nil, fmt.Errorf("polling: %w", err)
		}
		idle += quiet / scaleTurns
		extra = append(extra, polled-quiet)
	}
	row.IdleCPU = idle
	row.PollingCPU = max(0, statOf(extra).Median)
	rss, _, anon, _ := readMemory(r.proc().pid())
	row.IdleRSSMB, row.IdleAnonMB = mb(rss), mb(anon)
	row.Profile = prof
	return row, nil
}

// fillThroughAPI fills a store in dir, with the options relaisd opens it
// with. With -corpus, the filled store is kept there and copied next time
// (copied says so).
func (b *bench) fillThroughAPI(ctx context.Context, dir string, n int) (copied bool, err error) {
	kept := ""
	if b.opts.corpus != "" {
		kept = filepath.Join(b.opts.corpus, fmt.Sprintf("scale-store-%d", n))
		if _, err := os.Stat(filepath.Join(kept, "complete")); err == nil {
			// A store kept by an older relais is upgraded once, here: the
			// first start of relaisd is not to be timed with the upgrade.
			s, err := openQuiet(filepath.Join(kept, "store"))
			if err == nil {
				err = s.Close()
			}
			if err != nil {
				return true, fmt.Errorf("open the kept store: %w", err)
			}
			b.log.Info("copying the filled store", "from", kept)
			return true, copyTree(ctx, filepath.Join(kept, "store"), dir)
		}
	}
	return false, b.fill(ctx, dir, n, kept)
}

// openQuiet opens the store in dir as relaisd would, without Badger's
// notes on its block cache while filling (noise here).
func openQuiet(dir string) (*store.Store, error) {
	o := store.DefaultOptions()
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	return store.Open(dir, o)
}

// fill fills a new store in dir with n instances, and copies it to kept
// unless "".
func (b *bench) fill(ctx context.Context, dir string, n int, kept string) error {
	s, err := openQuiet(dir)
	if err != nil {
		return err
	}
	begin := time.Now()
	var done atomic.Int64
	spec := storefill.Spec{N: n, PerStudy: scalePerStudy, Writers: scaleFillWrite}
	err = storefill.Fill(ctx, spec, func(x storefill.Instance) error {
		if d := done.Add(1); d%(max(1, int64(n)/10)) == 0 {
			b.log.Info("filling through the store API", "instances", d, "of", n, "per second", fmt.Sprintf("%.0f", float64(d)/time.Since(begin).Seconds()))
		}
		w, err := s.NewWriter()
		if err != nil {
			return err
		}
		defer w.Abort()
		if _, err := w.Write(x.Data); err != nil {
			return err
		}
		_, err = w.Commit(ctx, store.Instance{
			SOPInstanceUID: x.SOPInstanceUID, SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", TransferSyntaxUID: "1.2.840.10008.1.2.1",
			StudyInstanceUID: x.Study, SeriesInstanceUID: x.Series, PatientID: "P-" + x.Study, PatientName: "FILL^SCALE",
			Modality: "CT", SeriesNumber: 1, InstanceNumber: x.InstanceNumber, CallingAE: senderAET, RemoteAddr: "127.0.0.1:4242",
		}, []string{scaleDest})
		return err
	})
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil || kept == "" {
		return err
	}
	os.RemoveAll(kept)
	if err := copyTree(ctx, dir, filepath.Join(kept, "store")); err != nil {
		return fmt.Errorf("keep the filled store: %w", err)
	}
	return os.WriteFile(filepath.Join(kept, "complete"), nil, 0o644)
}

// copyTree copies the folder from as the folder to (which must not exist).
func copyTree(ctx context.Context, from, to string) error {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", from, to).CombinedOutput(); err != nil {
		return fmt.Errorf("cp -a %s %s: %w\n%s", from, to, err, out)
	}
	return nil
}

// fillThroughDICOM has relaisd receive n small instances from the bench's
// own sender, then stops it.
func (b *bench) fillThroughDICOM(ctx context.Context, cfg config.Config, dir string, n int) error {
	r := &relaisdServer{bin: b.relaisd, procs: b.procs, cfg: cfg}
	if err := r.start(ctx, dir); err != nil {
		return err
	}
	defer r.stop()
	if err := sendGenerated(ctx, fmt.Sprintf("127.0.0.1:%d", r.port()), r.aet(), n, scalePerStudy, scaleSenders); err != nil {
		return err
	}
	return expectHeld(ctx, r, n)
}

// startToEcho starts r on dir and polls it with echoscu until one is
// answered: the time from the process's start to that answer.
func (b *bench) startToEcho(ctx context.Context, r *relaisdServer, dir string) (time.Duration, error) {
	if err := r.launch(dir); err != nil {
		return 0, err
	}
	began := time.Now()
	args := []string{"-aec", r.aet(), "-aet", senderAET, "-to", "5", "127.0.0.1", strconv.Itoa(r.port())}
	err := waitFor(ctx, 5*time.Minute, 20*time.Millisecond, "first C-ECHO answered", func() (bool, error) {
		if r.p.exited() {
			return false, fmt.Errorf("relaisd exited: %v\n%s", r.p.err, r.p.tail(2000))
		}
		cmd := exec.CommandContext(ctx, "echoscu", args...)
		cmd.Env = peers.DCMTKEnv()
		return cmd.Run() == nil, nil
	})
	took := time.Since(began)
	if err != nil {
		return 0, err
	}
	r.client = control.NewClient(filepath.Join(dir, control.SocketName))
	return took, nil
}

// metricsGetter returns a GET /metrics on the control socket at path.
func metricsGetter(path string) func(context.Context) error {
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, "GET", "http://relaisd/metrics", nil)
		if err != nil {
			return err
		}
		rsp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer rsp.Body.Close()
		if _, err := io.Copy(io.Discard, rsp.Body); err != nil {
			return err
		}
		if rsp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /metrics: %s", rsp.Status)
		}
		return nil
	}
}

// timeCalls makes n calls one after the other: their latency in ms.
func timeCalls(n int, call func() error) (stat, error) {
	var ms []float64
	for range n {
		begin := time.Now()
		if err := call(); err != nil {
			return stat{}, err
		}
		ms = append(ms, float64(time.Since(begin).Microseconds())/1e3)
	}
	return statOf(ms), nil
}

// cpuOver measures p's CPU over a stretch, as % of one core, calling poll
// (when set) at its start and every second.
func cpuOver(ctx context.Context, p *proc, d time.Duration, poll func() error) (float64, error) {
	before, err := readStat(p.pid())
	if err != nil {
		return 0, err
	}
	begin := time.Now()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for time.Since(begin) < d {
		if poll != nil {
			if err := poll(); err != nil {
				return 0, err
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-t.C:
		}
	}
	after, err := readStat(p.pid())
	if err != nil {
		return 0, err
	}
	used := ticksToSeconds(after.utime + after.stime - before.utime - before.stime)
	return 100 * used / time.Since(begin).Seconds(), nil
}
