package guard

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestChecksAreRetriedUntilTheyPass(t *testing.T) {
	runs := 0
	tunnel := Check{Name: "tunnel", Run: func(context.Context) error {
		runs++
		if runs < 3 {
			return errors.New("no handshake yet")
		}
		return nil
	}}
	storeRuns := 0
	store := Check{Name: "store", Run: func(context.Context) error { storeRuns++; return nil }}
	res := runChecks(context.Background(), []Check{store, tunnel}, time.Millisecond)
	if f := res.failed([]string{"store", "tunnel"}); f != "" {
		t.Fatalf("failed: %s", f)
	}
	if runs != 3 || storeRuns != 1 {
		t.Fatalf("tunnel ran %d times (want 3), store %d (want 1: a passed check is not run again)", runs, storeRuns)
	}
}

func TestPanickingCheckFails(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := Check{Name: "scp", Run: func(context.Context) error { cancel(); panic("nil appliance") }}
	res := runChecks(ctx, []Check{c}, time.Millisecond)
	if f := res.failed([]string{"scp"}); !strings.Contains(f, "panic: nil appliance") {
		t.Fatalf("failed = %q", f)
	}
}
