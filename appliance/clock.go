package appliance

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/store"
)

// The box's clock, watched. What relaisd records (received-at times,
// events, retry times) is on the wall clock, and a box's wall clock can be
// wrong: a Raspberry Pi boots at 1970 until NTP answers, and a hospital
// network may never let NTP through; a PC may boot with its clock hours
// ahead (a real-time clock kept in local time) and be set back. A clock not
// set yet is a warning with the action; each step of the clock, forward or
// back, is an event saying from what to what, so that whoever reads the log
// knows why its times jump. What waits on a recorded time survives a clock
// set back (store/clock.go).

const (
	clockEvery = 5 * time.Second // how often the clock is looked at
	// clockSlack: a difference within it is not a step (NTP slews small
	// offsets, and a look may come late on a loaded box).
	clockSlack = 2 * time.Second
)

// clockWatch follows the wall clock against the monotonic one.
type clockWatch struct {
	floor time.Time        // a clock before it is not set (zero: unknown)
	wall  func() time.Time // the wall clock: time.Now, or a test's

	mu   sync.Mutex
	last time.Time // the wall clock at the last look
	mono time.Time // time.Now() then, for its monotonic reading
}

func newClockWatch(floor time.Time, wall func() time.Time) *clockWatch {
	if wall == nil {
		wall = time.Now
	}
	c := &clockWatch{floor: floor, wall: wall}
	c.last, c.mono = c.wall().Round(0), time.Now()
	return c
}

// look returns the wall clock now, what it would read had it not stepped
// since the last look (then, advanced by the time that passed), and
// whether it stepped.
func (c *clockWatch) look() (now, was time.Time, stepped bool) {
	now, mono := c.wall().Round(0), time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	was = c.last.Add(mono.Sub(c.mono))
	c.last, c.mono = now, mono
	d := now.Sub(was)
	return now, was, d > clockSlack || d < -clockSlack
}

// unset says whether the clock reads a time before the floor.
func (c *clockWatch) unset(now time.Time) bool { return now.Before(c.floor) }

// waited corrects a wait counted from a recorded time. One longer than the
// time since the floor began while the clock was unset (a study received
// "in 1970"); it has lasted at least since relaisd started, which is what
// waited says of it, rather than 56 years.
func (c *clockWatch) waited(age time.Duration, now, started time.Time) time.Duration {
	if !c.floor.IsZero() && age > now.Sub(c.floor) {
		return time.Since(started)
	}
	return age
}

// clockLoop looks at the clock every clockEvery until ctx ends.
func (a *Appliance) clockLoop(ctx context.Context) {
	t := time.NewTicker(clockEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now, was, stepped := a.clock.look(); stepped {
			a.clockStepped(was, now)
		}
	}
}

// clockStepped says that the clock moved from was to now at once.
func (a *Appliance) clockStepped(was, now time.Time) {
	const layout = "2006-01-02 15:04:05 MST"
	from, to := was.Format(layout), now.Format(layout)
	switch {
	case a.clock.unset(was) && !a.clock.unset(now):
		a.event(store.KindConfig, store.Info, fmt.Sprintf("the clock is set: it read %s, it reads %s now; times recorded before are of the unset clock", from, to), nil)
	case now.Before(was):
		a.event(store.KindConfig, store.Warning, fmt.Sprintf("the clock was set back by %s: it read %s, it reads %s now; retries and commitment requests counted on the old time go ahead now",
			stepLength(was.Sub(now)), from, to), nil)
	default:
		a.event(store.KindConfig, store.Info, fmt.Sprintf("the clock was set forward by %s: it read %s, it reads %s now", stepLength(now.Sub(was)), from, to), nil)
	}
}

// stepLength says how far the clock moved, in days beyond two.
func stepLength(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	return d.Round(time.Second).String()
}

// clock warns while the box's clock is not set.
func (h health) clock(c *clockWatch, tunnel bool) {
	now := c.wall()
	if !c.unset(now) {
		return
	}
	part := &h.st.Health.Forwarding
	consequence := "received times and the event log's times are wrong"
	if tunnel {
		part = &h.st.Health.Tunnel
		consequence += ", and the reading center's WireGuard may refuse the tunnel (its handshakes carry the time)"
	}
	h.alarm(part, control.LevelWarning, "", "the box's clock is not set (it reads %s): %s; action: let the box reach an NTP server (UDP port 123: *.gokrazy.pool.ntp.org, or one the hospital's DHCP server offers) — ask the hospital's IT",
		now.Format("2006-01-02 15:04 MST"), consequence)
}
