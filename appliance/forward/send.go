package forward

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/appliance/part10"
	"github.com/relais/relais/store"
)

// dial opens an association to the destination proposing each instance's
// own SOP class and transfer syntax, one presentation context per pair.
func (f *Forwarder) dial(recs []store.Instance) (*dimse.Association, error) {
	seen := map[[2]string]bool{}
	props := []dimse.Proposal{dimse.VerificationProposal()}
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
	f.mu.Lock()
	f.dialing++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.dialing--
		f.mu.Unlock()
	}()
	return dimse.Dial(f.ctx, f.dest.Addr(), dimse.DialParams{
		CallingAE: f.deps.Self().AETitle,
		CalledAE:  f.dest.AETitle,
		Proposals: props,
		Handlers:  dimse.Handlers{CommitReport: f.deps.Commitments.Report},
		Config:    f.deps.DIMSE,
		Dial:      f.deps.Dial,
	})
}

// link is a worker's association, kept from one batch to the next while
// the queue has more for it: a new association per batch of 32 cost an
// association's setup and release, and the destination's own work at each,
// every 32 instances (storescu sends a whole series on one). It is closed
// when the queue is empty, so no association idles open at the
// destination.
type link struct {
	f     *Forwarder
	assoc *dimse.Association
}

// get returns the kept association if it accepted the SOP class and
// transfer syntax of each of recs, else a new one proposing them.
func (l *link) get(recs []store.Instance) (*dimse.Association, error) {
	if l.assoc != nil && !l.ended() && l.carries(recs) {
		return l.assoc, nil
	}
	l.close()
	assoc, err := l.f.dial(recs)
	if err != nil {
		return nil, err
	}
	l.f.connected()
	l.f.mu.Lock()
	l.f.open++
	l.f.mu.Unlock()
	l.assoc = assoc
	return assoc, nil
}

func (l *link) carries(recs []store.Instance) bool {
	for _, r := range recs {
		if _, ok := l.assoc.ContextFor(r.SOPClassUID, r.TransferSyntaxUID); !ok {
			return false
		}
	}
	return true
}

// ended says whether the association ended (aborted, cut or released).
func (l *link) ended() bool {
	if l.assoc == nil {
		return false
	}
	select {
	case <-l.assoc.Done():
		return true
	default:
		return false
	}
}

// close releases the association, if there is one.
func (l *link) close() {
	if l.assoc == nil {
		return
	}
	l.assoc.Close()
	l.assoc = nil
	l.f.mu.Lock()
	l.f.open--
	l.f.mu.Unlock()
}

// behind runs a worker's bookkeeping (recording deliveries, then the
// studies a batch finished) in the background, in order, one step at a
// time, while the worker sends the next instances: the destination is not
// kept waiting for our own disk. Its owner waits for it before the worker
// ends.
type behind struct{ wg sync.WaitGroup }

// then runs fn once the step before it is done.
func (b *behind) then(fn func()) {
	b.wg.Wait()
	b.wg.Go(fn)
}

func (b *behind) wait() { b.wg.Wait() }

// Deliveries are recorded a batch at a time, in one transaction: a commit
// is two device flushes, and each one the destination's own syncs wait
// behind when it shares the disk, as the CT being received meanwhile does.
// One commit per instance sent doubled the box's flushes while forwarding
// (a worn SD card feels each). After a crash the deliveries not yet
// recorded are sent again, which the destination takes as the same
// instances.
const (
	recordEvery = leaseBatch // deliveries
	// recordAfter: a delivery coming this long after the oldest one not
	// yet recorded records them all (large instances take seconds each).
	// The batch's end records the rest in any case.
	recordAfter = 2 * time.Second
)

// deliveries gathers one batch's deliveries for bg.
type deliveries struct {
	f     *Forwarder
	bg    *behind
	uids  []string
	since time.Time
}

func (d *deliveries) add(uid string) {
	if len(d.uids) == 0 {
		d.since = time.Now()
	}
	d.uids = append(d.uids, uid)
	if len(d.uids) >= recordEvery || time.Since(d.since) >= recordAfter {
		d.flush()
	}
}

// flush hands the gathered deliveries to bg.
func (d *deliveries) flush() {
	if len(d.uids) == 0 {
		return
	}
	uids, f := d.uids, d.f
	d.uids = nil
	d.bg.then(func() {
		if err := f.deps.Store.Delivered(f.dest.Name, uids...); err != nil {
			f.deps.Log.Error("record deliveries", "dest", f.dest.Name, "instances", len(uids), "err", err)
		}
	})
}

// send delivers a leased batch on l's association. An instance that fails
// is charged alone; the ones after it were not tried and go back as they
// were, to be leased again at once. Deliveries are recorded, and the
// batch's studies looked at, by bg.
func (f *Forwarder) send(entries []store.Entry, bg *behind, l *link) {
	recs := make([]store.Instance, 0, len(entries))
	byUID := make(map[string]store.Entry, len(entries))
	for _, e := range entries {
		r, err := f.deps.Store.Instance(e.SOPInstanceUID)
		if err != nil {
			f.instanceFailed(e, store.Instance{SOPInstanceUID: e.SOPInstanceUID, StudyInstanceUID: e.StudyInstanceUID},
				fmt.Sprintf("its stored record cannot be read (%v)", err), 1)
			continue
		}
		recs = append(recs, r)
		byUID[r.SOPInstanceUID] = e
	}
	if len(recs) == 0 {
		return
	}
	release := func(rs []store.Instance) {
		uids := make([]string, len(rs))
		for i, r := range rs {
			uids[i] = r.SOPInstanceUID
		}
		if err := f.deps.Store.Release(f.dest.Name, uids...); err != nil {
			f.deps.Log.Error("give back leased entries", "dest", f.dest.Name, "err", err)
		}
	}
	assoc, err := l.get(recs)
	if err != nil {
		release(recs)
		if f.ctx.Err() == nil {
			f.connectionFailed(err)
		}
		return
	}
	done := &deliveries{f: f, bg: bg}
	defer done.flush() // the batch ended early
	defer func() {
		f.mu.Lock()
		f.sending = ""
		f.mu.Unlock()
		if l.ended() {
			l.close()
		}
	}()
	// The next instance is read while the destination works on this one,
	// from the moment its last bytes are taken to be sent (read earlier,
	// it took the CPU the sending and the destination's receiving need);
	// two buffers take turns.
	var (
		bufs [2][]byte
		next *readAhead
	)
	defer func() {
		if next != nil {
			next.wait() // its goroutine ends before the batch does
		}
	}()
	for i, r := range recs {
		f.mu.Lock()
		f.sending = r.StudyInstanceUID
		f.mu.Unlock()
		e := byUID[r.SOPInstanceUID]
		this := next
		next = nil
		var sent func()
		if i+1 < len(recs) {
			sent = func() { next = f.readAhead(recs[i+1], bufs[(i+1)%2]) }
		}
		status, err := f.sendOne(assoc, r, this, sent)
		if this != nil && this.data != nil {
			bufs[i%2] = this.data[:0] // sent: free for the one after next
		}
		var noCtx *dimse.NoContextError
		switch {
		case err != nil && f.ctx.Err() != nil:
			release(recs[i:]) // stopping: nobody's fault
			return
		case errors.As(err, &noCtx):
			// Never converted: it waits until the destination takes its syntax.
			f.instanceFailed(e, r, fmt.Sprintf("%s does not accept %s for %s; it stays stored, unchanged",
				f.dest.Name, dimse.UIDName(r.TransferSyntaxUID), dimse.UIDName(r.SOPClassUID)), 0)
		case errors.Is(err, store.ErrCorrupt):
			f.copyDamaged(e, r, err)
			if assoc.Err() != nil {
				// Cut mid-stream, so the peer keeps none of it: the rest goes
				// on a new association, charged nothing.
				release(recs[i+1:])
				return
			}
		case err != nil:
			// The association died inside this instance: charge it, and go on
			// with the rest on a new association.
			f.instanceFailed(e, r, droppedReason(f.dest.Name, r, err), 0)
			release(recs[i+1:])
			l.close()
			return
		case status.Success():
			done.add(r.SOPInstanceUID)
			now := time.Now()
			f.deps.Counters.delivered(r.Size, now)
			f.mu.Lock()
			f.progressAt = now
			f.mu.Unlock()
		default:
			f.instanceFailed(e, r, fmt.Sprintf("%s refused it: %v", f.dest.Name, status), 0)
		}
	}
	done.flush()
	bg.then(func() { f.studiesDone(entries) })
}

// instanceFailed charges one failed attempt to e: it is retried after its
// own backoff, or parked after parkAfter attempts (0: the destination's
// setting).
func (f *Forwarder) instanceFailed(e store.Entry, r store.Instance, reason string, parkAfter int) {
	if parkAfter == 0 {
		parkAfter = f.dest.ParkAfter()
	}
	got, err := f.deps.Store.Failed(f.dest.Name, e.SOPInstanceUID, store.Failure{
		Reason: reason, RetryAt: time.Now().Add(f.backoff(e.Attempts + 1)), ParkAfter: parkAfter,
	})
	if err != nil {
		f.deps.Log.Error("record failed attempt", "dest", f.dest.Name, "sop_instance_uid", e.SOPInstanceUID, "err", err)
		return
	}
	f.counted(got)
	attrs := map[string]string{"dest": f.dest.Name, "study": r.StudyInstanceUID, "sop_instance_uid": e.SOPInstanceUID}
	switch got.State {
	case store.Parked:
		f.deps.Event(store.KindForward, store.Error, fmt.Sprintf("instance %s of study %s (%s) parked at %s after %d attempt(s): %s. Retry or abandon it (relais parked)",
			e.SOPInstanceUID, r.StudyInstanceUID, PatientToken, f.dest.Name, got.Attempts, reason), withPatient(attrs, r.PatientName))
	case store.Failed:
		if got.Attempts == 1 {
			f.deps.Event(store.KindRetry, store.Warning, fmt.Sprintf("instance %s of study %s not delivered to %s: %s; retrying it alone, the rest goes on",
				e.SOPInstanceUID, r.StudyInstanceUID, f.dest.Name, reason), attrs)
		}
	}
}

// counted counts a failed attempt, and the parking it may have caused.
func (f *Forwarder) counted(got store.Entry) {
	f.deps.Counters.FailedAttempts.Add(1)
	if got.State == store.Parked {
		f.deps.Counters.Parked.Add(1)
	}
}

// droppedReason says in plain words that the destination dropped the
// association on this instance, with the likely cause when its transfer
// syntax is one PACS often lack.
func droppedReason(dest string, r store.Instance, err error) string {
	msg := fmt.Sprintf("%s drops the connection on this instance (%v)", dest, err)
	switch r.TransferSyntaxUID {
	case dimse.ImplicitVRLittleEndian, dimse.ExplicitVRLittleEndian:
	default:
		msg += fmt.Sprintf("; its transfer syntax %s may not be supported there", dimse.UIDName(r.TransferSyntaxUID))
	}
	return msg
}

// studiesDone logs each study of the batch that has nothing left to try
// here — the line of the study's timeline the technician and the regional
// team look for, saying what was parked — and hands it to the commitment
// tracker at once. It reads the waiting index, then the study's entries.
func (f *Forwarder) studiesDone(entries []store.Entry) {
	seen := map[string]bool{}
	for _, e := range entries {
		if seen[e.StudyInstanceUID] {
			continue
		}
		seen[e.StudyInstanceUID] = true
		n, err := f.deps.Store.StudyWaiting(f.ctx, f.dest.Name, e.StudyInstanceUID, e.StudyFirstReceived)
		if err != nil || n > 0 {
			continue
		}
		st, err := f.deps.Store.StudyRecord(e.StudyInstanceUID)
		if err != nil {
			continue
		}
		es, err := f.deps.Store.StudyEntries(f.ctx, f.dest.Name, e.StudyInstanceUID)
		if err != nil {
			continue
		}
		var delivered, parked int
		for _, x := range es {
			switch x.State {
			case store.Delivered, store.Committed:
				delivered++
			case store.Parked:
				parked++
			}
		}
		attrs := withPatient(map[string]string{"dest": f.dest.Name, "study": e.StudyInstanceUID}, st.PatientName)
		if parked > 0 {
			f.deps.Event(store.KindForward, store.Warning, fmt.Sprintf("study %s (%s) delivered to %s but for %d parked instance(s): %d of %d delivered (relais parked)",
				e.StudyInstanceUID, PatientToken, f.dest.Name, parked, delivered, len(es)), attrs)
		} else {
			f.deps.Event(store.KindForward, store.Info, fmt.Sprintf("study %s (%s) delivered to %s: %d instance(s)",
				e.StudyInstanceUID, PatientToken, f.dest.Name, delivered), attrs)
		}
		if f.commit != nil && delivered > 0 {
			f.commit.due(e.StudyInstanceUID, st.LastReceived)
		}
	}
}

// sendOne sends one stored instance's data set, as stored: from memory when
// it was read ahead (pre, if not nil), else streamed from its file. sent,
// if not nil, runs once the stack has taken the last bytes to send, in this
// goroutine.
func (f *Forwarder) sendOne(assoc *dimse.Association, r store.Instance, pre *readAhead, sent func()) (dimse.Status, error) {
	var src io.Reader
	if pre != nil {
		data, err := pre.wait()
		switch {
		case err == nil:
			src = bytes.NewReader(data)
		case f.ctx.Err() != nil:
			return 0, f.ctx.Err() // stopping, not a damaged copy
		case errors.Is(err, store.ErrCorrupt):
			return 0, err // nothing was sent
		}
		// Any other error streams it from the file, where it is met again
		// as it always was.
	}
	if src == nil {
		rc := f.deps.Store.OpenInstance(f.ctx, r)
		defer rc.Close()
		src = rc
	}
	m, _, br, err := part10.ReadHeader(src)
	if err != nil {
		if f.ctx.Err() != nil {
			return 0, f.ctx.Err() // stopping, not a damaged copy
		}
		return 0, fmt.Errorf("%w: %w", store.ErrCorrupt, err) // ErrMissing stays visible
	}
	// Streamed, a hash mismatch at the end (store.ErrCorrupt) comes back
	// through Store: the stack reads one fragment ahead, so the last one is
	// never sent and the peer never holds a damaged instance.
	return assoc.Store(f.ctx, dimse.StoreParams{
		SOPClassUID:       r.SOPClassUID,
		SOPInstanceUID:    r.SOPInstanceUID,
		TransferSyntaxUID: m.TransferSyntaxUID,
	}, &progress{r: br, f: f, atEOF: sent})
}

// progress marks the forwarder as moving each time the stack takes bytes
// to send: a stalled destination stops taking them.
// It also runs atEOF, once, when the bytes end.
type progress struct {
	r     io.Reader
	f     *Forwarder
	atEOF func()
}

func (p *progress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.f.mu.Lock()
		p.f.progressAt = time.Now()
		p.f.mu.Unlock()
	}
	if err == io.EOF && p.atEOF != nil {
		p.atEOF()
		p.atEOF = nil
	}
	return n, err
}
