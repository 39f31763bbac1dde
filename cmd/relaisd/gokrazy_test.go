package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relais/relais/appliance"
	"github.com/relais/relais/appliance/guard"
)

const procRouteHeader = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"

func TestDefaultRouteIsFoundInProcNetRoute(t *testing.T) {
	for _, tc := range []struct {
		name, table string
		want        bool
	}{
		{"dhcp lease", procRouteHeader +
			"eth0\t00000000\t0101A8C0\t0003\t0\t0\t1024\t00000000\t0\t0\t0\n" +
			"eth0\t0001A8C0\t00000000\t0001\t0\t0\t1024\t00FFFFFF\t0\t0\t0\n", true},
		{"local subnet only", procRouteHeader +
			"eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", false},
		{"default route down", procRouteHeader +
			"eth0\t00000000\t0101A8C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n", false},
		{"empty", procRouteHeader, false},
	} {
		if got := defaultRoute4(strings.NewReader(tc.table)); got != tc.want {
			t.Errorf("%s: default route %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDefaultRouteIsFoundInProcNetIPv6Route(t *testing.T) {
	const (
		viaEth0   = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n"
		linkLocal = "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
		rejectLo  = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
	)
	if !defaultRoute6(strings.NewReader(linkLocal + viaEth0 + rejectLo)) {
		t.Error("default route via eth0 not found")
	}
	if defaultRoute6(strings.NewReader(linkLocal + rejectLo)) {
		t.Error("the kernel's rejecting route on lo taken for a default route")
	}
}

func TestWaitForReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	if !waitFor(context.Background(), time.Hour, time.Millisecond, func() bool { calls++; return calls == 3 }) {
		t.Fatal("gave up although the condition came true")
	}
}

func TestWaitForGivesUpAtItsBound(t *testing.T) {
	if waitFor(context.Background(), 5*time.Millisecond, time.Millisecond, func() bool { return false }) {
		t.Fatal("reported a condition that never held")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if waitFor(ctx, time.Hour, time.Hour, func() bool { return false }) {
		t.Fatal("reported a condition that never held")
	}
}

func TestClockFloorIsTheExecutablesBuildTime(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "relaisd")
	if err := os.WriteFile(exe, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	built := time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)
	if err := os.Chtimes(exe, built, built); err != nil {
		t.Fatal(err)
	}
	if got := clockFloorFor(func() (string, error) { return exe, nil }); !got.Equal(built) {
		t.Errorf("floor %v, want the executable's time %v", got, built)
	}
	if got := clockFloorFor(func() (string, error) { return "", errors.New("no /proc") }); !got.Equal(clockFloor) {
		t.Errorf("floor %v without an executable, want %v", got, clockFloor)
	}
}

// The checks relaisd gives the update guard pass on a healthy appliance with
// no tunnel and no destination configured.
func TestGuardChecksPassOnAHealthyAppliance(t *testing.T) {
	a, err := appliance.New(appliance.Options{
		DataDir: t.TempDir(),
		Listen:  "127.0.0.1:0",
		Logger:  slog.New(slog.DiscardHandler),
	})
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
	for _, c := range guardChecks(a) {
		var err error
		for range 500 { // the SCP may not listen yet
			if err = c.Run(ctx); err == nil || a.Addr() != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("check %s: %v", c.Name, err)
		}
	}
	if names := checkNames(guardChecks(a)); strings.Join(names, ",") != "store,scp,tunnel" {
		t.Errorf("checks %v, want store, scp, tunnel (no destination configured)", names)
	}
}

func checkNames(cs []guard.Check) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	return n
}
