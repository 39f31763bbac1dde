package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

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
