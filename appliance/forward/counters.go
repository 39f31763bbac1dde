package forward

import (
	"sync/atomic"
	"time"
)

// Counters count what forwarding to one destination did since relaisd
// started. The owner keeps one per destination name and hands it to every
// forwarder it makes for that name, so the counts go on when a
// configuration change replaces the forwarder: the metrics need counters
// that only go up.
type Counters struct {
	Delivered      atomic.Int64 // instances the destination accepted
	BytesSent      atomic.Int64 // their stored sizes
	FailedAttempts atomic.Int64 // attempts at one instance that failed (it is retried, or parked)
	Parked         atomic.Int64 // instances parked after repeated failures
	Committed      atomic.Int64 // instances the destination committed
	CommitFailures atomic.Int64 // commitment requests refused, failed or unanswered
	lastSuccess    atomic.Int64 // unix nanoseconds of the last delivery; 0: none
}

// LastSuccess is when an instance was last delivered (zero: never).
func (c *Counters) LastSuccess() time.Time {
	if n := c.lastSuccess.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// delivered counts one delivered instance of size bytes.
func (c *Counters) delivered(size int64, at time.Time) {
	c.Delivered.Add(1)
	c.BytesSent.Add(size)
	c.lastSuccess.Store(at.UnixNano())
}
