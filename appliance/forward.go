package appliance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/appliance/forward"
	"github.com/relais/relais/store"
)

// The appliance's side of forwarding (appliance/forward does the work):
// one forwarder per configured destination, replaced when its settings
// change, and the actions the control API offers on the queue.

// syncForwarders makes the running forwarders match the configuration.
// Called with cfgMu held (so one change at a time). Old forwarders are
// stopped without holding fwdMu, so status and wakes never wait for a stop.
func (a *Appliance) syncForwarders() {
	cfg := a.Config()
	want := map[string]config.Destination{}
	for _, d := range cfg.Destinations {
		want[d.Name] = d
	}
	var stale []*forward.Forwarder
	a.fwdMu.Lock()
	for name, f := range a.fwd {
		if d, ok := want[name]; !ok || !sameDestination(d, f.Destination()) {
			stale = append(stale, f)
			delete(a.fwd, name)
		}
	}
	a.fwdMu.Unlock()
	for _, f := range stale {
		f.Stop()
	}
	for _, d := range cfg.Destinations {
		if a.forwarder(d.Name) != nil {
			continue
		}
		noCommit := !d.Commitment
		if _, err := a.store.UpdateDestination(d.Name, func(r *store.Destination) { r.NoCommitment = noCommit }); err != nil {
			a.log.Error("record destination", "dest", d.Name, "err", err)
		}
		if n, err := a.store.QueueHeld(a.ctx, d.Name, func(r store.Instance) bool { return d.Takes(r.CallingAE, r.Modality) }); err != nil {
			a.log.Error("queue held instances", "dest", d.Name, "err", err)
		} else if n > 0 {
			a.event(store.KindForward, store.Info, fmt.Sprintf("%d instance(s) received before %s was configured are now queued for it", n, d.Name), map[string]string{"dest": d.Name})
		}
		f := forward.New(d, a.forwardDeps(&cfg, d.Name))
		f.Start(a.ctx)
		a.fwdMu.Lock()
		a.fwd[d.Name] = f
		a.fwdMu.Unlock()
	}
}

func (a *Appliance) forwardDeps(cfg *config.Config, dest string) forward.Deps {
	return forward.Deps{
		Counters: a.destCounters(dest),
		Store:    a.store,
		Dial:     a.dial,
		Self: func() forward.Self {
			c := a.Config()
			a.mu.Lock()
			defer a.mu.Unlock()
			return forward.Self{AETitle: c.AETitle, Port: a.port}
		},
		Event:       a.event,
		Log:         a.log.With("part", "forward"),
		DIMSE:       a.opts.DIMSE,
		Commitments: a.commits,
		RetryMin:    a.opts.RetryMin,
		RetryMax:    a.opts.RetryMax,
		StallAfter:  cfg.Alarms.Stall(),
	}
}

func sameDestination(a, b config.Destination) bool {
	return a.Name == b.Name && a.AETitle == b.AETitle && a.Host == b.Host && a.Port == b.Port &&
		a.Commitment == b.Commitment && a.Parallel == b.Parallel && a.Paused == b.Paused &&
		a.CommitAfterSeconds == b.CommitAfterSeconds && a.ParkAfterAttempts == b.ParkAfterAttempts &&
		fmt.Sprint(a.Only) == fmt.Sprint(b.Only)
}

// destCounters are dest's forwarding counters since relaisd started: they
// outlive the forwarders a configuration change replaces. A destination
// removed keeps its counters until relaisd restarts.
func (a *Appliance) destCounters(dest string) *forward.Counters {
	a.fwdMu.Lock()
	defer a.fwdMu.Unlock()
	c := a.fwdCounters[dest]
	if c == nil {
		c = &forward.Counters{}
		a.fwdCounters[dest] = c
	}
	return c
}

func (a *Appliance) forwarder(dest string) *forward.Forwarder {
	a.fwdMu.Lock()
	defer a.fwdMu.Unlock()
	return a.fwd[dest]
}

// wake tells dest's forwarder that something new is queued.
func (a *Appliance) wake(dest string) {
	if f := a.forwarder(dest); f != nil {
		f.Wake()
	}
}

// RetryNow makes a destination's failed and parked instances due now and
// closes its breaker.
func (a *Appliance) RetryNow(ctx context.Context, dest string) error {
	f := a.forwarder(dest)
	if f == nil {
		return fmt.Errorf("no destination %q", dest)
	}
	n, err := a.store.RetryNow(ctx, dest)
	if err != nil {
		return err
	}
	f.RetryNow()
	a.event(store.KindRetry, store.Info, fmt.Sprintf("retry now asked for %s (%d failed or parked instance(s))", dest, n), map[string]string{"dest": dest})
	return nil
}

// RetryInstance makes one failed or parked instance due now.
func (a *Appliance) RetryInstance(ctx context.Context, req control.InstanceRequest) (int, error) {
	if a.forwarder(req.Destination) == nil {
		return 0, fmt.Errorf("no destination %q", req.Destination)
	}
	n, err := a.store.RetryNow(ctx, req.Destination, req.SOPInstanceUID)
	if err != nil {
		return 0, err
	}
	a.event(store.KindRetry, store.Info, fmt.Sprintf("retry asked for instance %s at %s%s", req.SOPInstanceUID, req.Destination, by(req.By)),
		map[string]string{"dest": req.Destination, "sop_instance_uid": req.SOPInstanceUID})
	a.wake(req.Destination)
	return n, nil
}

// RetryStudy makes a study's failed and parked instances due now, at one
// destination or all.
func (a *Appliance) RetryStudy(ctx context.Context, req control.StudyRequest) (int, error) {
	changed, err := a.store.RetryStudy(ctx, req.StudyInstanceUID)
	if err != nil {
		return 0, err
	}
	n := 0
	for dest, k := range changed {
		if req.Destination == "" || req.Destination == dest {
			n += k
			a.wake(dest)
		}
	}
	a.event(store.KindRetry, store.Info, fmt.Sprintf("retry asked for study %s: %d instance(s)", req.StudyInstanceUID, n), map[string]string{"study": req.StudyInstanceUID})
	return n, nil
}

// Resend queues a whole study again for a destination (every one, when
// none is named), whatever it reached: for a center that lost it.
func (a *Appliance) Resend(ctx context.Context, req control.StudyRequest) (int, error) {
	var dests []string
	for _, d := range a.Config().Destinations {
		if req.Destination == "" || req.Destination == d.Name {
			dests = append(dests, d.Name)
		}
	}
	if len(dests) == 0 {
		return 0, fmt.Errorf("no destination %q", req.Destination)
	}
	total := 0
	for _, d := range dests {
		n, err := a.store.Resend(ctx, d, req.StudyInstanceUID)
		if err != nil {
			return total, err
		}
		total += n
		a.wake(d)
	}
	a.event(store.KindForward, store.Info, fmt.Sprintf("study %s queued again for %v: %d instance(s)", req.StudyInstanceUID, dests, total), map[string]string{"study": req.StudyInstanceUID})
	return total, nil
}

// Abandon gives up on a parked instance at a destination, for the record:
// who, when and why go into the audit event. The instance is then
// purgeable there like a delivered one.
func (a *Appliance) Abandon(req control.InstanceRequest) error {
	if req.Reason == "" {
		return errors.New("abandoning an instance needs a reason, for the record")
	}
	rec, err := a.store.Instance(req.SOPInstanceUID)
	if err != nil {
		return err
	}
	if err := a.store.Abandon(req.Destination, req.SOPInstanceUID, "abandoned: "+req.Reason); err != nil {
		return err
	}
	a.event(store.KindForward, store.Warning, fmt.Sprintf("instance %s of study %s (%s) abandoned at %s%s: %s",
		req.SOPInstanceUID, rec.StudyInstanceUID, forward.PatientToken, req.Destination, by(req.By), req.Reason),
		map[string]string{"dest": req.Destination, "study": rec.StudyInstanceUID, "sop_instance_uid": req.SOPInstanceUID, "audit": "abandon", "by": req.By,
			forward.PatientAttr: rec.PatientName})
	return nil
}

func by(who string) string {
	if who == "" {
		return ""
	}
	return " by " + who
}

// Parked lists the instances that wait for a person, with what they are
// and why (at most limit; 0: all).
func (a *Appliance) Parked(ctx context.Context, limit int) ([]control.ParkedInstance, error) {
	es, err := a.store.Parked(ctx, "", limit)
	if err != nil {
		return nil, err
	}
	out := make([]control.ParkedInstance, 0, len(es))
	for _, e := range es {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := control.ParkedInstance{Destination: e.Dest, SOPInstanceUID: e.SOPInstanceUID, StudyInstanceUID: e.StudyInstanceUID,
			Attempts: e.Attempts, FirstFailure: e.FirstFailure, Reason: e.LastError}
		if r, err := a.store.Instance(e.SOPInstanceUID); err == nil {
			p.PatientName, p.PatientID, p.StudyDescription = r.PatientName, r.PatientID, r.StudyDescription
			p.TransferSyntax = dimse.UIDName(r.TransferSyntaxUID)
		}
		out = append(out, p)
	}
	return out, nil
}

// destinationStatus reports each configured destination's forwarder.
func (a *Appliance) destinationStatus(cfg *config.Config) []control.DestinationStatus {
	var out []control.DestinationStatus
	for _, d := range cfg.Destinations {
		s := control.DestinationStatus{Name: d.Name, AETitle: d.AETitle, Address: d.Addr(), State: control.DestIdle}
		if f := a.forwarder(d.Name); f != nil {
			fs := f.Status()
			s.State, s.LastError, s.Attempts, s.NextAttempt = fs.State, fs.LastError, fs.Attempts, fs.NextAttempt
			s.Sending, s.SentSince, s.BytesSent, s.LastSuccess = fs.Sending, fs.Delivered, fs.BytesSent, fs.LastSuccess
			s.Commitment = fs.Commitment
			if !fs.FailingSince.IsZero() && fs.Attempts > 0 {
				s.FailingSince = fs.FailingSince
				s.FailingFor = time.Since(fs.FailingSince).Round(time.Second).String()
			}
			if fs.StalledFor > 0 {
				s.StalledFor = fs.StalledFor.Round(time.Second).String()
			}
		}
		out = append(out, s)
	}
	return out
}
