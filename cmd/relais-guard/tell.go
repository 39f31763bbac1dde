package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/gokrazy"
	"github.com/relais/relais/appliance/guard"
)

// The guard's verdict lines on stdout (guard.VerdictPrefix).
const (
	VerdictPrefix  = guard.VerdictPrefix
	UpdateChecking = guard.VerdictChecking
)

// teller tells the guard's verdicts: to stderr (gokrazy's status page
// shows it), to stdout as JSON lines, and to relaisd.
type teller struct {
	ctl    *control.Client
	svc    supervised
	stdout io.Writer
	log    *slog.Logger
	bound  time.Duration

	mu        sync.Mutex
	told      time.Time // relaisd's start to which the last verdict was told
	toldState string
}

// update is a verdict in the control API's terms.
func update(v guard.Verdict) control.Update {
	return control.Update{State: string(v.State), Image: v.Image.Short(), Running: v.Running.Short(), Reason: v.Reason, Message: v.Message(), Output: v.Output, At: v.At}
}

// print writes a verdict where people and make update read it. It is the
// guard's OnVerdict: it runs under the guard's lock and calls nothing of it.
func (t *teller) print(v guard.Verdict) {
	u := update(v)
	level := slog.LevelInfo
	if u.State != control.UpdateGood {
		level = slog.LevelWarn
	}
	t.log.Log(context.Background(), level, u.Message)
	for _, l := range u.Output {
		t.log.Log(context.Background(), level, "  | "+l)
	}
	t.line(u)
}

// checking says that a new image is being judged.
func (t *teller) checking(img guard.Image) {
	t.line(control.Update{State: UpdateChecking, Image: img.Short(), Message: fmt.Sprintf("update to %s: checking", img.Short()), At: time.Now()})
}

func (t *teller) line(u control.Update) {
	b, _ := json.Marshal(u)
	fmt.Fprintf(t.stdout, "%s%s\n", VerdictPrefix, b)
}

// deliver hands relaisd the last verdict: logged the first time, then
// again (unlogged) at each new start of relaisd, for its status. It
// reports whether relaisd took it into its log now.
func (t *teller) deliver(ctx context.Context, v guard.Verdict) (logged bool, err error) {
	st, err := t.svc.Status(ctx)
	if err != nil {
		return false, err
	}
	t.mu.Lock()
	same := t.told.Equal(st.StartTime) && t.toldState == string(v.State)+v.At.String() && v.Reported
	t.mu.Unlock()
	if same {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, t.bound)
	defer cancel()
	if err := t.ctl.PostGuardVerdict(ctx, control.GuardVerdict{Update: update(v), Log: !v.Reported}); err != nil {
		return false, err
	}
	t.mu.Lock()
	t.told, t.toldState = st.StartTime, string(v.State)+v.At.String()
	t.mu.Unlock()
	return !v.Reported, nil
}

// supervised is relaisd as gokrazy supervises it (guard.Service).
type supervised struct {
	api  *gokrazy.LocalAPI
	path string
}

func (s supervised) Name() string { return s.path[strings.LastIndex(s.path, "/")+1:] }

func (s supervised) Status(ctx context.Context) (gokrazy.Service, error) {
	return s.api.ServiceStatus(ctx, s.path)
}

func (s supervised) Output(ctx context.Context) ([]string, error) {
	return s.api.Output(ctx, s.path, time.Second)
}
