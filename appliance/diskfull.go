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
// The disk alarm shows while it lasts.

type refusal struct {
	mu      sync.Mutex
	since   time.Time // the first store refused for space; zero: not refusing
	refused int       // stores refused since
}

// refusedForSpace records a store refused because the disk is full. The
// first of a refusal is an event, written before the refusal can end.
func (a *Appliance) refusedForSpace() {
	r := &a.refusing
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refused++
	if !r.since.IsZero() {
		return
	}
	r.since = time.Now()
	stats, err := a.store.Stats()
	if err != nil {
		a.event(store.KindStore, store.Error, fmt.Sprintf("disk full: refusing new studies (A700); the store cannot be read: %v", err), nil)
		return
	}
	a.event(store.KindStore, store.Error, "disk full: refusing new studies (A700): "+diskFullFacts(stats.Space, undelivered(stats))+"; "+diskFullAction, nil)
}

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
	r := &a.refusing
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.since.IsZero() || sp.Free < sp.Purge {
		return
	}
	a.event(store.KindStore, store.Info, fmt.Sprintf("disk has room again: receiving new studies (%d instance(s) refused for space since %s)",
		r.refused, r.since.Local().Format(time.TimeOnly)), nil)
	r.since, r.refused = time.Time{}, 0
}

// refusingSince tells when the current refusal began (zero: none) and how
// many stores it refused.
func (a *Appliance) refusingSince() (time.Time, int) {
	r := &a.refusing
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.since, r.refused
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
