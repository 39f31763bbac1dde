package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/relais/relais/appliance/config"
)

// Forward: how close relaisd, sending stored instances to Orthanc, comes to
// the best sender there is, storescu reading files, on a fresh Orthanc each.

const orthancDest = "orthanc"

func (b *bench) forwardLabel() string {
	return fmt.Sprintf("CT %d × 0.5 MB → Orthanc", len(b.corpus.CT.Files))
}

func (b *bench) forwardRun(ctx context.Context, run int) error {
	return b.sideBySide(ctx, run, "Forward", b.forwardLabel(),
		contender{nameRelaisd, b.forwardRelaisd}, contender{"storescu", b.forwardStorescu})
}

// contender is one side of a side-by-side measurement.
type contender struct {
	name    string
	measure func(context.Context) (sample, error)
}

// sideBySide measures two contenders, swapping who goes first run by run so
// that neither always meets the warmer (or busier) machine.
func (b *bench) sideBySide(ctx context.Context, run int, section, label string, x, y contender) error {
	order := []contender{x, y}
	if run%2 == 0 {
		order[0], order[1] = y, x
	}
	for _, c := range order {
		s, err := c.measure(ctx)
		if err != nil {
			return fmt.Errorf("%s %s: %w", section, c.name, err)
		}
		b.log.Info(strings.ToLower(section), "who", c.name, "MB/s", fmt.Sprintf("%.0f", s.mbps()))
		b.results.add(section, label, c.name, run, s)
	}
	return nil
}

// forwardStorescu sends the CT series from files to a fresh Orthanc.
func (b *bench) forwardStorescu(ctx context.Context) (sample, error) {
	o := &orthancServer{procs: b.procs, pdu: b.opts.peerPDU}
	dir, err := b.newDir("forward-storescu")
	if err != nil {
		return sample{}, err
	}
	defer b.dropDir(dir)
	if err := o.start(ctx, dir); err != nil {
		return sample{}, err
	}
	defer o.stop()
	set := b.corpus.CT
	wall, u, err := b.send(ctx, dir, "storescu", 1, set, o.aet(), o.port())
	if err != nil {
		return sample{}, err
	}
	s := sample{Wall: wall.Seconds(), CPU: ticksToSeconds(u.cpuTicks), PeakRSS: u.hwm, Bytes: set.Bytes, Instances: len(set.Files)}
	return s, expectHeld(ctx, o, len(set.Files))
}

// forwardRelaisd has relaisd receive the CT series with its destination
// paused, then measures from Resume to the last instance acknowledged by
// Orthanc.
func (b *bench) forwardRelaisd(ctx context.Context) (sample, error) {
	o := &orthancServer{procs: b.procs, pdu: b.opts.peerPDU}
	dir, err := b.newDir("forward-relaisd")
	if err != nil {
		return sample{}, err
	}
	defer b.dropDir(dir)
	if err := o.start(ctx, dir+"/orthanc"); err != nil {
		return sample{}, err
	}
	defer o.stop()
	cfg := benchConfig()
	cfg.Destinations = []config.Destination{{Name: orthancDest, AETitle: o.aet(), Host: "127.0.0.1", Port: o.port(), Paused: true}}
	r := &relaisdServer{bin: b.relaisd, procs: b.procs, cfg: cfg}
	s, err := b.relaisdForward(ctx, r, dir+"/relaisd", orthancDest)
	if err != nil {
		return s, err
	}
	return s, expectHeld(ctx, o, s.Instances)
}

// relaisdForward starts r, has it receive the CT series with dest paused,
// then resumes dest and measures until every instance is delivered.
// ready, when set, is waited for before resuming (the tunnel's handshake).
func (b *bench) relaisdForward(ctx context.Context, r *relaisdServer, dir, dest string) (sample, error) {
	if err := r.start(ctx, dir); err != nil {
		return sample{}, err
	}
	defer r.stop()
	set := b.corpus.CT
	if _, _, err := b.send(ctx, dir, "storescu", 1, set, r.aet(), r.port()); err != nil {
		return sample{}, fmt.Errorf("fill relaisd: %w", err)
	}
	if err := expectHeld(ctx, r, len(set.Files)); err != nil {
		return sample{}, err
	}
	if r.cfg.Tunnel.Enabled() {
		if err := waitFor(ctx, 30*time.Second, 50*time.Millisecond, "tunnel up", func() (bool, error) {
			st, err := r.client.Status(ctx)
			return err == nil && st.Tunnel.State == "up", nil
		}); err != nil {
			return sample{}, err
		}
	}
	m, err := startMeter(r.proc(), false)
	if err != nil {
		return sample{}, err
	}
	if err := r.client.Resume(ctx, dest); err != nil {
		return sample{}, fmt.Errorf("resume %s: %w", dest, err)
	}
	err = waitFor(ctx, 10*time.Minute, 20*time.Millisecond, "every instance delivered", func() (bool, error) {
		st, err := r.client.Status(ctx)
		if err != nil {
			return false, err
		}
		for _, d := range st.Destinations {
			if d.Name == dest && d.SentSince >= int64(len(set.Files)) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return sample{}, err
	}
	s, err := m.stop()
	s.Bytes, s.Instances = set.Bytes, len(set.Files)
	return s, err
}
