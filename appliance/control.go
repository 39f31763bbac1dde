package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/appliance/forward"
	"github.com/relais/relais/store"
)

// The control API: HTTP and JSON on a unix socket in the data folder,
// readable by the owner only. Types and client are in appliance/control.

// Version is set at build time (-ldflags "-X ...appliance.Version=...").
var Version = "dev"

// SocketPath is where the control socket of a data folder is.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, control.SocketName) }

// controlShutdown bounds how long relaisd waits for running control
// requests when it stops. Their contexts end with relaisd's, so they
// return at once; one that does not is cut when the bound passes.
const controlShutdown = 5 * time.Second

// serveControl serves the control API until stopControl; each request's
// context ends when ctx does.
func (a *Appliance) serveControl(ctx context.Context) (*http.Server, error) {
	path := SocketPath(a.opts.DataDir)
	os.Remove(path) // a stale socket from a crash
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	srv := &http.Server{Handler: a.controlHandler(), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx },
		ConnContext: withPeer} // who asks, for the audit of reviews
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		srv.Serve(ln) // returns at stopControl
	}()
	return srv, nil
}

// stopControl refuses new requests, waits (within controlShutdown) for
// the running ones, whose contexts have ended, then closes what is left.
func stopControl(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), controlShutdown)
	defer cancel()
	srv.Shutdown(ctx)
	srv.Close()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	e := &control.Error{Message: err.Error()}
	var ve config.ValidationError
	if errors.As(err, &ve) {
		e.Fields = ve
		code = http.StatusUnprocessableEntity
	}
	writeJSON(w, code, e)
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return false
	}
	return true
}

// readConfig reads a configuration from the request body as config.Load
// reads the file: strictly (an unknown key is a field error with the
// nearest known name; a syntax error says line:column).
func readConfig(w http.ResponseWriter, r *http.Request, c *config.Config) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = config.Decode(b, c)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("configuration: %w", err))
		return false
	}
	return true
}

func (a *Appliance) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, a.Status(r.Context()))
	})
	mux.HandleFunc("GET /v1/config", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, a.fileConfig())
	})
	mux.HandleFunc("POST /v1/config/validate", func(w http.ResponseWriter, r *http.Request) {
		var c config.Config
		if !readConfig(w, r, &c) {
			return
		}
		if err := c.Validate(); err != nil {
			writeError(w, 422, err)
			return
		}
		writeJSON(w, 200, struct{}{})
	})
	mux.HandleFunc("PUT /v1/config", func(w http.ResponseWriter, r *http.Request) {
		var c config.Config
		if !readConfig(w, r, &c) {
			return
		}
		if err := a.SetConfig(c); err != nil {
			writeError(w, 422, err)
			return
		}
		writeJSON(w, 200, struct{}{})
	})
	mux.HandleFunc("GET /v1/studies", func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		studies, err := a.Studies(r.Context(), limit)
		if err != nil {
			writeError(w, 500, err)
			return
		}
		writeJSON(w, 200, studies)
	})
	mux.HandleFunc("GET /v1/studies/{uid}", func(w http.ResponseWriter, r *http.Request) {
		st, err := a.studyStatus(r.Context(), r.PathValue("uid"))
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, 404, fmt.Errorf("no study %s", r.PathValue("uid")))
			return
		}
		if err != nil {
			writeError(w, 500, err)
			return
		}
		evs, err := a.store.Events(r.Context(), store.EventQuery{Limit: 5000})
		if err != nil {
			writeError(w, 500, err)
			return
		}
		var timeline []control.Event
		for i := len(evs) - 1; i >= 0; i-- {
			e := evs[i]
			if e.Attrs["study"] == st.StudyInstanceUID {
				timeline = append(timeline, toEvent(e))
			}
		}
		writeJSON(w, 200, map[string]any{"study": st, "timeline": timeline})
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		q, err := eventQuery(r)
		if err != nil {
			writeError(w, 400, err)
			return
		}
		evs, err := a.store.Events(r.Context(), q)
		if err != nil {
			writeError(w, 500, err)
			return
		}
		out := make([]control.Event, 0, len(evs))
		for _, e := range evs {
			out = append(out, toEvent(e))
		}
		writeJSON(w, 200, out)
	})
	mux.HandleFunc("GET /v1/events/stream", a.streamEvents)
	mux.HandleFunc("GET /v1/callers", func(w http.ResponseWriter, r *http.Request) {
		cs, _ := a.Callers()
		writeJSON(w, 200, cs)
	})
	mux.HandleFunc("POST /v1/actions/echo", func(w http.ResponseWriter, r *http.Request) {
		var req control.EchoRequest
		if !readJSON(w, r, &req) {
			return
		}
		res, err := a.Echo(r.Context(), req)
		if err != nil {
			writeError(w, 404, err)
			return
		}
		writeJSON(w, 200, res)
	})
	destAction := func(fn func(context.Context, string) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var req control.DestinationRequest
			if !readJSON(w, r, &req) {
				return
			}
			if err := fn(r.Context(), req.Destination); err != nil {
				writeError(w, 400, err)
				return
			}
			writeJSON(w, 200, struct{}{})
		}
	}
	mux.HandleFunc("POST /v1/actions/retry", destAction(a.RetryNow))
	mux.HandleFunc("GET /v1/parked", func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		p, err := a.Parked(r.Context(), max(limit, 0))
		if err != nil {
			writeError(w, 500, err)
			return
		}
		writeJSON(w, 200, p)
	})
	mux.HandleFunc("POST /v1/actions/retry-instance", changeAction(a.RetryInstance))
	mux.HandleFunc("POST /v1/actions/retry-study", changeAction(a.RetryStudy))
	mux.HandleFunc("POST /v1/actions/resend", changeAction(a.Resend))
	mux.HandleFunc("POST /v1/actions/abandon", changeAction(func(_ context.Context, req control.InstanceRequest) (int, error) { return 1, a.Abandon(req) }))
	mux.HandleFunc("POST /v1/actions/pause", destAction(func(_ context.Context, d string) error { return a.setPaused(d, true) }))
	mux.HandleFunc("POST /v1/actions/resume", destAction(func(_ context.Context, d string) error { return a.setPaused(d, false) }))
	mux.HandleFunc("POST /v1/actions/urgent", func(w http.ResponseWriter, r *http.Request) {
		var req control.UrgentRequest
		if !readJSON(w, r, &req) {
			return
		}
		if err := a.MarkUrgent(r.Context(), req.StudyInstanceUID, req.Urgent); err != nil {
			writeError(w, 400, err)
			return
		}
		writeJSON(w, 200, struct{}{})
	})
	mux.HandleFunc("POST /v1/actions/approve", func(w http.ResponseWriter, r *http.Request) {
		var req control.CallerRequest
		if !readJSON(w, r, &req) {
			return
		}
		if err := a.Approve(req.AETitle, req.Address); err != nil {
			writeError(w, 400, err)
			return
		}
		writeJSON(w, 200, struct{}{})
	})
	mux.HandleFunc("POST /v1/actions/deny", func(w http.ResponseWriter, r *http.Request) {
		var req control.CallerRequest
		if !readJSON(w, r, &req) {
			return
		}
		if err := a.Deny(req.AETitle, req.Address); err != nil {
			writeError(w, 400, err)
			return
		}
		writeJSON(w, 200, struct{}{})
	})
	mux.HandleFunc("POST /v1/actions/purge", func(w http.ResponseWriter, r *http.Request) {
		cfg := a.Config()
		res, err := a.Purge(r.Context(), purgePolicy(&cfg))
		if err != nil {
			writeError(w, 500, err)
			return
		}
		writeJSON(w, 200, control.PurgeResult{Studies: res.Studies, Instances: res.Instances, Bytes: res.Bytes})
	})
	mux.HandleFunc("GET /v1/tunnel", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, control.TunnelInfo{Config: a.Config().Tunnel, Status: a.tunnelStatus()})
	})
	mux.HandleFunc("PUT /v1/tunnel", func(w http.ResponseWriter, r *http.Request) {
		var t config.Tunnel
		if !readJSON(w, r, &t) {
			return
		}
		if err := a.updateConfig(func(c *config.Config) { c.Tunnel = t }); err != nil {
			writeError(w, 422, err)
			return
		}
		writeJSON(w, 200, struct{}{})
	})
	mux.HandleFunc("POST /v1/tunnel/import", func(w http.ResponseWriter, r *http.Request) {
		var text string
		if !readJSON(w, r, &text) {
			return
		}
		warning, err := a.ImportTunnel(text)
		if err != nil {
			writeError(w, 422, err)
			return
		}
		writeJSON(w, 200, control.ImportResult{Warning: warning})
	})
	mux.HandleFunc("GET /v1/tunnel/export", func(w http.ResponseWriter, r *http.Request) {
		text, err := a.ExportTunnel()
		if err != nil {
			writeError(w, 409, fmt.Errorf("no tunnel to export: %w", err))
			return
		}
		writeJSON(w, 200, text)
	})
	mux.HandleFunc("GET /v1/network", func(w http.ResponseWriter, r *http.Request) {
		n := a.Config().Network
		writeJSON(w, 200, control.Network{Mode: n.Mode, Address: n.Address, Gateway: n.Gateway, DNS: n.DNS})
	})
	mux.HandleFunc("PUT /v1/network", func(w http.ResponseWriter, r *http.Request) {
		var n control.Network
		if !readJSON(w, r, &n) {
			return
		}
		if a.opts.Network == nil {
			writeError(w, http.StatusNotImplemented, errors.New("the network is set on the box only"))
			return
		}
		err := a.updateConfig(func(c *config.Config) {
			c.Network = config.Network{Mode: n.Mode, Interface: c.Network.Interface, Address: n.Address, Gateway: n.Gateway, DNS: n.DNS}
		})
		if err != nil {
			writeError(w, 422, err)
			return
		}
		writeJSON(w, 200, struct{}{})
	})
	mux.Handle("GET /metrics", a.metrics.handler())
	a.conflictRoutes(mux)
	a.guardRoutes(mux) // guard_api.go
	a.consoleKeyRoutes(mux)
	return mux
}

// changeAction serves an action that takes a request of type T and
// answers how many instances it changed.
func changeAction[T any](fn func(context.Context, T) (int, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req T
		if !readJSON(w, r, &req) {
			return
		}
		n, err := fn(r.Context(), req)
		switch {
		case errors.Is(err, store.ErrNotFound):
			writeError(w, 404, err)
		case err != nil:
			writeError(w, 400, err)
		default:
			writeJSON(w, 200, control.Changed{Instances: n})
		}
	}
}

func eventQuery(r *http.Request) (store.EventQuery, error) {
	v := r.URL.Query()
	var q store.EventQuery
	var err error
	if s := v.Get("since"); s != "" {
		if q.Since, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return q, fmt.Errorf("since: %w", err)
		}
	}
	if s := v.Get("until"); s != "" {
		if q.Until, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return q, fmt.Errorf("until: %w", err)
		}
	}
	if s := v.Get("kind"); s != "" {
		for _, k := range strings.Split(s, ",") {
			q.Kinds = append(q.Kinds, store.Kind(k))
		}
	}
	q.Limit, _ = strconv.Atoi(v.Get("limit"))
	if q.Limit <= 0 || q.Limit > 10000 {
		q.Limit = 200
	}
	return q, nil
}

func toEvent(e store.Event) control.Event {
	return control.Event{Time: e.Time, Kind: string(e.Kind), Severity: string(e.Severity), Message: e.Message, Attrs: e.Attrs}
}

// streamEvents sends new events as server-sent events, oldest first.
func (a *Appliance) streamEvents(w http.ResponseWriter, r *http.Request) {
	q, err := eventQuery(r)
	if err != nil {
		writeError(w, 400, err)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, 500, errors.New("streaming unsupported"))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(200)
	fl.Flush()
	since := q.Since
	if since.IsZero() {
		since = time.Now()
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
		evs, err := a.store.Events(r.Context(), store.EventQuery{Since: since, Kinds: q.Kinds, Limit: 1000})
		if err != nil {
			return
		}
		for i := len(evs) - 1; i >= 0; i-- {
			b, _ := json.Marshal(toEvent(evs[i]))
			fmt.Fprintf(w, "data: %s\n\n", b)
			since = evs[i].Time.Add(time.Nanosecond)
		}
		fl.Flush()
	}
}

// Studies lists recent studies with their forwarding state.
func (a *Appliance) Studies(ctx context.Context, limit int) ([]control.Study, error) {
	if limit <= 0 {
		limit = 50
	}
	// Taken before reading: what the list shows is at least this recent.
	gen, cfg := a.store.Generation(), a.cfg.Load()
	if out, ok := a.studies.get(gen, cfg, limit, time.Now()); ok {
		return out, nil
	}
	studies, err := a.store.RecentStudies(ctx, limit)
	if err != nil {
		return nil, err
	}
	out := make([]control.Study, 0, len(studies))
	for _, s := range studies {
		st, err := a.studyStatus(ctx, s.StudyInstanceUID)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			continue // purged meanwhile
		}
		out = append(out, st)
	}
	a.studies.put(gen, cfg, limit, out)
	return out, nil
}

// studyStatus is a study's record and its progress at each configured
// destination, from the store's tallies of its entries: a few keys, however
// many instances it has.
func (a *Appliance) studyStatus(ctx context.Context, uid string) (control.Study, error) {
	s, err := a.store.StudyRecord(uid)
	if err != nil {
		return control.Study{}, fmt.Errorf("study %s: %w", uid, err)
	}
	progress, err := a.store.StudyProgress(ctx, uid)
	if err != nil {
		return control.Study{}, err
	}
	out := control.Study{
		StudyInstanceUID: s.StudyInstanceUID, PatientID: s.PatientID, PatientName: s.PatientName, StudyDate: s.StudyDate,
		Description: s.StudyDescription, AccessionNumber: s.AccessionNumber, Modalities: s.Modalities, Urgent: s.Urgent,
		FirstReceived: s.FirstReceived, LastReceived: s.LastReceived, Instances: s.Instances, Bytes: s.Bytes, Conflicts: s.Conflicts,
	}
	cfg := a.Config()
	var sum control.StudyAtDest
	for _, p := range progress { // by name
		if _, ok := cfg.Destination(p.Dest); !ok {
			continue // a removed destination's history says nothing now
		}
		d := control.StudyAtDest{
			Name: p.Dest, Pending: p.States[store.Pending].Count, InFlight: p.States[store.InFlight].Count,
			Failed: p.States[store.Failed].Count, Parked: p.States[store.Parked].Count, Abandoned: p.States[store.Abandoned].Count,
			Delivered: p.States[store.Delivered].Count, Committed: p.States[store.Committed].Count, LastError: p.LastError,
		}
		out.Destinations = append(out.Destinations, d)
		sum.Pending += d.Pending
		sum.InFlight += d.InFlight
		sum.Failed += d.Failed
		sum.Parked += d.Parked
		sum.Delivered += d.Delivered
	}
	out.State = studyState(store.Since(s.LastReceived, time.Now()), len(cfg.Destinations), len(out.Destinations), sum)
	return out, nil
}

// receivingQuiet is how long a study stays "receiving" after its last instance.
const receivingQuiet = 10 * time.Second

// studyState sums up a study's progress over the current destinations.
func studyState(quietFor time.Duration, configured, queued int, sum control.StudyAtDest) control.StudyState {
	switch {
	case quietFor < receivingQuiet:
		return control.StudyReceiving
	case queued == 0 && configured == 0:
		return control.StudyHeld
	case queued == 0:
		return control.StudyNotRouted
	case sum.Parked > 0:
		return control.StudyParked
	case sum.Failed > 0:
		return control.StudyFailed
	case sum.InFlight > 0:
		return control.StudySending
	case sum.Pending > 0:
		return control.StudyQueued
	case sum.Delivered > 0:
		return control.StudyDelivered
	}
	return control.StudyCommitted
}

// Echo sends a C-ECHO to a destination, a configured modality or an
// address.
func (a *Appliance) Echo(ctx context.Context, req control.EchoRequest) (control.EchoResult, error) {
	cfg := a.Config()
	var target config.Destination // what is echoed; named when it is a destination
	calling := cfg.AETitle
	switch {
	case req.Host != "":
		for _, msg := range []string{config.CheckAE(req.CalledAE), config.CheckPort(req.Port)} {
			if msg != "" {
				return control.EchoResult{}, fmt.Errorf("echo %s: %s", req.Host, msg)
			}
		}
		if req.CallingAE != "" {
			if msg := config.CheckAE(req.CallingAE); msg != "" {
				return control.EchoResult{}, fmt.Errorf("echo %s: calling AE title: %s", req.Host, msg)
			}
			calling = req.CallingAE
		}
		target = config.Destination{AETitle: req.CalledAE, Host: req.Host, Port: req.Port}
	case req.Destination != "":
		d, ok := cfg.Destination(req.Destination)
		if !ok {
			return control.EchoResult{}, fmt.Errorf("no destination %q", req.Destination)
		}
		target = d
	case req.Modality != "":
		for _, m := range cfg.Modalities {
			if m.AETitle == req.Modality && m.Port != 0 {
				if p, err := config.ParseAllowed(m.Address); err == nil && p.IsSingleIP() {
					target = config.Destination{AETitle: m.AETitle, Host: p.Addr().String(), Port: m.Port}
				}
			}
		}
		if target.Host == "" {
			return control.EchoResult{}, fmt.Errorf("modality %q has no single address and port configured", req.Modality)
		}
	default:
		return control.EchoResult{}, errors.New("echo what? name a destination, a modality or a host and port")
	}
	addr := target.Addr()
	res := control.EchoResult{Target: fmt.Sprintf("%s at %s", target.AETitle, addr)}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	status, rtt, err := dimse.Echo(ctx, addr, dimse.DialParams{CallingAE: calling, CalledAE: target.AETitle, Config: a.opts.DIMSE, Dial: a.dial})
	res.RTTms = float64(rtt.Microseconds()) / 1000
	if err != nil {
		res.Error = forward.Explain(target, calling, err)
		return res, nil
	}
	res.Status, res.OK = status.String(), status == dimse.StatusSuccess
	return res, nil
}

func (a *Appliance) setPaused(dest string, paused bool) error {
	cfg := a.Config()
	if _, ok := cfg.Destination(dest); !ok {
		return fmt.Errorf("no destination %q", dest)
	}
	return a.updateConfig(func(c *config.Config) {
		for i := range c.Destinations {
			if c.Destinations[i].Name == dest {
				c.Destinations[i].Paused = paused
			}
		}
	})
}

// MarkUrgent moves a study ahead of every queue.
func (a *Appliance) MarkUrgent(ctx context.Context, study string, urgent bool) error {
	if err := a.store.MarkUrgent(ctx, study, urgent); err != nil {
		return err
	}
	word := "urgent"
	if !urgent {
		word = "not urgent"
	}
	a.event(store.KindForward, store.Info, fmt.Sprintf("study %s marked %s", study, word), map[string]string{"study": study})
	for _, d := range a.Config().Destinations {
		a.wake(d.Name)
	}
	return nil
}

// worse returns the more serious of two levels.
func worse(a, b string) string {
	if severity(b) > severity(a) {
		return b
	}
	return a
}

// severity ranks a level: ok, warning, alarm.
func severity(level string) int {
	return map[string]int{control.LevelOK: 0, control.LevelWarning: 1, control.LevelAlarm: 2}[level]
}
