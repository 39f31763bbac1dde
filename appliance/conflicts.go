package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/header"
	"github.com/relais/relais/appliance/part10"
	"github.com/relais/relais/store"
)

// Review of conflicting copies: an instance that arrived again with other
// bytes is kept, flagged, and not forwarded (see ingest) until a person
// compares the copies' headers and either corrects the instance with the
// new copy (which is forwarded again) or discards it. Each decision is an
// audit event: who, when, what and why.

const (
	maxConflicts = 200 // instances in one listing
	maxChanges   = 50  // differing elements shown per copy
)

// conflictRoutes registers the review endpoints of the control API.
func (a *Appliance) conflictRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/conflicts", a.listConflicts)
	mux.HandleFunc("GET /v1/conflicts/{uid}", a.showConflict)
	mux.HandleFunc("POST /v1/actions/conflict", a.resolveConflict)
}

func (a *Appliance) listConflicts(w http.ResponseWriter, r *http.Request) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	if limit <= 0 || limit > maxConflicts {
		limit = maxConflicts
	}
	cs, err := a.store.ListConflicts(r.Context(), limit)
	if err != nil {
		writeError(w, 500, err)
		return
	}
	out := make([]control.Conflict, 0, len(cs))
	for _, c := range cs {
		out = append(out, toConflict(c))
	}
	writeJSON(w, 200, out)
}

func (a *Appliance) showConflict(w http.ResponseWriter, r *http.Request) {
	c, err := a.store.ConflictedInstance(r.Context(), r.PathValue("uid"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, 404, fmt.Errorf("no conflicting copy of %s", r.PathValue("uid")))
		return
	}
	if err != nil {
		writeError(w, 500, err)
		return
	}
	writeJSON(w, 200, a.diffConflict(r.Context(), c))
}

func (a *Appliance) resolveConflict(w http.ResponseWriter, r *http.Request) {
	var req control.ConflictRequest
	if !readJSON(w, r, &req) {
		return
	}
	if err := checkConflictRequest(&req); err != nil {
		writeError(w, 400, err)
		return
	}
	res, err := a.ResolveConflict(req, caller(r.Context()))
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, 404, err)
	case errors.Is(err, store.ErrInFlight):
		writeError(w, 409, err)
	case err != nil:
		writeError(w, 500, err)
	default:
		writeJSON(w, 200, res)
	}
}

func checkConflictRequest(req *control.ConflictRequest) error {
	req.Reason = strings.TrimSpace(req.Reason)
	switch {
	case req.SOPInstanceUID == "" || req.ConflictID == 0:
		return errors.New("name the instance (sop_instance_uid) and the conflicting copy (conflict_id)")
	case req.Action != control.ConflictCorrect && req.Action != control.ConflictDiscard:
		return fmt.Errorf("action %q: want %s or %s", req.Action, control.ConflictCorrect, control.ConflictDiscard)
	case req.Reason == "":
		return errors.New("a reason is required: it goes into the audit log")
	}
	return nil
}

// ResolveConflict applies a reviewer's decision and records it; who is the
// caller as the control socket knows it.
func (a *Appliance) ResolveConflict(req control.ConflictRequest, who string) (control.ConflictResult, error) {
	if req.By != "" {
		who = fmt.Sprintf("%s (%s)", req.By, who)
	}
	// A late commitment report for the old copy cannot count for the new
	// one: the store commits delivered entries only, and the new one is pending.
	action := store.Action(req.Action)
	res, err := a.store.ResolveConflict(req.SOPInstanceUID, req.ConflictID, action)
	if err != nil {
		return control.ConflictResult{}, err
	}
	msg := reviewMessage(res, who, req.Reason)
	attrs := map[string]string{
		"sop_instance_uid": res.Copy.SOPInstanceUID, "study": res.Copy.StudyInstanceUID, "conflict_id": strconv.FormatUint(res.Copy.ID, 10),
		"action": req.Action, "reason": req.Reason, "by": who, "calling_ae": res.Copy.CallingAE,
	}
	if res.Held != nil {
		attrs["replaced_id"] = strconv.FormatUint(res.Held.ID, 10)
	}
	a.event(store.KindReview, store.Info, msg, attrs)
	for _, d := range res.Copy.Destinations {
		a.wake(d)
	}
	a.purgeSoon() // the copy that went: its bytes are dropped by the purge
	return control.ConflictResult{Message: msg}, nil
}

func reviewMessage(res store.Resolution, who, reason string) string {
	c := res.Copy
	what := fmt.Sprintf("conflicting copy %d of %s (from %s, received %s)", c.ID, c.SOPInstanceUID, c.CallingAE, c.ReceivedAt.Format(time.DateTime))
	if res.Action == store.Discard {
		return fmt.Sprintf("%s discarded by %s: %s", what, who, reason)
	}
	queued := "queued nowhere (no destination had the held copy)"
	if len(c.Destinations) > 0 {
		queued = "queued again for " + strings.Join(c.Destinations, ", ")
	}
	return fmt.Sprintf("%s made the instance by %s, %s: %s", what, who, queued, reason)
}

func toConflict(c store.Conflicted) control.Conflict {
	out := control.Conflict{SOPInstanceUID: c.Copies[0].SOPInstanceUID}
	if c.Held != nil {
		h := toConflictCopy(c.Held)
		out.Held = &h
	}
	for i := range c.Copies {
		out.Copies = append(out.Copies, toConflictCopy(&c.Copies[i]))
	}
	return out
}

func toConflictCopy(r *store.Instance) control.ConflictCopy {
	return control.ConflictCopy{ID: r.ID, CallingAE: r.CallingAE, RemoteAddr: r.RemoteAddr, ReceivedAt: r.ReceivedAt,
		Size: r.Size, SHA256: r.SHA256, PatientName: r.PatientName, StudyUID: r.StudyInstanceUID}
}

// diffConflict adds to each flagged copy how its header differs from the
// held copy's. Headers are read one at a time, a bounded prefix each.
func (a *Appliance) diffConflict(ctx context.Context, c store.Conflicted) control.Conflict {
	out := toConflict(c)
	var held *header.Header
	herr := errors.New("the held copy is gone (purged with its study): nothing to compare with")
	if c.Held != nil {
		held, herr = a.readHeader(ctx, *c.Held)
	}
	for i := range c.Copies {
		cp := &out.Copies[i]
		if herr != nil {
			cp.Note = "held copy: " + herr.Error()
			continue
		}
		h, err := a.readHeader(ctx, c.Copies[i])
		if err != nil {
			cp.Note = err.Error()
			continue
		}
		changes, more := header.Diff(held, h, maxChanges)
		for _, ch := range changes {
			cp.Changes = append(cp.Changes, control.HeaderChange{Tag: ch.TagString(), Name: ch.Name, Old: ch.Old, New: ch.New, Added: ch.Added, Removed: ch.Removed})
		}
		cp.MoreChanges = more
		if len(changes) == 0 {
			cp.Note = "the headers' text elements are the same: the copies differ in binary or numeric elements, sequences or Pixel Data"
		}
	}
	return out
}

// readHeader reads a stored copy's header from its first bytes, as ingest
// did when it arrived.
func (a *Appliance) readHeader(ctx context.Context, rec store.Instance) (*header.Header, error) {
	rc := a.store.OpenInstance(ctx, rec)
	defer rc.Close()
	m, _, br, err := part10.ReadHeader(rc)
	if err != nil {
		return nil, fmt.Errorf("copy %d: %w", rec.ID, err)
	}
	prefix, err := io.ReadAll(io.LimitReader(br, header.MaxPrefix))
	if err != nil {
		return nil, fmt.Errorf("copy %d: %w", rec.ID, err)
	}
	h, err := header.Parse(m.TransferSyntaxUID, prefix)
	if err != nil {
		return nil, fmt.Errorf("copy %d: %w", rec.ID, err)
	}
	return h, nil
}
