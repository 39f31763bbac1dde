// Package forward delivers the queue: one Forwarder per destination takes
// its entries from the store most urgent study first, sends the stored
// bytes unchanged on its own associations, retries with backoff, and asks
// for Storage Commitment as proof of delivery.
//
// Failures are attributed. A connection that cannot be made counts against
// the destination (its backoff grows, and the count survives a restart); a
// failure while one instance is sent counts against that instance alone, so
// the rest of the queue goes on at once and the instance, after ParkAfter
// attempts, is parked: kept, never purged, and shown to a person.
package forward

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/store"
)

// Store is what forwarding needs of the store.
type Store interface {
	Lease(ctx context.Context, dest string, max int, leaseFor time.Duration) ([]store.Entry, error)
	Release(dest string, uids ...string) error
	Delivered(dest string, uids ...string) error
	Failed(dest, uid string, f store.Failure) (store.Entry, error)
	Committed(dest string, uids ...string) error
	Instance(uid string) (store.Instance, error)
	OpenInstance(ctx context.Context, rec store.Instance) io.ReadCloser
	StudyWaiting(ctx context.Context, dest, study string, first time.Time) (int, error)
	StudyRecord(study string) (store.Study, error)
	StudyEntries(ctx context.Context, dest, study string) ([]store.Entry, error)
	AwaitingCommitment(ctx context.Context, dest string) ([]store.Entry, error)
	UpdateDestination(name string, fn func(d *store.Destination)) (store.Destination, error)
	DestinationRecord(name string) (store.Destination, error)
}

// EventFunc records an event for the technician.
type EventFunc func(kind store.Kind, sev store.Severity, msg string, attrs map[string]string)

// Self is what the box is, as a destination must know it.
type Self struct {
	AETitle string
	Port    int // our DICOM port, where commitment reports come
}

// Deps are a forwarder's explicit dependencies.
type Deps struct {
	Store Store
	// Dial opens connections (through the tunnel where it must).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Self returns our AE title and port as they are now.
	Self  func() Self
	Event EventFunc
	Log   *slog.Logger
	DIMSE dimse.Config
	// Commitments is shared by every forwarder and the SCP, where most
	// commitment reports arrive.
	Commitments *Commitments
	// RetryMin and RetryMax bound the exponential backoff.
	RetryMin, RetryMax time.Duration
	// StallAfter: an open association with nothing moving for this long
	// while instances wait is reported as stalled.
	StallAfter time.Duration
	// Counters are the destination's since relaisd started; nil: the
	// forwarder keeps its own.
	Counters *Counters
}

const (
	leaseBatch = 32
	leaseFor   = 15 * time.Minute
	idlePoll   = 5 * time.Second
)

// Forwarder delivers one destination's queue. Its goroutines are started
// by Start and stopped, and waited for, by Stop; it takes no lock of its
// owner's, so the owner may stop it while holding its own.
type Forwarder struct {
	dest   config.Destination
	deps   Deps
	ctx    context.Context
	cancel context.CancelFunc
	wakeCh chan struct{}
	wg     sync.WaitGroup
	commit *tracker // nil without commitment

	mu           sync.Mutex
	failures     int       // consecutive failed connections
	failingSince time.Time // first of them (kept in the store)
	lastErr      string
	openUntil    time.Time // no new connection before
	dialing      int       // workers dialing
	open         int       // workers with an open association
	progressAt   time.Time // bytes last moved, an association was accepted, or an instance delivered
	sending      string    // study being sent
}

// New makes a forwarder for dest; Start runs it.
func New(dest config.Destination, deps Deps) *Forwarder {
	f := &Forwarder{dest: dest, deps: deps, wakeCh: make(chan struct{}, 1)}
	if deps.StallAfter == 0 {
		f.deps.StallAfter = 2 * time.Minute
	}
	if deps.Counters == nil {
		f.deps.Counters = &Counters{}
	}
	if rec, err := deps.Store.DestinationRecord(dest.Name); err == nil {
		f.failures, f.failingSince, f.lastErr = rec.Failures, rec.FailingSince, rec.LastError
	}
	if dest.Commitment {
		f.commit = newTracker(f)
	}
	return f
}

// Destination is what f delivers to.
func (f *Forwarder) Destination() config.Destination { return f.dest }

// Start runs the workers (and the commitment tracker) until Stop or ctx ends.
// A paused destination runs nothing.
func (f *Forwarder) Start(ctx context.Context) {
	f.ctx, f.cancel = context.WithCancel(ctx)
	if f.dest.Paused {
		return
	}
	for range f.dest.Workers() {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.work()
		}()
	}
	if f.commit != nil {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.commit.run()
		}()
	}
}

// Stop ends the forwarder's associations and waits for its goroutines.
func (f *Forwarder) Stop() {
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
	if f.commit != nil {
		f.deps.Commitments.forgetTracker(f.commit)
	}
}

// Wake tells the forwarder that something new is queued.
func (f *Forwarder) Wake() {
	select {
	case f.wakeCh <- struct{}{}:
	default:
	}
}

// RetryNow closes the breaker: the next connection is tried at once.
func (f *Forwarder) RetryNow() {
	f.mu.Lock()
	f.openUntil = time.Time{}
	f.mu.Unlock()
	f.Wake()
}

// sleep waits d, or until wake fires (nil: never); false when stopping.
func (f *Forwarder) sleep(d time.Duration, wake <-chan struct{}) bool {
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

func (f *Forwarder) work() {
	var bg behind
	defer bg.wait()
	l := &link{f: f}
	defer l.close()
	var leaseErr string // logged once while it lasts: gokrazy keeps 100 lines
	for f.ctx.Err() == nil {
		f.mu.Lock()
		wait := time.Until(f.openUntil)
		f.mu.Unlock()
		if wait > 0 {
			l.close()
			// The breaker is open: don't knock on a dead door for each new instance.
			if !f.sleep(wait, nil) {
				return
			}
		}
		entries, err := f.deps.Store.Lease(f.ctx, f.dest.Name, leaseBatch, leaseFor)
		if err == nil {
			leaseErr = ""
		}
		if err != nil || len(entries) == 0 {
			if err != nil && f.ctx.Err() == nil && err.Error() != leaseErr {
				leaseErr = err.Error()
				f.deps.Log.Error("lease from queue (said once while it lasts)", "dest", f.dest.Name, "err", err)
			}
			l.close() // nothing to send on it now
			f.sleep(idlePoll, f.wakeCh)
			continue
		}
		f.send(entries, &bg, l)
	}
}

// backoff is the wait after n consecutive failures: exponential, capped,
// with jitter so a fleet of boxes doesn't knock in step.
func (f *Forwarder) backoff(n int) time.Duration {
	d := f.deps.RetryMin
	for i := 1; i < n && d < f.deps.RetryMax; i++ {
		d *= 2
	}
	d = min(d, f.deps.RetryMax)
	return d/2 + rand.N(d/2+1)
}

// connectionFailed counts a failed connection against the destination,
// opens the breaker, and keeps the count in the store.
func (f *Forwarder) connectionFailed(err error) {
	now := time.Now()
	f.mu.Lock()
	f.failures++
	if f.failures == 1 || f.failingSince.IsZero() {
		f.failingSince = now
	}
	f.lastErr = Explain(f.dest, f.deps.Self().AETitle, err)
	n, since, msg := f.failures, f.failingSince, f.lastErr
	f.openUntil = now.Add(f.backoff(n))
	f.mu.Unlock()
	f.persist(n, since, msg)
	// Tell the technician when it starts and then now and again, not at each try.
	if n == 1 || n%10 == 0 {
		f.deps.Event(store.KindRetry, store.Warning, fmt.Sprintf("%s unreachable for %v (attempt %d), retrying: %s",
			f.dest.Name, now.Sub(since).Round(time.Second), n, msg), f.attrs())
	}
}

// connected records an accepted association: the destination answers.
func (f *Forwarder) connected() {
	f.mu.Lock()
	recovered := f.failures > 0
	since := f.failingSince
	f.failures, f.failingSince, f.lastErr, f.openUntil = 0, time.Time{}, "", time.Time{}
	f.progressAt = time.Now()
	f.mu.Unlock()
	if recovered {
		f.persist(0, time.Time{}, "")
		f.deps.Event(store.KindForward, store.Info, fmt.Sprintf("%s reachable again after %v", f.dest.Name, time.Since(since).Round(time.Second)), f.attrs())
	}
}

func (f *Forwarder) persist(n int, since time.Time, msg string) {
	_, err := f.deps.Store.UpdateDestination(f.dest.Name, func(d *store.Destination) {
		d.Failures, d.FailingSince, d.LastError = n, since, msg
	})
	if err != nil {
		f.deps.Log.Error("record destination failures", "dest", f.dest.Name, "err", err)
	}
}

func (f *Forwarder) attrs() map[string]string { return map[string]string{"dest": f.dest.Name} }

// Status is a snapshot of what the forwarder is doing.
type Status struct {
	State        control.DestinationState
	LastError    string
	Attempts     int
	FailingSince time.Time
	NextAttempt  time.Time
	StalledFor   time.Duration
	Sending      string
	Delivered    int64
	BytesSent    int64
	LastSuccess  time.Time
	Commitment   control.Commitment
}

// Status reports what f is doing now.
func (f *Forwarder) Status() Status {
	f.mu.Lock()
	s := Status{
		State: control.DestIdle, LastError: f.lastErr, Attempts: f.failures, FailingSince: f.failingSince,
		Sending: f.sending, Delivered: f.deps.Counters.Delivered.Load(), BytesSent: f.deps.Counters.BytesSent.Load(),
		LastSuccess: f.deps.Counters.LastSuccess(),
	}
	switch {
	case f.dest.Paused:
		s.State = control.DestPaused
	case f.open > 0 && time.Since(f.progressAt) > f.deps.StallAfter:
		s.State, s.StalledFor = control.DestStalled, time.Since(f.progressAt)
	case f.failures > 0:
		s.State, s.NextAttempt = control.DestRetrying, f.openUntil
	case f.open > 0:
		s.State = control.DestSending
	case f.dialing > 0:
		s.State = control.DestConnecting
	}
	f.mu.Unlock()
	if f.commit != nil {
		s.Commitment = f.commit.status()
	}
	return s
}
