package appliance

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/store"
)

// Storage Commitment in both directions: we ask each destination that
// supports it to commit what it received (proof of delivery, and the
// condition for purging), and we answer modalities that ask us.

// commitRequest is an outstanding request of ours.
type commitRequest struct {
	dest  string
	study string
	uids  map[string]bool
	at    time.Time
}

// reaskAfter is how long we wait for a report before asking again.
const reaskAfter = 10 * time.Minute

// newUID makes a 2.25 UID from 128 random bits (PS3.5 B.2).
func newUID() string {
	var b [16]byte
	rand.Read(b[:])
	return "2.25." + new(big.Int).SetBytes(b[:]).String()
}

func (f *forwarder) commitLoop() {
	defer f.wg.Done()
	quiet := time.Duration(f.dest.CommitAfterSeconds) * time.Second
	if quiet == 0 {
		quiet = 30 * time.Second
	}
	tick := min(quiet/2, 10*time.Second)
	for f.sleep(tick, nil) { // the wake channel belongs to the workers
		if f.failuresNow() > 0 {
			continue
		}
		f.forgetOld()
		entries, err := f.a.store.AwaitingCommitment(f.dest.Name)
		if err != nil {
			f.a.log.Error("commitment check", "dest", f.dest.Name, "err", err)
			continue
		}
		byStudy := map[string][]store.Entry{}
		for _, e := range entries {
			byStudy[e.StudyInstanceUID] = append(byStudy[e.StudyInstanceUID], e)
		}
		for study, es := range byStudy {
			if f.ctx.Err() != nil {
				return
			}
			st, err := f.a.store.StudyRecord(study)
			if err != nil || time.Since(st.LastReceived) < quiet {
				continue
			}
			f.mu.Lock()
			asked := f.asked[study]
			f.mu.Unlock()
			if time.Since(asked) < reaskAfter {
				continue
			}
			if err := f.askCommitment(study, es); err != nil {
				f.a.log.Warn("storage commitment request failed", "dest", f.dest.Name, "study", study, "err", err)
				continue
			}
			f.mu.Lock()
			f.asked[study] = time.Now()
			f.mu.Unlock()
		}
	}
}

// forgetOld drops requests nobody answered and old "asked" marks, so
// neither map grows for ever; the studies are simply asked again.
func (f *forwarder) forgetOld() {
	f.mu.Lock()
	for study, at := range f.asked {
		if time.Since(at) > 2*reaskAfter {
			delete(f.asked, study)
		}
	}
	f.mu.Unlock()
	f.a.mu.Lock()
	for tx, r := range f.a.commits {
		if r.dest == f.dest.Name && time.Since(r.at) > 2*reaskAfter {
			delete(f.a.commits, tx)
		}
	}
	f.a.mu.Unlock()
}

func (f *forwarder) failuresNow() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failures
}

// askCommitment sends one N-ACTION for a study's delivered instances and
// gives the destination a moment to report on the same association; most
// report on a new one, to our SCP.
func (f *forwarder) askCommitment(study string, es []store.Entry) error {
	req := &commitRequest{dest: f.dest.Name, study: study, uids: map[string]bool{}, at: time.Now()}
	var refs []dimse.SOPRef
	for _, e := range es {
		r, err := f.a.store.Instance(e.SOPInstanceUID)
		if err != nil {
			continue
		}
		refs = append(refs, dimse.SOPRef{SOPClassUID: r.SOPClassUID, SOPInstanceUID: r.SOPInstanceUID})
		req.uids[r.SOPInstanceUID] = true
	}
	if len(refs) == 0 {
		return nil
	}
	tx := newUID()
	f.a.mu.Lock()
	f.a.commits[tx] = req
	f.a.mu.Unlock()
	forget := func() {
		f.a.mu.Lock()
		delete(f.a.commits, tx)
		f.a.mu.Unlock()
	}
	assoc, err := f.dial(nil)
	if err != nil {
		forget()
		return err
	}
	defer assoc.Close()
	status, err := assoc.RequestCommit(f.ctx, &dimse.CommitRequest{TransactionUID: tx, Refs: refs})
	if err == nil && !status.Success() {
		err = fmt.Errorf("%s answered %v to the commitment request", f.dest.Name, status)
	}
	if err != nil {
		forget()
		return err
	}
	f.a.event(store.KindCommit, store.Info, fmt.Sprintf("asked %s to commit %d instance(s) of study %s", f.dest.Name, len(refs), study),
		map[string]string{"dest": f.dest.Name, "study": study, "transaction": tx})
	// Stay a little for a report on this association.
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	for {
		f.a.mu.Lock()
		_, waiting := f.a.commits[tx]
		f.a.mu.Unlock()
		if !waiting {
			return nil
		}
		select {
		case <-t.C:
			return nil
		case <-f.ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// commitReport handles an N-EVENT-REPORT from a destination, on our
// association or on one it opened to us.
func (a *Appliance) commitReport(_ context.Context, assoc *dimse.Association, rep *dimse.CommitReport) dimse.Status {
	a.mu.Lock()
	req := a.commits[rep.TransactionUID]
	delete(a.commits, rep.TransactionUID)
	a.mu.Unlock()
	if req == nil {
		a.event(store.KindCommit, store.Warning, fmt.Sprintf("commitment report from %s for unknown transaction %s ignored", assoc.CallingAE(), rep.TransactionUID), nil)
		return dimse.StatusSuccess
	}
	var ok []string
	for _, r := range rep.Committed {
		if req.uids[r.SOPInstanceUID] {
			ok = append(ok, r.SOPInstanceUID)
		}
	}
	if len(ok) > 0 {
		if err := a.store.Committed(req.dest, ok...); err != nil {
			a.log.Error("record commitment", "dest", req.dest, "err", err)
			return dimse.StatusProcessingFailure
		}
	}
	attrs := map[string]string{"dest": req.dest, "study": req.study, "transaction": rep.TransactionUID}
	if len(rep.Failed) > 0 {
		a.event(store.KindCommit, store.Warning, fmt.Sprintf("%s does not hold %d instance(s) of study %s that it had accepted; they are kept and commitment will be asked again",
			req.dest, len(rep.Failed), req.study), attrs)
	}
	a.event(store.KindCommit, store.Info, fmt.Sprintf("%s committed %d instance(s) of study %s", req.dest, len(ok), req.study), attrs)
	return dimse.StatusSuccess
}

// commitForModality answers a modality's commitment request from the store;
// the report goes on the same association if it is still open, else on a
// new one to the modality's SCP.
func (a *Appliance) commitForModality(_ context.Context, assoc *dimse.Association, req *dimse.CommitRequest) dimse.Status {
	rep := &dimse.CommitReport{TransactionUID: req.TransactionUID, RetrieveAE: a.Config().AETitle}
	for _, r := range req.Refs {
		inst, err := a.store.Instance(r.SOPInstanceUID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			r.FailureReason = dimse.FailureNoSuchObject
			rep.Failed = append(rep.Failed, r)
		case err != nil:
			r.FailureReason = dimse.FailureProcessing
			rep.Failed = append(rep.Failed, r)
		case r.SOPClassUID != "" && inst.SOPClassUID != r.SOPClassUID:
			r.FailureReason = dimse.FailureClassInstanceConflict
			rep.Failed = append(rep.Failed, r)
		default:
			rep.Committed = append(rep.Committed, r)
		}
	}
	caller := assoc.CallingAE()
	remote := addrOf(assoc.RemoteAddr())
	go a.reportToModality(assoc, caller, remote, rep)
	return dimse.StatusSuccess
}

func (a *Appliance) reportToModality(assoc *dimse.Association, caller string, remote netip.Addr, rep *dimse.CommitReport) {
	ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	defer cancel()
	attrs := map[string]string{"calling_ae": caller, "transaction": rep.TransactionUID}
	done := func(how string) {
		a.event(store.KindCommit, store.Info, fmt.Sprintf("commitment report sent to %s %s: %d committed, %d failed",
			caller, how, len(rep.Committed), len(rep.Failed)), attrs)
	}
	select {
	case <-assoc.Done():
	default:
		if st, err := assoc.SendCommitReport(ctx, rep); err == nil && st.Success() {
			done("on its association")
			return
		}
	}
	cfg := a.Config()
	port := 0
	for _, m := range cfg.Modalities {
		if m.AETitle == caller && m.Port != 0 {
			port = m.Port
		}
	}
	if port == 0 {
		a.event(store.KindCommit, store.Warning, fmt.Sprintf("commitment report for %s not sent: it closed its association and no port is configured for it", caller), attrs)
		return
	}
	out, err := dimse.Dial(ctx, net.JoinHostPort(remote.String(), strconv.Itoa(port)), dimse.DialParams{
		CallingAE: cfg.AETitle,
		CalledAE:  caller,
		Proposals: []dimse.Proposal{{AbstractSyntax: dimse.StorageCommitmentSOPClass, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}}},
		// We open the association but play the commitment SCP role (PS3.4 J.3.3).
		Roles:  []dimse.RoleSelection{{SOPClass: dimse.StorageCommitmentSOPClass, SCU: false, SCP: true}},
		Config: a.opts.DIMSE,
		Dial:   a.dial,
	})
	if err != nil {
		a.event(store.KindCommit, store.Warning, fmt.Sprintf("commitment report for %s not sent: %v", caller, err), attrs)
		return
	}
	defer out.Close()
	if st, err := out.SendCommitReport(ctx, rep); err != nil || !st.Success() {
		a.event(store.KindCommit, store.Warning, fmt.Sprintf("commitment report for %s not accepted: %v %v", caller, st, err), attrs)
		return
	}
	done("on a new association")
}
