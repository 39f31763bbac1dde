package store

import (
	"math"
	"testing"
	"time"
)

func TestSinceTakesATimeAheadOfTheClockAsLongAgo(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		t    time.Time
		want time.Duration
	}{
		{now.Add(-time.Minute), time.Minute},
		{now, 0},
		{now.Add(500 * time.Millisecond), -500 * time.Millisecond}, // read an instant apart
		{now.Add(2 * time.Hour), math.MaxInt64},                    // recorded before the clock was set back
	} {
		if got := Since(c.t, now); got != c.want {
			t.Errorf("Since(now%+v) = %v, want %v", c.t.Sub(now), got, c.want)
		}
	}
}
