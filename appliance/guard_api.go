package appliance

import (
	"errors"
	"net/http"
	"strings"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/store"
)

// The update guard (cmd/relais-guard, its own program on the box) tells
// relaisd its verdict on an update here: it goes into the event log once,
// and into the status (Status.Update) until the next.

// KindUpdate is the event kind of the update guard's verdicts.
const KindUpdate store.Kind = "update"

func (a *Appliance) guardRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/events/guard", func(w http.ResponseWriter, r *http.Request) {
		var v control.GuardVerdict
		if !readJSON(w, r, &v) {
			return
		}
		if v.State == "" || v.Message == "" {
			writeError(w, http.StatusBadRequest, errors.New("a verdict needs a state and a message"))
			return
		}
		if v.Log {
			if err := a.store.Log(guardEvent(v.Update)); err != nil {
				writeError(w, http.StatusInternalServerError, err)
				return
			}
		}
		u := v.Update
		a.update.Store(&u)
		writeJSON(w, http.StatusOK, struct{}{})
	})
}

// guardEvent is a verdict as an event: a rollback is a warning (the box
// works, on the image before), a guard that could not switch back an
// error.
func guardEvent(u control.Update) store.Event {
	sev := store.Info
	switch u.State {
	case control.UpdateRolledBack:
		sev = store.Warning
	case control.UpdateGood:
	default:
		sev = store.Error
	}
	attrs := map[string]string{"image": u.Image, "state": u.State}
	if u.Running != "" {
		attrs["running"] = u.Running
	}
	if len(u.Output) > 0 {
		attrs["output"] = strings.Join(u.Output, "\n")
	}
	return store.Event{Time: u.At, Kind: KindUpdate, Severity: sev, Message: u.Message, Attrs: attrs}
}

// updateVerdict is the guard's last verdict for the status (nil before one).
func (a *Appliance) updateVerdict() *control.Update { return a.update.Load() }
