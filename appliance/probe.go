package appliance

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/store"
)

// The box's own C-ECHO: the evidence that it receives. The listener
// accepting connections says only that the kernel hands them over; an
// echo answered says that associations are served. Every 45 s
// (probeEvery), and when the status is asked and the last probe is older
// than a third of that, the appliance opens an association to its own SCP, on the address it
// listens on, with its own AE title (admitted as the box itself: Admit),
// and sends a C-ECHO. The probe is no reception: it is logged at debug
// level, and only its turns (not answered, answered again) are events.

const (
	probeEvery   = 45 * time.Second
	probeTimeout = 5 * time.Second // an SCP slower than this to echo does not answer
	probeWait    = time.Second     // how long a status waits for a fresh probe
)

// probeState is the last probe's outcome.
type probeState struct {
	mu       sync.Mutex
	at       time.Time     // when the last probe ended; zero before the first
	err      error         // why it failed; nil when it was answered
	since    time.Time     // the first of the current run of failures
	answered time.Time     // the last probe answered
	ended    chan struct{} // closed (and replaced) when a probe ends
	kick     chan struct{} // asks the loop for a probe now
}

func newProbeState() probeState {
	return probeState{ended: make(chan struct{}), kick: make(chan struct{}, 1)}
}

// probeResult is a copy of the state, for the status.
type probeResult struct {
	at, since, answered time.Time
	err                 error
}

func (p *probeState) result() (probeResult, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return probeResult{at: p.at, since: p.since, answered: p.answered, err: p.err}, p.ended
}

// probeEvery is the period of the probe (Options.ProbeEvery in tests).
func (a *Appliance) probeEvery() time.Duration {
	if a.opts.ProbeEvery > 0 {
		return a.opts.ProbeEvery
	}
	return probeEvery
}

// probeLoop probes at once, then every probeEvery and when a status asks.
func (a *Appliance) probeLoop(ctx context.Context) {
	t := time.NewTicker(a.probeEvery())
	defer t.Stop()
	for {
		a.probe(ctx)
		a.checkTunnelServices(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.probeState.kick:
		}
	}
}

// probe echoes the box's own SCP once and records the outcome; a change
// from answered to not, or back, is an event.
func (a *Appliance) probe(ctx context.Context) {
	cfg := a.Config()
	addr := a.selfAddr()
	if addr == "" {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	status, _, err := dimse.Echo(pctx, addr, dimse.DialParams{CallingAE: cfg.AETitle, CalledAE: cfg.AETitle, Config: dimse.Config{ARTIM: probeTimeout}})
	cancel()
	if ctx.Err() != nil {
		return // shutting down: says nothing of the SCP
	}
	if err == nil && status != dimse.StatusSuccess {
		err = fmt.Errorf("C-ECHO status %s", status)
	}
	// The event is written before the outcome is published, so a status
	// that shows the change finds its event in the log. Only probeLoop
	// probes: nothing changes p in between.
	p := &a.probeState
	now := time.Now()
	p.mu.Lock()
	failing, was, since := err != nil, p.err != nil, p.since
	p.mu.Unlock()
	switch {
	case failing && !was:
		a.event(store.KindAssociation, store.Error, fmt.Sprintf("the DICOM service does not answer an echo from the box itself (%s): %v; modalities cannot send", addr, err),
			map[string]string{"address": addr})
	case !failing && was:
		a.event(store.KindAssociation, store.Info, fmt.Sprintf("the DICOM service answers an echo from the box itself again, after %v", now.Sub(since).Round(time.Second)),
			map[string]string{"address": addr})
	}
	p.mu.Lock()
	p.at, p.err = now, err
	switch {
	case !failing:
		p.answered = now
	case !was:
		p.since = now
	}
	close(p.ended)
	p.ended = make(chan struct{})
	p.mu.Unlock()
}

// probeResult returns the last probe's outcome, probing first (waiting up
// to probeWait) when it is older than a third of the period.
func (a *Appliance) probeResult(ctx context.Context) probeResult {
	r, ended := a.probeState.result()
	if r.at.IsZero() || time.Since(r.at) <= a.probeEvery()/3 {
		return r // none yet (the loop's first is under way), or fresh
	}
	select {
	case a.probeState.kick <- struct{}{}:
	default: // already asked
	}
	t := time.NewTimer(probeWait)
	defer t.Stop()
	select {
	case <-ended:
	case <-t.C:
	case <-ctx.Done():
	}
	r, _ = a.probeState.result()
	return r
}

// selfAddr is where the SCP listens, as the box reaches it: the loopback
// address when it listens on all addresses.
func (a *Appliance) selfAddr() string {
	addr, ok := a.Addr().(*net.TCPAddr)
	if !ok {
		return ""
	}
	ip := addr.AddrPort().Addr().Unmap()
	if ip.IsUnspecified() {
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(addr.Port))
}

// fromSelf tells whether a caller's address is the box's own: loopback,
// or the one address the SCP listens on (the box calling it comes from it).
func (a *Appliance) fromSelf(ip netip.Addr) bool {
	if ip.IsLoopback() {
		return true
	}
	addr, ok := a.Addr().(*net.TCPAddr)
	return ok && addr.AddrPort().Addr().Unmap() == ip
}

// quietAssociation tells dimse which associations to log at debug level:
// the box's own (the probe, the update guard's echo).
func (a *Appliance) quietAssociation(assoc *dimse.Association) bool {
	return assoc.CallingAE() == a.Config().AETitle && a.fromSelf(addrOf(assoc.RemoteAddr()))
}
