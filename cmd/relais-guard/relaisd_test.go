package main

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relais/relais/appliance"
	"github.com/relais/relais/appliance/control"
)

// The guard's checks against a real relaisd (no tunnel, no destination):
// they pass, and a verdict posted to it is in its status and, once, in its
// event log.
func TestChecksPassAndVerdictIsLoggedByARealRelaisd(t *testing.T) {
	data := t.TempDir()
	a, err := appliance.New(appliance.Options{DataDir: data, Listen: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Error(err)
		}
	}()
	ctl := control.NewClient(filepath.Join(data, control.SocketName))
	for _, c := range checks(ctl, nil) {
		var err error
		for range 500 { // the control socket and the SCP may not listen yet
			if err = c.Run(ctx); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("check %s: %v", c.Name, err)
		}
	}

	u := control.Update{State: control.UpdateRolledBack, Image: "bbbbbbbbbb", Running: "aaaaaaaaaa", Reason: "relaisd crashed 4 times in 4.1 s: panic: boom",
		Message: "update to bbbbbbbbbb rolled back: relaisd crashed 4 times in 4.1 s: panic: boom", Output: []string{"panic: boom"}, At: time.Now()}
	for _, logIt := range []bool{true, false} { // told once logged, then again at a restart
		if err := ctl.PostGuardVerdict(ctx, control.GuardVerdict{Update: u, Log: logIt}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := ctl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Update == nil || st.Update.Message != u.Message || st.Update.State != control.UpdateRolledBack {
		t.Fatalf("status update %+v", st.Update)
	}
	evs, err := ctl.Events(ctx, control.EventQuery{Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Kind == "update" {
			n++
			if e.Severity != "warning" || e.Message != u.Message || !strings.Contains(e.Attrs["output"], "panic: boom") {
				t.Errorf("event %+v", e)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d update events, want 1: %+v", n, evs)
	}
}
