package tui

import "testing"

// TestETASaysRoughlyHowLongIsLeft: the queue's bytes over the measured
// rate, in words a technician reads at a glance.
func TestETASaysRoughlyHowLongIsLeft(t *testing.T) {
	for _, c := range []struct {
		seconds float64
		want    string
	}{
		{3, "a few seconds left"},
		{42, "about 40 s left"},
		{57, "about 1 min left"},
		{185, "about 3 min left"},
		{3590, "about 1 h 00 min left"},
		{2*3600 + 11*60, "about 2 h 10 min left"},
		{5 * 86400, "about 5 days left"},
	} {
		if got := eta(c.seconds); got != c.want {
			t.Errorf("eta(%v) = %q, want %q", c.seconds, got, c.want)
		}
	}
}
