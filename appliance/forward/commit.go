package forward

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/store"
)

// Storage Commitment towards destinations: proof of delivery, and the
// condition for purging. A study is asked for as soon as every one of its
// instances is delivered and it has been quiet for the destination's
// CommitAfter; instances delivered later are asked for at once in a new
// request. A refused or unanswered request is an alarm that says what the
// center must register.

const (
	// unanswered: a request the destination accepted but never reported on
	// is asked again after this (and said).
	unanswered = 5 * time.Minute
	// rescanEvery: the queue is read for delivered, uncommitted instances
	// this often (and at start), in case a trigger was missed (a restart).
	rescanEvery = 5 * time.Minute
	// commitTick is how often due studies are looked at (memory only).
	commitTick = time.Second
	// reportWait: after asking, stay this long on the association for a
	// report on it; most destinations report on a new association.
	reportWait = 5 * time.Second
)

// Commitments are the outstanding requests of every destination by
// transaction UID, shared with the SCP where most reports arrive.
type Commitments struct {
	event EventFunc
	mu    sync.Mutex
	byTx  map[string]*request
}

// NewCommitments makes the registry; event records reports nobody asked for.
func NewCommitments(event EventFunc) *Commitments {
	return &Commitments{event: event, byTx: map[string]*request{}}
}

type request struct {
	tr    *tracker
	tx    string
	study string
	uids  map[string]bool
	at    time.Time
}

func (c *Commitments) add(r *request) {
	c.mu.Lock()
	c.byTx[r.tx] = r
	c.mu.Unlock()
}

// take removes and returns the request of tx (nil if none).
func (c *Commitments) take(tx string) *request {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.byTx[tx]
	delete(c.byTx, tx)
	return r
}

func (c *Commitments) pending(tx string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byTx[tx] != nil
}

func (c *Commitments) forgetTracker(t *tracker) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for tx, r := range c.byTx {
		if r.tr == t {
			delete(c.byTx, tx)
		}
	}
}

// Report handles an N-EVENT-REPORT from a destination, on our association
// or on one it opened to us (the SCP's handler).
func (c *Commitments) Report(_ context.Context, assoc *dimse.Association, rep *dimse.CommitReport) dimse.Status {
	r := c.take(rep.TransactionUID)
	if r == nil {
		c.event(store.KindCommit, store.Warning, fmt.Sprintf("commitment report from %s for unknown transaction %s ignored", assoc.CallingAE(), rep.TransactionUID), nil)
		return dimse.StatusSuccess
	}
	return r.tr.reported(r, rep)
}

// tracker asks one destination for commitment. Its state has its own lock.
type tracker struct {
	f *Forwarder

	mu           sync.Mutex
	dueAt        map[string]time.Time       // study → when to ask
	asked        map[string]map[string]bool // study → uids in outstanding requests
	failures     int
	failingSince time.Time
	lastErr      string
	lastReport   time.Time
}

func newTracker(f *Forwarder) *tracker {
	return &tracker{f: f, dueAt: map[string]time.Time{}, asked: map[string]map[string]bool{}}
}

// due asks for study's commitment once it has been quiet long enough.
func (t *tracker) due(study string, lastReceived time.Time) {
	at := t.quietAt(lastReceived, time.Now())
	t.mu.Lock()
	if old, ok := t.dueAt[study]; !ok || at.Before(old) {
		t.dueAt[study] = at
	}
	t.mu.Unlock()
}

// quietAt is when a study last received at last has been quiet long
// enough to ask: counted on the clock as it is now, so a study received
// before the clock was set back is not held as long again (store.Since).
func (t *tracker) quietAt(last, now time.Time) time.Time {
	left := t.f.dest.CommitAfter() - min(store.Since(last, now), t.f.dest.CommitAfter())
	return now.Add(left)
}

func (t *tracker) run() {
	f := t.f
	t.rescan()
	last := time.Now()
	for f.sleep(commitTick, nil) {
		if time.Since(last) >= rescanEvery {
			t.rescan()
			last = time.Now()
		}
		t.expire()
		for _, study := range t.studiesDue() {
			if f.ctx.Err() != nil {
				return
			}
			t.ask(study)
		}
	}
}

// rescan finds delivered, uncommitted instances nobody asked for.
func (t *tracker) rescan() {
	es, err := t.f.deps.Store.AwaitingCommitment(t.f.ctx, t.f.dest.Name)
	if err != nil {
		if t.f.ctx.Err() == nil { // not a read cut by the forwarder's stop
			t.f.deps.Log.Error("commitment check", "dest", t.f.dest.Name, "err", err)
		}
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range es {
		if t.asked[e.StudyInstanceUID][e.SOPInstanceUID] {
			continue
		}
		if _, ok := t.dueAt[e.StudyInstanceUID]; !ok {
			t.dueAt[e.StudyInstanceUID] = time.Now() // ask() checks the quiet period
		}
	}
}

func (t *tracker) studiesDue() []string {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for study, at := range t.dueAt {
		if !now.Before(at) {
			out = append(out, study)
		}
	}
	return out
}

// expire gives up on requests never answered: they are said, and asked again.
func (t *tracker) expire() {
	c := t.f.deps.Commitments
	var late []*request
	c.mu.Lock()
	for tx, r := range c.byTx {
		if r.tr == t && time.Since(r.at) > unanswered {
			late = append(late, r)
			delete(c.byTx, tx)
		}
	}
	c.mu.Unlock()
	for _, r := range late {
		t.forget(r)
		t.failed(fmt.Errorf("%s accepted the commitment request for study %s %v ago and never reported: check that it can open an association back to this box",
			t.f.dest.Name, r.study, time.Since(r.at).Round(time.Second)), r.study)
	}
}

func (t *tracker) forget(r *request) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for uid := range r.uids {
		delete(t.asked[r.study], uid)
	}
	if len(t.asked[r.study]) == 0 {
		delete(t.asked, r.study)
	}
}

// ask sends one N-ACTION for the study's delivered instances not asked for yet.
func (t *tracker) ask(study string) {
	f := t.f
	st, err := f.deps.Store.StudyRecord(study)
	if err != nil {
		t.done(study) // purged or gone
		return
	}
	now := time.Now()
	if quiet := t.quietAt(st.LastReceived, now); now.Before(quiet) {
		t.mu.Lock()
		t.dueAt[study] = quiet
		t.mu.Unlock()
		return
	}
	es, err := f.deps.Store.StudyEntries(f.ctx, f.dest.Name, study)
	if err != nil {
		if f.ctx.Err() == nil { // not a read cut by the forwarder's stop
			f.deps.Log.Error("commitment: read study", "dest", f.dest.Name, "study", study, "err", err)
		}
		t.retryLater(study)
		return
	}
	r := &request{tr: t, tx: newUID(), study: study, uids: map[string]bool{}, at: time.Now()}
	var refs []dimse.SOPRef
	t.mu.Lock()
	for _, e := range es {
		if e.State != store.Delivered || t.asked[study][e.SOPInstanceUID] {
			continue
		}
		rec, err := f.deps.Store.Instance(e.SOPInstanceUID)
		if err != nil {
			continue
		}
		refs = append(refs, dimse.SOPRef{SOPClassUID: rec.SOPClassUID, SOPInstanceUID: rec.SOPInstanceUID})
		r.uids[rec.SOPInstanceUID] = true
	}
	delete(t.dueAt, study)
	if len(refs) > 0 {
		if t.asked[study] == nil {
			t.asked[study] = map[string]bool{}
		}
		for uid := range r.uids {
			t.asked[study][uid] = true
		}
	}
	t.mu.Unlock()
	if len(refs) == 0 {
		return
	}
	f.deps.Commitments.add(r)
	if err := t.send(r, refs); err != nil {
		f.deps.Commitments.take(r.tx)
		t.forget(r)
		t.failed(err, study)
	}
}

func (t *tracker) send(r *request, refs []dimse.SOPRef) error {
	f := t.f
	assoc, err := f.dial(nil)
	if err != nil {
		return fmt.Errorf("commitment request for study %s: %s", r.study, Explain(f.dest, f.deps.Self().AETitle, err))
	}
	defer assoc.Close()
	status, err := assoc.RequestCommit(f.ctx, &dimse.CommitRequest{TransactionUID: r.tx, Refs: refs})
	if err == nil && !status.Success() {
		err = fmt.Errorf("it answered %v", status)
	}
	if err != nil {
		self := f.deps.Self()
		return fmt.Errorf("%s refuses Storage Commitment (%v): register this box at the center's PACS as AE title %s, address %s, port %d",
			f.dest.Name, err, self.AETitle, hostOf(assoc.LocalAddr().String()), self.Port)
	}
	f.deps.Event(store.KindCommit, store.Info, fmt.Sprintf("asked %s to commit %d instance(s) of study %s", f.dest.Name, len(refs), r.study),
		map[string]string{"dest": f.dest.Name, "study": r.study, "transaction": r.tx})
	// Stay a little for a report on this association.
	deadline := time.NewTimer(reportWait)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for f.deps.Commitments.pending(r.tx) {
		select {
		case <-deadline.C:
			return nil
		case <-f.ctx.Done():
			return nil
		case <-tick.C:
		}
	}
	return nil
}

// failed records a failed or unanswered request and asks again later.
func (t *tracker) failed(err error, study string) {
	t.f.deps.Counters.CommitFailures.Add(1)
	t.mu.Lock()
	t.failures++
	if t.failures == 1 {
		t.failingSince = time.Now()
	}
	n := t.failures
	t.lastErr = err.Error()
	t.dueAt[study] = time.Now().Add(t.f.backoff(n))
	t.mu.Unlock()
	if n == 1 || n%10 == 0 {
		t.f.deps.Event(store.KindCommit, store.Warning, fmt.Sprintf("%s (attempt %d); asking again", err, n),
			map[string]string{"dest": t.f.dest.Name, "study": study})
	}
}

func (t *tracker) retryLater(study string) {
	t.mu.Lock()
	t.dueAt[study] = time.Now().Add(t.f.deps.RetryMax)
	t.mu.Unlock()
}

func (t *tracker) done(study string) {
	t.mu.Lock()
	delete(t.dueAt, study)
	t.mu.Unlock()
}

// reported records a report: committed instances are done; those the
// destination says it does not hold are sent again (charged to them, so
// one the destination never keeps ends parked, not in a loop).
func (t *tracker) reported(r *request, rep *dimse.CommitReport) dimse.Status {
	f := t.f
	t.forget(r)
	var ok []string
	for _, ref := range rep.Committed {
		if r.uids[ref.SOPInstanceUID] {
			ok = append(ok, ref.SOPInstanceUID)
		}
	}
	if len(ok) > 0 {
		if err := f.deps.Store.Committed(f.dest.Name, ok...); err != nil {
			f.deps.Log.Error("record commitment", "dest", f.dest.Name, "err", err)
			return dimse.StatusProcessingFailure
		}
		f.deps.Counters.Committed.Add(int64(len(ok)))
	}
	t.mu.Lock()
	recovered := t.failures > 0
	t.failures, t.failingSince, t.lastErr, t.lastReport = 0, time.Time{}, "", time.Now()
	t.mu.Unlock()
	attrs := map[string]string{"dest": f.dest.Name, "study": r.study, "transaction": rep.TransactionUID}
	if recovered {
		f.deps.Event(store.KindCommit, store.Info, fmt.Sprintf("%s answers Storage Commitment again", f.dest.Name), attrs)
	}
	var lost int
	attempts := map[string]int{} // read once: a report may fail many instances
	if len(rep.Failed) > 0 {
		if es, err := f.deps.Store.StudyEntries(f.ctx, f.dest.Name, r.study); err == nil {
			for _, e := range es {
				attempts[e.SOPInstanceUID] = e.Attempts
			}
		}
	}
	for _, ref := range rep.Failed {
		if !r.uids[ref.SOPInstanceUID] {
			continue
		}
		lost++
		got, err := f.deps.Store.Failed(f.dest.Name, ref.SOPInstanceUID, store.Failure{
			Reason:     fmt.Sprintf("%s accepted it but does not hold it (commitment failure reason 0x%04X)", f.dest.Name, ref.FailureReason),
			RetryAt:    time.Now().Add(f.backoff(attempts[ref.SOPInstanceUID] + 1)),
			ParkAfter:  f.dest.ParkAfter(),
			Undelivers: true,
		})
		if err != nil {
			f.deps.Log.Error("record commitment failure", "dest", f.dest.Name, "err", err)
		} else {
			f.counted(got) // a failed (or parked) attempt, as a failed send is
		}
	}
	if lost > 0 {
		f.deps.Event(store.KindCommit, store.Warning, fmt.Sprintf("%s does not hold %d instance(s) of study %s that it had accepted; sending them again",
			f.dest.Name, lost, r.study), attrs)
		f.Wake()
	}
	f.deps.Event(store.KindCommit, store.Info, fmt.Sprintf("%s committed %d instance(s) of study %s", f.dest.Name, len(ok), r.study), attrs)
	return dimse.StatusSuccess
}

func (t *tracker) status() control.Commitment {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, uids := range t.asked {
		if len(uids) > 0 {
			n++
		}
	}
	return control.Commitment{Error: t.lastErr, FailingSince: t.failingSince, Outstanding: n, LastReport: t.lastReport}
}

// newUID makes a 2.25 UID from 128 random bits (PS3.5 B.2).
func newUID() string {
	var b [16]byte
	rand.Read(b[:])
	return "2.25." + new(big.Int).SetBytes(b[:]).String()
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
