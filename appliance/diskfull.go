package appliance

import (
	"fmt"
	"sync"
	"time"

	"github.com/relais/relais/store"
)

// A full disk is known by its evidence: a store refused for space opens a
// refusal, recorded as one event (not one per refused C-STORE); it is over
// when the disk has room again (after a purge, or the operator's cleaning).
// The disk alarm shows while it lasts. A disk failing to save (an I/O
// error) is a refusal too, over at the next instance saved.

// refusal is a run of stores refused for one cause.
type refusal struct {
	mu      sync.Mutex
	since   time.Time // the first store refused; zero: not refusing
	refused int       // stores refused since
	last    string    // why the last one was
}

// add counts a refused store; began, if not nil, runs when it begins a
// refusal, before the refusal can end (so its event comes first).
func (r *refusal) add(why string, began func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refused++
	r.last = why
	if !r.since.IsZero() {
		return
	}
	r.since = time.Now()
	if began != nil {
		began()
	}
}

// end ends the refusal, if one runs, and calls ended with what it was.
func (r *refusal) end(ended func(since time.Time, refused int)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.since.IsZero() {
		return
	}
	ended(r.since, r.refused)
	r.since, r.refused, r.last = time.Time{}, 0, ""
}

// state is the refusal running (zero since: none).
func (r *refusal) state() (since time.Time, refused int, last string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.since, r.refused, r.last
}

// refusedForSpace records a store refused because the disk is full. The
// first of a refusal is an event.
func (a *Appliance) refusedForSpace() {
	a.refusing.add("disk full", func() {
		stats, err := a.store.Stats()
		if err != nil {
			a.event(store.KindStore, store.Error, fmt.Sprintf("disk full: refusing new studies (A700); the store cannot be read: %v", err), nil)
			return
		}
		a.event(store.KindStore, store.Error, "disk full: refusing new studies (A700): "+diskFullFacts(stats.Space, undelivered(stats))+"; "+diskFullAction, nil)
	})
}

// saveFailed records a store the disk failed to save; the caller writes
// its event, with the instance.
func (a *Appliance) saveFailed(err error) { a.failing.add(err.Error(), nil) }

// saved ends a run of failures to save: an instance was saved.
func (a *Appliance) saved() {
	a.failing.end(func(since time.Time, n int) {
		a.event(store.KindStore, store.Info, fmt.Sprintf("the disk saves instances again (%d instance(s) refused since %s, when it failed to save them)",
			n, since.Local().Format(time.TimeOnly)), nil)
	})
}

// saveFailAction is what to do when the disk fails to save.
const saveFailAction = "action: restart the box; if it comes back, have its disk checked or replaced (call the regional team)"

// checkDisk looks at the disk (one statfs) every diskCheckEvery; see
// diskSeen.
func (a *Appliance) checkDisk() {
	if sp, err := a.store.Space(); err == nil {
		a.diskSeen(sp)
	}
}

// diskSeen acts on the disk as a commit or checkDisk found it: past the
// high watermark (or the store's purge point) it starts a purge in the
// background, so that room is made before a store has to wait for it; and
// it ends a refusal once there is room.
func (a *Appliance) diskSeen(sp store.Space) {
	cfg := a.Config()
	if sp.Purging(purgePolicy(&cfg)) {
		a.purgeSoon()
	}
	a.roomAgain(sp)
}

// roomAgain ends a refusal once the disk has room again: as much free as
// retention keeps (the Purge point), not merely a store's worth, so that
// a disk hovering at the refusal level, where one store passes and the
// next is refused, stays one refusal.
func (a *Appliance) roomAgain(sp store.Space) {
	if sp.Free < sp.Purge {
		return
	}
	a.refusing.end(func(since time.Time, n int) {
		a.event(store.KindStore, store.Info, fmt.Sprintf("disk has room again: receiving new studies (%d instance(s) refused for space since %s)",
			n, since.Local().Format(time.TimeOnly)), nil)
	})
}

// diskFullAction is what to do when the disk is full of undelivered
// studies: they cannot be purged, so they must leave, or the disk grow.
const diskFullAction = "action: check the tunnel and the destinations (studies not yet delivered are never purged), or add disk"

// diskFullFacts are the figures that go with a full disk.
func diskFullFacts(sp store.Space, undelivered int64) string {
	return fmt.Sprintf("%s not yet delivered, %s free of %s (new studies are refused below %s free)",
		mb(uint64(max(undelivered, 0))), mb(sp.Free), mb(sp.Total), mb(sp.Refuse))
}

// undelivered is the bytes that some destination still waits for (waiting
// and parked instances): retention never removes them.
func undelivered(stats store.Stats) int64 {
	var n int64
	for _, q := range stats.Queues {
		n += waiting(q) + q.States[store.Parked].Bytes
	}
	return n
}

// waiting is the bytes a destination has yet to take.
func waiting(q store.QueueStats) int64 {
	var n int64
	for _, s := range []store.State{store.Pending, store.InFlight, store.Failed} {
		n += q.States[s].Bytes
	}
	return n
}
