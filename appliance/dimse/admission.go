package dimse

import (
	"net"
	"net/netip"
	"sync"
)

// Admission bounds what connections may hold before and after they
// associate, so that no caller, known or not, can take what others need:
// connections beyond a cap are closed at once; the bytes of A-ASSOCIATE-RQs
// still being read come out of a budget; associations are counted per
// calling AE title and per source address, each held to a share.

// Defaults of the Server's admission limits.
const (
	// DefaultMaxAssociations applies when SetMaxAssociations was never called.
	DefaultMaxAssociations = 100
	// DefaultPendingMargin is how many connections not yet associated may
	// exist beyond MaxAssociations: room for callers to associate while the
	// slots are full of associations.
	DefaultPendingMargin = 64
	// DefaultPendingBudget bounds the bytes held by A-ASSOCIATE-RQs being
	// read: 256 RQs of the largest size we take.
	DefaultPendingBudget = 256 * maxAssociatePDU
)

// limits are the admission limits in force for one decision.
type limits struct {
	assoc, perCaller, perAddr int // associations
	conns, connsPerAddr       int // open connections, associated or not
	budget, budgetPerAddr     int // bytes of RQs being read
}

// limits computes the limits from the configured ones: a share left at 0
// is half of its total, so one caller always leaves half to the others.
func (s *Server) limits() limits {
	l := limits{assoc: s.MaxAssociations()}
	l.perCaller = shareOf(s.MaxPerCaller, l.assoc)
	l.perAddr = shareOf(s.MaxPerAddress, l.assoc)
	margin := s.PendingMargin
	if margin == 0 {
		margin = DefaultPendingMargin
	}
	l.conns = l.assoc + margin
	l.connsPerAddr = shareOf(0, l.conns)
	l.budget = s.PendingBudget
	if l.budget == 0 {
		l.budget = DefaultPendingBudget
	}
	l.budgetPerAddr = shareOf(0, l.budget)
	return l
}

func shareOf(configured, total int) int {
	if configured > 0 {
		return min(configured, total)
	}
	return max(total/2, 1)
}

// admission counts what connections hold; its lock is held for counting only.
type admission struct {
	mu           sync.Mutex
	conns        int
	connsByAddr  map[netip.Addr]int
	pending      int // connections not yet associated
	pendingBytes int
	bytesByAddr  map[netip.Addr]int
	assocs       int
	byCaller     map[string]int
	byAddr       map[netip.Addr]int
	closed       uint64 // connections closed at once, beyond the cap
	refused      uint64 // RQs refused for lack of budget
}

func (ad *admission) init() {
	if ad.connsByAddr == nil {
		ad.connsByAddr = map[netip.Addr]int{}
		ad.bytesByAddr = map[netip.Addr]int{}
		ad.byCaller = map[string]int{}
		ad.byAddr = map[netip.Addr]int{}
	}
}

// addrKey is the source address a share is counted by (no port).
func addrKey(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// open counts a new connection, or refuses it beyond the caps.
func (ad *admission) open(addr netip.Addr, l limits) bool {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	ad.init()
	if ad.conns >= l.conns || ad.connsByAddr[addr] >= l.connsPerAddr {
		ad.closed++
		return false
	}
	ad.conns++
	ad.connsByAddr[addr]++
	ad.pending++
	return true
}

// answered marks a connection's request as answered: it is no longer pending.
func (ad *admission) answered() {
	ad.mu.Lock()
	ad.pending--
	ad.mu.Unlock()
}

// close uncounts a connection.
func (ad *admission) close(addr netip.Addr) {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	ad.conns--
	decr(ad.connsByAddr, addr)
}

// take reserves n more bytes of RQ for a connection from addr.
func (ad *admission) take(addr netip.Addr, n int, l limits) bool {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	ad.init()
	if ad.pendingBytes+n > l.budget || ad.bytesByAddr[addr]+n > l.budgetPerAddr {
		ad.refused++
		return false
	}
	ad.pendingBytes += n
	ad.bytesByAddr[addr] += n
	return true
}

// give returns n bytes taken for addr.
func (ad *admission) give(addr netip.Addr, n int) {
	if n == 0 {
		return
	}
	ad.mu.Lock()
	defer ad.mu.Unlock()
	ad.pendingBytes -= n
	if ad.bytesByAddr[addr] -= n; ad.bytesByAddr[addr] <= 0 {
		delete(ad.bytesByAddr, addr)
	}
}

// associate takes an association slot for a caller, or says why not.
func (ad *admission) associate(caller string, addr netip.Addr, l limits) *Rejection {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	ad.init()
	if ad.assocs >= l.assoc || ad.byCaller[caller] >= l.perCaller || ad.byAddr[addr] >= l.perAddr {
		return RejectLocalLimit
	}
	ad.assocs++
	ad.byCaller[caller]++
	ad.byAddr[addr]++
	return nil
}

// release frees an association slot.
func (ad *admission) release(caller string, addr netip.Addr) {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	ad.assocs--
	decr(ad.byCaller, caller)
	decr(ad.byAddr, addr)
}

func (ad *admission) active() int {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	return ad.assocs
}

func decr[K comparable](m map[K]int, k K) {
	if m[k]--; m[k] <= 0 {
		delete(m, k)
	}
}

func (ad *admission) openConns() int {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	return ad.conns
}
