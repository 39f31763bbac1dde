package store

import (
	"math"
	"time"
)

// The times the store records are the wall clock's, and a box's clock can
// be set back: a PC booted with its clock ahead (a real-time clock kept in
// local time), corrected by NTP an hour or two later. A wait counted from a
// time recorded before would then last as long again as the step. Whatever
// waits on a recorded time takes a clock earlier than that time, by more
// than clockStep, as a clock set back since, and the wait as over: a failed
// entry (Entry.leasable), a lease's hints (notDue), a study's quiet period
// (Since).

// clockStep is the least a clock set back must move to be taken as set
// back. Times read at once by different goroutines differ by less.
const clockStep = time.Second

// Since is how long before now t was, t a time the store recorded (a
// study's last instance received, say). A t more than clockStep after now
// was recorded before the clock was set back; how long ago is unknown, and
// Since says as long as can be, so that a wait counted from t is over
// rather than as long again as the step.
func Since(t, now time.Time) time.Duration {
	if t.Sub(now) > clockStep {
		return math.MaxInt64
	}
	return now.Sub(t)
}
