package appliance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/store"
)

// Storage Commitment for modalities: we answer those that ask us, from the
// store. Asking destinations is appliance/forward's.

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
