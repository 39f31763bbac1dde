package main

import (
	"context"
	"fmt"
)

// ingestCase is one way of sending a set to each server.
type ingestCase struct {
	label    string
	set      set
	tool     string // storescu or dcmsend
	parallel int
}

func (b *bench) ingestCases() []ingestCase {
	c := b.corpus
	ct := fmt.Sprintf("CT %d × 0.5 MB", len(c.CT.Files))
	small := fmt.Sprintf("small %d × %.0f KB", len(c.Small.Files), float64(c.Small.Bytes)/float64(len(c.Small.Files))/1e3)
	return []ingestCase{
		{ct + ", storescu ×1", c.CT, "storescu", 1},
		{ct + ", storescu ×4", c.CT, "storescu", 4},
		{ct + " Implicit VR, storescu ×1", c.CTImplicit, "storescu", 1},
		{ct + ", dcmsend ×1", c.CT, "dcmsend", 1},
		{small + ", storescu ×1", c.Small, "storescu", 1},
		{small + ", storescu ×4", c.Small, "storescu", 4},
		{fmt.Sprintf("multi-frame %.0f MB, storescu ×1", mb(c.Big.Bytes)), c.Big, "storescu", 1},
	}
}

// The cases the targets are about.
const (
	caseCT1    = 0
	caseCT4    = 1
	caseSmall1 = 4
	caseBig    = 6
)

// ingestRun sends each case to each server once, the servers' order
// turning from case to case and run to run.
func (b *bench) ingestRun(ctx context.Context, run int) error {
	for i, c := range b.ingestCases() {
		names := []string{nameRelaisd, nameStorescp, nameOrthanc}
		if i == caseCT1 || i == caseSmall1 || i == caseBig {
			names = append(names, diskName)
		}
		for k := range names {
			name := names[(run+i+k)%len(names)]
			var s sample
			var err error
			if name == diskName {
				s, err = b.diskCeiling(ctx, c.set)
			} else {
				s, err = b.ingestOnce(ctx, c, b.newServer(name, c.parallel))
			}
			if err != nil {
				return fmt.Errorf("%s → %s: %w", c.label, name, err)
			}
			b.log.Info("ingest", "case", c.label, "server", name, "MB/s", fmt.Sprintf("%.0f", s.mbps()), "peak RSS MB", fmt.Sprintf("%.0f", mb(s.PeakRSS)))
			b.results.add("Ingest", c.label, name, run, s)
		}
	}
	return nil
}

// newServer makes a server by name, fresh.
func (b *bench) newServer(name string, parallel int) server {
	switch name {
	case nameRelaisd:
		return &relaisdServer{bin: b.relaisd, procs: b.procs, cfg: benchConfig()}
	case nameStorescp:
		return &storescpServer{procs: b.procs, fork: parallel > 1, pdu: b.opts.peerPDU}
	default:
		return &orthancServer{procs: b.procs, pdu: b.opts.peerPDU}
	}
}

// ingestOnce starts the server fresh, sends the set and measures.
func (b *bench) ingestOnce(ctx context.Context, c ingestCase, srv server) (sample, error) {
	dir, err := b.newDir(srv.name())
	if err != nil {
		return sample{}, err
	}
	defer b.dropDir(dir)
	if err := srv.start(ctx, dir); err != nil {
		return sample{}, err
	}
	defer srv.stop()
	_, forks := srv.(*storescpServer)
	m, err := startMeter(srv.proc(), forks && c.parallel > 1)
	if err != nil {
		return sample{}, err
	}
	wall, _, err := b.send(ctx, dir, c.tool, c.parallel, c.set, srv.aet(), srv.port())
	if err != nil {
		return sample{}, err
	}
	s, err := m.stop()
	if err != nil {
		return sample{}, err
	}
	s.Wall = wall.Seconds() // the senders' time, not the meter's
	s.Bytes, s.Instances = c.set.Bytes, len(c.set.Files)
	return s, expectHeld(ctx, srv, len(c.set.Files))
}
