package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/gokrazy"
	"github.com/relais/relais/appliance/gokrazy/gokrazytest"
	"github.com/relais/relais/appliance/guard"
)

func verdictLine(u control.Update) string {
	b, _ := json.Marshal(u)
	return guard.VerdictPrefix + string(b)
}

// A box in the tunnel (gokrazy's API on a loopback port) and make update
// waiting on it.
func waitOn(t *testing.T, guardOut []string, timeout time.Duration) (int, string) {
	t.Helper()
	f := &gokrazytest.Init{}
	f.Update("/user/relais-guard", func(s *gokrazytest.Service) { s.Stdout = guardOut })
	api := gokrazy.NewRemoteAPI(gokrazytest.ServeTCP(t, f), gokrazytest.Password)
	var out strings.Builder
	w := waiter{api: api, before: "aaaaaaaaaa1111", since: time.Now(), poll: 10 * time.Millisecond, out: &out}
	return w.wait(context.Background(), timeout), out.String()
}

func TestRollbackExitsNonZeroWithTheReason(t *testing.T) {
	old := time.Now().Add(-time.Hour)
	code, out := waitOn(t, []string{
		verdictLine(control.Update{State: "good", Image: "cccccccccc", Message: "update to cccccccccc is good: …", At: old}), // an older update, told at boot
		verdictLine(control.Update{State: "rolled-back", Image: "bbbbbbbbbb", Running: "aaaaaaaaaa", Message: "update to bbbbbbbbbb rolled back: relaisd crashed 4 times in 4.1 s: panic: boom", Output: []string{"panic: boom", "goroutine 1 [running]:"}, At: time.Now()}),
	}, time.Second)
	if code != exitRolledBack || !strings.Contains(out, "rolled back: relaisd crashed 4 times in 4.1 s: panic: boom\n  | panic: boom\n") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}

func TestGoodVerdictExitsZero(t *testing.T) {
	code, out := waitOn(t, []string{
		verdictLine(control.Update{State: guard.VerdictChecking, Image: "bbbbbbbbbb", Message: "update to bbbbbbbbbb: checking", At: time.Now()}),
		verdictLine(control.Update{State: "good", Image: "bbbbbbbbbb", Message: "update to bbbbbbbbbb is good: all health checks passed (control, store, scp, tunnel); bbbbbbbbbb runs", At: time.Now()}),
	}, time.Second)
	if code != exitGood || !strings.Contains(out, "bbbbbbbbbb runs") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}

func TestNoVerdictCannotTell(t *testing.T) {
	code, out := waitOn(t, []string{
		verdictLine(control.Update{State: "good", Image: "aaaaaaaaaa", Message: "update to aaaaaaaaaa is good", At: time.Now().Add(-time.Hour)}), // the image before
		verdictLine(control.Update{State: guard.VerdictChecking, Image: "bbbbbbbbbb", Message: "update to bbbbbbbbbb: checking", At: time.Now()}),
	}, 200*time.Millisecond)
	if code != exitUnknown || !strings.Contains(out, "update to bbbbbbbbbb: checking…") || !strings.Contains(out, "cannot tell whether the update holds: no verdict") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}
