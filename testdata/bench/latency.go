package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/relais/relais/appliance/config"
)

// Latency: the last instance of a study acknowledged by relaisd → that
// study delivered to Orthanc, and → committed (Orthanc's Storage
// Commitment report received). relaisd asks for commitment once a study
// has been quiet for commit_after_seconds (1 here, the smallest setting),
// checking every half of it: that wait is part of the figure by design.

const commitAfterSeconds = 1

func (b *bench) latencyLabel() string {
	s := b.corpus.LatencyStudy
	return fmt.Sprintf("study of %d CT slices (%.0f MB) → Orthanc, commit_after_seconds %d", len(s.Files), mb(s.Bytes), commitAfterSeconds)
}

const (
	latencyDelivered = "relaisd: ack → delivered at Orthanc"
	latencyCommitted = "relaisd: ack → committed (report in)"
)

func (b *bench) latencyRun(ctx context.Context, run int) error {
	dir, err := b.newDir("latency")
	if err != nil {
		return err
	}
	defer b.dropDir(dir)
	port, err := freePort()
	if err != nil {
		return err
	}
	o := &orthancServer{procs: b.procs, pdu: b.opts.peerPDU, modalities: map[string]int{"RELAIS": port}}
	if err := o.start(ctx, filepath.Join(dir, "orthanc")); err != nil {
		return err
	}
	defer o.stop()
	cfg := benchConfig()
	cfg.Port = port
	cfg.Destinations = []config.Destination{{Name: orthancDest, AETitle: o.aet(), Host: "127.0.0.1", Port: o.port(),
		Commitment: true, CommitAfterSeconds: commitAfterSeconds}}
	r := &relaisdServer{bin: b.relaisd, procs: b.procs, cfg: cfg}
	if err := r.start(ctx, filepath.Join(dir, "relaisd")); err != nil {
		return err
	}
	defer r.stop()

	study := b.corpus.LatencyStudy
	if _, _, err := b.send(ctx, dir, "storescu", 1, study, r.aet(), r.port()); err != nil {
		return err
	}
	acked := time.Now() // storescu exits right after the last response and the release
	n := len(study.Files)
	var delivered, committed time.Time
	err = waitFor(ctx, 2*time.Minute, 5*time.Millisecond, "study committed at Orthanc", func() (bool, error) {
		st, _, err := r.client.Study(ctx, study.Study)
		if err != nil {
			return false, nil // not indexed yet
		}
		for _, d := range st.Destinations {
			if d.Name != orthancDest {
				continue
			}
			now := time.Now()
			if delivered.IsZero() && d.Delivered+d.Committed == n {
				delivered = now
			}
			if d.Committed == n {
				committed = now
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	label := b.latencyLabel()
	b.results.add("Latency", label, latencyDelivered, run, sample{Wall: delivered.Sub(acked).Seconds()})
	b.results.add("Latency", label, latencyCommitted, run, sample{Wall: committed.Sub(acked).Seconds()})
	b.log.Info("latency", "delivered", delivered.Sub(acked).Round(time.Millisecond), "committed", committed.Sub(acked).Round(time.Millisecond))
	return expectHeld(ctx, o, n)
}
