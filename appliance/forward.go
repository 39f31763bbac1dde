package appliance

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/appliance/part10"
	"github.com/relais/relais/store"
)

// The forwarder: one per destination, taking its queue from the store most
// urgent study first, sending the stored bytes unchanged, each instance in
// its own SOP class and transfer syntax, retrying for ever with backoff. One
// destination's trouble never touches another's.

const (
	leaseBatch = 32
	leaseFor   = 15 * time.Minute
	idlePoll   = 5 * time.Second
)

type forwarder struct {
	a      *Appliance
	dest   config.Destination
	ctx    context.Context
	cancel context.CancelFunc
	wakeCh chan struct{}
	wg     sync.WaitGroup

	mu          sync.Mutex
	failures    int       // consecutive connection failures
	failingAt   time.Time // first of them
	lastErr     string
	openUntil   time.Time // circuit breaker: no attempt before
	sending     string
	dialing     bool
	delivered   int64
	bytesSent   int64
	lastSuccess time.Time
	asked       map[string]time.Time // study → when commitment was last asked
}

// syncForwarders makes the running forwarders match the configuration.
// Called with a.mu held.
func (a *Appliance) syncForwarders() {
	cfg := a.effective(a.cfg)
	want := map[string]config.Destination{}
	for _, d := range cfg.Destinations {
		want[d.Name] = d
	}
	for name, f := range a.fwd {
		if d, ok := want[name]; !ok || !sameDestination(d, f.dest) {
			f.stop()
			delete(a.fwd, name)
		}
	}
	for _, d := range cfg.Destinations {
		if _, ok := a.fwd[d.Name]; ok {
			continue
		}
		if err := a.store.SetDestination(d.Name, store.Destination{NoCommitment: !d.Commitment}); err != nil {
			a.log.Error("record destination", "dest", d.Name, "err", err)
		}
		only := d.Only
		if n, err := a.store.QueueHeld(d.Name, func(r store.Instance) bool { return only.Matches(r.CallingAE, r.Modality) }); err != nil {
			a.log.Error("queue held instances", "dest", d.Name, "err", err)
		} else if n > 0 {
			go a.event(store.KindForward, store.Info, fmt.Sprintf("%d instance(s) received before %s was configured are now queued for it", n, d.Name), map[string]string{"dest": d.Name})
		}
		f := &forwarder{a: a, dest: d, wakeCh: make(chan struct{}, 1), asked: map[string]time.Time{}}
		f.ctx, f.cancel = context.WithCancel(a.ctx)
		a.fwd[d.Name] = f
		if d.Paused {
			continue
		}
		for i := 0; i < d.Workers(); i++ {
			f.wg.Add(1)
			go f.worker()
		}
		if d.Commitment {
			f.wg.Add(1)
			go f.commitLoop()
		}
	}
}

func sameDestination(a, b config.Destination) bool {
	return a.Name == b.Name && a.AETitle == b.AETitle && a.Host == b.Host && a.Port == b.Port &&
		a.Commitment == b.Commitment && a.Parallel == b.Parallel && a.Paused == b.Paused &&
		a.CommitAfterSeconds == b.CommitAfterSeconds && fmt.Sprint(a.Only) == fmt.Sprint(b.Only)
}

func (f *forwarder) stop() {
	f.cancel()
	f.wg.Wait()
}

// wake tells dest's forwarder that something new is queued.
func (a *Appliance) wake(dest string) {
	a.mu.Lock()
	f := a.fwd[dest]
	a.mu.Unlock()
	if f == nil {
		return
	}
	select {
	case f.wakeCh <- struct{}{}:
	default:
	}
}

// sleep waits d, or until wake fires (nil: never); false when stopping.
func (f *forwarder) sleep(d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.ctx.Done():
		return false
	case <-t.C:
	case <-wake:
	}
	return true
}

func (f *forwarder) worker() {
	defer f.wg.Done()
	for f.ctx.Err() == nil {
		f.mu.Lock()
		wait := time.Until(f.openUntil)
		f.mu.Unlock()
		if wait > 0 {
			// The breaker is open: don't knock on a dead door for each new instance.
			t := time.NewTimer(wait)
			select {
			case <-f.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		entries, err := f.a.store.Lease(f.ctx, f.dest.Name, leaseBatch, leaseFor)
		if err != nil {
			if f.ctx.Err() == nil {
				f.a.log.Error("lease from queue", "dest", f.dest.Name, "err", err)
			}
			f.sleep(idlePoll, f.wakeCh)
			continue
		}
		if len(entries) == 0 {
			f.sleep(idlePoll, f.wakeCh)
			continue
		}
		f.send(entries)
	}
}

// backoff is the wait after n consecutive failures: exponential, capped,
// with jitter so a fleet of boxes doesn't knock in step.
func (f *forwarder) backoff(n int) time.Duration {
	d := f.a.opts.RetryMin
	for i := 1; i < n && d < f.a.opts.RetryMax; i++ {
		d *= 2
	}
	d = min(d, f.a.opts.RetryMax)
	return d/2 + rand.N(d/2+1)
}

// connectionFailed opens the breaker and returns when to try again.
func (f *forwarder) connectionFailed(err error) time.Time {
	f.mu.Lock()
	f.failures++
	if f.failures == 1 {
		f.failingAt = time.Now()
	}
	f.lastErr = err.Error()
	n := f.failures
	next := time.Now().Add(f.backoff(n))
	f.openUntil = next
	f.sending = ""
	since := time.Since(f.failingAt).Round(time.Second)
	f.mu.Unlock()
	// Tell the technician when it starts and then now and again, not at each try.
	if n == 1 || n%10 == 0 {
		f.a.event(store.KindRetry, store.Warning, fmt.Sprintf("%s unreachable for %v (attempt %d): %v; retrying", f.dest.Name, since, n, err),
			map[string]string{"dest": f.dest.Name})
	}
	return next
}

func (f *forwarder) connected() {
	f.mu.Lock()
	recovered := f.failures > 0
	since := time.Since(f.failingAt).Round(time.Second)
	f.failures, f.lastErr, f.openUntil = 0, "", time.Time{}
	f.mu.Unlock()
	if recovered {
		f.a.event(store.KindForward, store.Info, fmt.Sprintf("%s reachable again after %v", f.dest.Name, since), map[string]string{"dest": f.dest.Name})
	}
}

// dial opens an association to the destination proposing each instance's
// own SOP class and transfer syntax, one presentation context per pair.
func (f *forwarder) dial(recs []store.Instance) (*dimse.Association, error) {
	cfg := f.a.Config()
	seen := map[[2]string]bool{}
	props := []dimse.Proposal{{AbstractSyntax: dimse.VerificationSOPClass, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}}}
	if f.dest.Commitment {
		props = append(props, dimse.Proposal{AbstractSyntax: dimse.StorageCommitmentSOPClass, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}})
	}
	for _, r := range recs {
		k := [2]string{r.SOPClassUID, r.TransferSyntaxUID}
		if !seen[k] && len(props) < 128 {
			seen[k] = true
			props = append(props, dimse.Proposal{AbstractSyntax: r.SOPClassUID, TransferSyntaxes: []string{r.TransferSyntaxUID}})
		}
	}
	return dimse.Dial(f.ctx, f.dest.Addr(), dimse.DialParams{
		CallingAE: cfg.AETitle,
		CalledAE:  f.dest.AETitle,
		Proposals: props,
		Handlers:  dimse.Handlers{CommitReport: f.a.commitReport},
		Config:    f.a.opts.DIMSE,
		Dial:      f.a.dial,
	})
}

// send delivers a leased batch on one association.
func (f *forwarder) send(entries []store.Entry) {
	name := f.dest.Name
	recs := make([]store.Instance, 0, len(entries))
	attempts := make(map[string]int, len(entries))
	for _, e := range entries {
		attempts[e.SOPInstanceUID] = e.Attempts
		r, err := f.a.store.Instance(e.SOPInstanceUID)
		if err != nil {
			f.a.store.Failed(name, e.SOPInstanceUID, fmt.Errorf("read stored instance: %w", err), time.Time{})
			continue
		}
		recs = append(recs, r)
	}
	// Whatever is not delivered goes back to the queue: at once when we are
	// stopping, after the backoff when the destination failed.
	giveBack := func(from int, err error, at time.Time) {
		for _, r := range recs[from:] {
			f.a.store.Failed(name, r.SOPInstanceUID, err, at)
		}
	}
	if len(recs) == 0 {
		return
	}
	f.mu.Lock()
	f.dialing = true
	f.mu.Unlock()
	assoc, err := f.dial(recs)
	f.mu.Lock()
	f.dialing = false
	f.mu.Unlock()
	if err != nil {
		if f.ctx.Err() != nil {
			giveBack(0, f.ctx.Err(), time.Now())
			return
		}
		giveBack(0, err, f.connectionFailed(err))
		return
	}
	f.connected()
	defer assoc.Close()
	for i, r := range recs {
		f.mu.Lock()
		f.sending = r.StudyInstanceUID
		f.mu.Unlock()
		status, err := f.sendOne(assoc, r)
		var noCtx *dimse.NoContextError
		switch {
		case errors.As(err, &noCtx):
			// Never converted: it waits until the destination takes its syntax.
			err = fmt.Errorf("%s refuses transfer syntax %s for this SOP class; the instance stays queued, unchanged", name, r.TransferSyntaxUID)
			f.mu.Lock()
			f.lastErr = err.Error()
			f.mu.Unlock()
			f.a.store.Failed(name, r.SOPInstanceUID, err, time.Now().Add(f.a.opts.RetryMax))
			f.a.event(store.KindForward, store.Error, err.Error(), map[string]string{"dest": name, "sop_instance_uid": r.SOPInstanceUID})
		case errors.Is(err, store.ErrCorrupt):
			f.a.store.Failed(name, r.SOPInstanceUID, err, time.Time{})
			f.a.event(store.KindForward, store.Error, fmt.Sprintf("stored copy of %s is damaged; not sent: %v", r.SOPInstanceUID, err), map[string]string{"dest": name})
		case err != nil:
			if f.ctx.Err() != nil {
				giveBack(i, f.ctx.Err(), time.Now())
				return
			}
			giveBack(i, err, f.connectionFailed(err))
			return
		case status.Success():
			f.a.store.Delivered(name, r.SOPInstanceUID)
			f.mu.Lock()
			f.delivered++
			f.bytesSent += r.Size
			f.lastSuccess = time.Now()
			f.mu.Unlock()
		default:
			f.mu.Lock()
			f.lastErr = fmt.Sprintf("%s answered %v for %s", name, status, r.SOPInstanceUID)
			f.mu.Unlock()
			err := fmt.Errorf("%s answered %v", name, status)
			f.a.store.Failed(name, r.SOPInstanceUID, err, time.Now().Add(f.backoff(attempts[r.SOPInstanceUID])))
			f.a.event(store.KindRetry, store.Warning, fmt.Sprintf("%s refused %s: %v; will retry", name, r.SOPInstanceUID, status), map[string]string{"dest": name})
		}
	}
	f.mu.Lock()
	f.sending = ""
	f.mu.Unlock()
	f.reportDeliveredStudies(entries)
}

// reportDeliveredStudies logs each study of the batch that has nothing
// left to send here: the line of the study's timeline the technician and
// the regional team look for. It reads only keys and one record per study.
func (f *forwarder) reportDeliveredStudies(entries []store.Entry) {
	seen := map[string]bool{}
	for _, e := range entries {
		if seen[e.StudyInstanceUID] {
			continue
		}
		seen[e.StudyInstanceUID] = true
		n, err := f.a.store.StudyWaiting(f.dest.Name, e.StudyInstanceUID, e.StudyFirstReceived)
		if err != nil || n > 0 {
			continue
		}
		st, err := f.a.store.StudyRecord(e.StudyInstanceUID)
		if err != nil {
			continue
		}
		f.a.event(store.KindForward, store.Info, fmt.Sprintf("study %s (%s) delivered to %s: %d instance(s)",
			e.StudyInstanceUID, st.PatientName, f.dest.Name, st.Instances),
			map[string]string{"dest": f.dest.Name, "study": e.StudyInstanceUID})
	}
}

// sendOne streams one stored instance's data set, as stored.
func (f *forwarder) sendOne(assoc *dimse.Association, r store.Instance) (dimse.Status, error) {
	rc := f.a.store.OpenInstance(f.ctx, r)
	defer rc.Close()
	m, _, br, err := part10.ReadHeader(rc)
	if err != nil {
		if f.ctx.Err() != nil {
			return 0, f.ctx.Err() // stopping, not a damaged copy
		}
		return 0, fmt.Errorf("%w: %v", store.ErrCorrupt, err)
	}
	// A hash mismatch at the end (store.ErrCorrupt) comes back through
	// Store: the stack reads one fragment ahead, so the last one is never
	// sent and the peer never holds a damaged instance.
	return assoc.Store(f.ctx, dimse.StoreParams{
		SOPClassUID:       r.SOPClassUID,
		SOPInstanceUID:    r.SOPInstanceUID,
		TransferSyntaxUID: m.TransferSyntaxUID,
	}, br)
}

// Status reports each destination.
func (a *Appliance) destinationStatus() []control.DestinationStatus {
	a.mu.Lock()
	cfg := a.effective(a.cfg)
	fwd := make(map[string]*forwarder, len(a.fwd))
	for k, v := range a.fwd {
		fwd[k] = v
	}
	a.mu.Unlock()
	var out []control.DestinationStatus
	for _, d := range cfg.Destinations {
		s := control.DestinationStatus{Name: d.Name, State: "idle"}
		if f := fwd[d.Name]; f != nil {
			f.mu.Lock()
			s.LastError, s.Sending, s.SentSince, s.BytesSent, s.LastSuccess = f.lastErr, f.sending, f.delivered, f.bytesSent, f.lastSuccess
			if f.failures > 0 {
				s.State = "retrying"
				s.FailingFor = time.Since(f.failingAt).Round(time.Second).String()
				s.NextAttempt = f.openUntil
			} else if f.dialing {
				s.State = "connecting"
			} else if f.sending != "" {
				s.State = "sending"
			}
			f.mu.Unlock()
		}
		if d.Paused {
			s.State = "paused"
		}
		out = append(out, s)
	}
	return out
}
