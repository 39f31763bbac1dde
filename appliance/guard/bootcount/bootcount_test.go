package bootcount

import (
	"context"
	"encoding/json"
	"log"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relais/relais/appliance/gokrazy/gokrazytest"
)

func startInit(t *testing.T) (API, *gokrazytest.Init) {
	f := &gokrazytest.Init{}
	return gokrazytest.Serve(t, f), f
}

var (
	imageA = Image{Root: "PARTUUID=2e18c40c-02", SBOM: "aaaaaaaaaaaa"}
	imageB = Image{Root: "PARTUUID=2e18c40c-03", SBOM: "bbbbbbbbbbbb"}
)

// writeGood writes the guard's record as the guard does: image A good.
func writeGood(t *testing.T, dir string, good Image, rejected ...Image) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"good": good, "rejected": rejected, "history": []any{}})
	if err := WriteFile(filepath.Join(dir, RecordFile), b); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, dir string, api API, running Image) Outcome {
	t.Helper()
	return runWaiting(t, dir, api, running, 50*time.Millisecond)
}

// runWaiting is run with a wait for the guard's verdict.
func runWaiting(t *testing.T, dir string, api API, running Image, wait time.Duration) Outcome {
	t.Helper()
	var out strings.Builder
	o, err := Run(context.Background(), Config{
		Dir: dir, API: api, Image: func() (Image, error) { return running, nil },
		Wait: wait, Poll: 5 * time.Millisecond, Log: log.New(&out, "", 0),
	})
	if err != nil {
		t.Fatalf("%v (%s)", err, out.String())
	}
	return o
}

// The guard is missing from the new image (or cannot run at all): nobody
// judges it. The counter reboots once when no verdict comes, and at the
// next boot switches back; the image before never counts.
func TestGuardMissingIsRolledBackByTheCounter(t *testing.T) {
	api, init := startInit(t)
	dir := t.TempDir()
	writeGood(t, dir, imageA)

	if o := run(t, dir, api, imageA); o != Nothing {
		t.Fatalf("on the good image: %s", o)
	}
	if c := init.Calls(); len(c) != 0 {
		t.Fatalf("calls on the good image: %v", c)
	}
	if o := run(t, dir, api, imageB); o != Rebooted {
		t.Fatalf("first boot of B without a guard: %s, want %s", o, Rebooted)
	}
	if c := init.Calls(); !slices.Equal(c, []string{"POST /reboot"}) {
		t.Fatalf("calls %v, want one reboot", c)
	}
	if o := run(t, dir, api, imageB); o != SwitchedBack {
		t.Fatalf("second boot of B: %s, want %s", o, SwitchedBack)
	}
	if c := init.Calls(); !slices.Equal(c, []string{"POST /reboot", "POST /update/switch", "POST /reboot"}) {
		t.Fatalf("calls %v", c)
	}
	// The switch did not take: B boots again. No more switching.
	if o := run(t, dir, api, imageB); o != Stuck {
		t.Fatalf("B again after the switch: %s, want %s", o, Stuck)
	}
	if n := len(init.Calls()); n != 3 {
		t.Fatalf("%d calls: switched or rebooted again", n)
	}
	// The rollback is there for the guard on A to report, once.
	rb, err := TakeRollback(dir)
	if err != nil || rb == nil || rb.Image != imageB || !strings.Contains(rb.Reason, "no verdict in 1 boot") {
		t.Fatalf("rollback %+v, %v", rb, err)
	}
	if rb, _ := TakeRollback(dir); rb != nil {
		t.Fatal("the rollback is reported twice")
	}
}

// A guard that runs settles the counter: no reboot, and the next boot of
// the same image counts from zero again.
func TestVerdictSettlesTheCounter(t *testing.T) {
	api, init := startInit(t)
	dir := t.TempDir()
	writeGood(t, dir, imageA)
	go func() {
		time.Sleep(10 * time.Millisecond)
		Settle(dir, imageB, "unhealthy") // the guard could not switch: no reboot from here either
	}()
	if o := runWaiting(t, dir, api, imageB, 10*time.Second); o != Settled {
		t.Fatalf("boot of B with a guard: %s", o)
	}
	if c, _ := LoadCounter(dir); c.Boots != 0 {
		t.Fatalf("counter %+v after a verdict", c)
	}
	writeGood(t, dir, imageB) // the guard marked it good
	if o := run(t, dir, api, imageB); o != Nothing {
		t.Fatalf("B once good: %s", o)
	}
	if c := init.Calls(); len(c) != 0 {
		t.Fatalf("calls %v", c)
	}
}

func TestFreshBoxAndRejectedImageAreNotCounted(t *testing.T) {
	api, init := startInit(t)
	dir := t.TempDir()
	if o := run(t, dir, api, imageA); o != Nothing { // no record: the guard marks A good as installed
		t.Fatalf("fresh box: %s", o)
	}
	writeGood(t, dir, imageA, imageB)
	if o := run(t, dir, api, imageB); o != Nothing {
		t.Fatalf("rejected image: %s", o)
	}
	if c := init.Calls(); len(c) != 0 {
		t.Fatalf("calls %v", c)
	}
}
