package store

import (
	"hash/maphash"
	"sync"
)

// notDue remembers when the queue entries Lease found waiting for a later
// retry, or leased still, may be leased, so that the next leases pass over
// them without reading them. With a PACS refusing a weekend's backlog,
// 20,000 failed entries ahead of the new ones cost a lease 291 ms, and the
// forwarder leases every 5 s and at each instance received.
//
// A hint, right or absent: every write of an entry forgets it (putEntry,
// deleteEntry), and a transaction discarded or failed forgets everything,
// since what it noted was read in a state that never was. Entries are known
// by a hash of their key: 16 bytes each in the map, and a collision at worst
// delays an entry until the other's time. Bounded by maxNotDue; beyond it,
// entries are read as before.
type notDue struct {
	mu     sync.Mutex
	seed   maphash.Seed
	at     map[uint64]int64 // unix nanoseconds from which the entry may be leased
	latest int64            // the latest clock reading a lease began with
}

// maxNotDue bounds the entries remembered: about 4 MB.
const maxNotDue = 100_000

func newNotDue() *notDue { return &notDue{seed: maphash.MakeSeed(), at: map[uint64]int64{}} }

// leasing starts a lease at now. A clock earlier than the latest one seen
// was set back (clock.go): what was noted waits for times that no longer
// hold (a failed entry's wait is over then, see Entry.leasable), so it is
// dropped.
func (n *notDue) leasing(now int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case now < n.latest-int64(clockStep):
		clear(n.at)
		n.latest = now
	case now > n.latest:
		n.latest = now
	}
}

// skip says whether the entry under k (its queue key) is known not to be
// leasable at now.
func (n *notDue) skip(k key, now int64) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	at, ok := n.at[maphash.Bytes(n.seed, k)]
	return ok && at > now
}

// note remembers that the entry under k may be leased from at.
func (n *notDue) note(k key, at int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.at) < maxNotDue {
		n.at[maphash.Bytes(n.seed, k)] = at
	}
}

// forget drops what is known of the entry under k: it is being written.
func (n *notDue) forget(k key) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.at) > 0 {
		delete(n.at, maphash.Bytes(n.seed, k))
	}
}

// clear drops everything: a transaction that noted or forgot entries was
// discarded.
func (n *notDue) clear() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.at)
}
