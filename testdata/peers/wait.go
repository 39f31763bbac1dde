package peers

import (
	"testing"
	"time"
)

// Eventually polls cond until it holds, or fails the test after within with
// what cond last said. Deadlines are generous: tests share a loaded machine
// and assert behaviour, not speed.
func Eventually(t testing.TB, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v; last:\n%s", what, within, last)
}
