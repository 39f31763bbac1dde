package forward

import (
	"errors"
	"fmt"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/store"
)

// copyDamaged parks e at once: its stored copy on this box is damaged or
// missing, so no attempt can succeed until the sender sends it again (the
// store then queues the good copy by itself). Retrying would only loop. A
// copy replaced by a good one meanwhile is given back instead, to be sent.
func (f *Forwarder) copyDamaged(e store.Entry, r store.Instance, err error) {
	if cur, cerr := f.deps.Store.Instance(r.SOPInstanceUID); cerr == nil && cur.ID != r.ID {
		if err := f.deps.Store.Release(f.dest.Name, r.SOPInstanceUID); err != nil {
			f.deps.Log.Error("give back a replaced copy", "dest", f.dest.Name, "sop_instance_uid", r.SOPInstanceUID, "err", err)
		}
		return
	}
	reason := DamagedReason(r, err)
	got, ferr := f.deps.Store.Failed(f.dest.Name, e.SOPInstanceUID, store.Failure{Reason: reason, ParkAfter: 1})
	if ferr != nil {
		f.deps.Log.Error("record a damaged copy", "dest", f.dest.Name, "sop_instance_uid", e.SOPInstanceUID, "err", ferr)
		return
	}
	f.counted(got)
	attrs := map[string]string{"dest": f.dest.Name, "study": r.StudyInstanceUID, "sop_instance_uid": e.SOPInstanceUID}
	f.deps.Event(store.KindForward, store.Error, fmt.Sprintf("instance %s of study %s (%s) not sent to %s and parked: %s",
		e.SOPInstanceUID, r.StudyInstanceUID, PatientToken, f.dest.Name, reason), withPatient(attrs, r.PatientName))
}

// DamagedReason says why a damaged or missing stored copy is not sent, and
// what to do, with the store's finding as the cause.
func DamagedReason(r store.Instance, err error) string {
	what := "damaged (its bytes are not those received)"
	if errors.Is(err, store.ErrMissing) {
		what = "missing (its file is gone)"
	}
	return control.WithCause(fmt.Sprintf("its stored copy on this box is %s; %s", what, AskAgain(r.CallingAE, "study "+r.StudyInstanceUID)), err)
}

// AskAgain is the action for damaged stored copies: the sender sends them
// again, and the good copies replace the damaged ones on their own.
func AskAgain(callingAE, what string) string {
	who := "the modality"
	if callingAE != "" {
		who = callingAE
	}
	return fmt.Sprintf("ask %s to send %s again: the good copies replace the damaged ones and go out by themselves", who, what)
}
