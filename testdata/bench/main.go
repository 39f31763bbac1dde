// Command bench compares relaisd with the DICOM servers a user would
// otherwise put on the same box — DCMTK's storescp and Orthanc — in one run,
// so that the noise of a shared machine spreads over every server alike and
// cancels in the ratios.
//
// It builds relaisd, generates a deterministic corpus (testdata/dcmgen),
// runs every scenario with servers started fresh for each measurement and
// interleaved across servers, measures wall time, peak RSS and CPU time of
// each server, and writes bench-results/results-DATE.json, the printed
// table beside it, and relaisd CPU profiles. Every process it starts is
// stopped when it ends, on errors and on Ctrl-C too. The scale scenario
// measures what a large store costs relaisd when nothing arrives (scale.go).
//
//	go run ./testdata/bench            # the full comparison (make bench)
//	go run ./testdata/bench -quick     # a small corpus, one run: to try it
//	go run ./testdata/bench -only scale -scale-api 1000000 -corpus DIR  # issue 13's million
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// options are main's flags.
type options struct {
	quick    bool
	runs     int
	out      string
	corpus   string
	only     string
	peerPDU  int
	keep     bool
	ctSlices int
	small    int
	frames   int
	// Instance counts of the scale scenario's stores, comma separated.
	scaleDICOM, scaleAPI string
}

func main() {
	var o options
	flag.BoolVar(&o.quick, "quick", false, "small corpus (40 CT slices, 200 small instances, a 21 MB multi-frame), scale stores of 2000 (DICOM) and 20000 (API), 1 run")
	flag.IntVar(&o.runs, "runs", 3, "runs of each measurement (the table shows their median and min–max)")
	flag.StringVar(&o.out, "out", "bench-results", "folder for results-DATE.json, the table and the relaisd CPU profiles")
	flag.StringVar(&o.corpus, "corpus", "", "keep the generated corpus in this folder and reuse it next time (default: a temporary folder)")
	flag.StringVar(&o.only, "only", "", "run only these scenarios, comma separated: ingest, forward, tunnel, latency, scale, profile")
	flag.IntVar(&o.peerPDU, "peer-max-pdu", 16384, "max PDU storescp and Orthanc accept (both default to 16384; relaisd to 262144)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary folder (servers' data and logs) for inspection")
	flag.IntVar(&o.ctSlices, "ct", 300, "CT slices (512×512×16 bits)")
	flag.IntVar(&o.small, "small", 2000, "small instances (64×64×16 bits)")
	flag.IntVar(&o.frames, "frames", 500, "frames of the multi-frame instance (512×512×16 bits, 0.5 MB each)")
	flag.StringVar(&o.scaleDICOM, "scale-dicom", "2000,60000", "scale: stores of this many small instances, stored through DICOM (comma separated)")
	flag.StringVar(&o.scaleAPI, "scale-api", "200000", "scale: stores of this many instances, filled through the store's API, comma separated (issue 13's full size: 1000000, about 10 minutes to fill here; with -corpus the filled store is kept for the next run)")
	flag.Parse()
	if o.quick {
		o.runs, o.ctSlices, o.small, o.frames = 1, 40, 200, 40
		o.scaleDICOM, o.scaleAPI = "2000", "20000"
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o, log)
	stop()
	if err != nil {
		log.Error("bench failed", "err", err)
		os.Exit(1)
	}
}

// run sets up, measures and reports; the deferred stops run on every way out.
func run(ctx context.Context, o options, log *slog.Logger) error {
	start := time.Now()
	tmp, err := os.MkdirTemp("", "relais-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		log.Info("keeping the temporary folder", "dir", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	procs := newProcs(log)
	defer procs.stopAll()

	b := &bench{opts: o, log: log, tmp: tmp, procs: procs, results: newResults(o, start)}
	if err := b.checkTools(); err != nil {
		return err
	}
	if b.relaisd, err = buildRelaisd(ctx, tmp); err != nil {
		return err
	}
	corpusDir := o.corpus
	if corpusDir == "" {
		corpusDir = filepath.Join(tmp, "corpus")
	}
	if b.corpus, err = makeCorpus(ctx, corpusDir, corpusSpec{CT: o.ctSlices, Small: o.small, Frames: o.frames, LatencySlices: 10}, log); err != nil {
		return err
	}
	b.results.Corpus = b.corpus.summary()
	if err := b.runAll(ctx); err != nil {
		return err
	}
	b.results.Elapsed = time.Since(start).Round(time.Second).String()
	b.results.LoadAfter = loadAverage()
	return b.report()
}
