package appliance

import (
	"container/list"
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/store"
)

// Unknown callers: the most recently seen few, with counts, for the
// technician to approve; and their refusals aggregated for the event log.
// A stranger knocking with made-up AE titles costs a fixed list and about a
// line a minute, not memory, status size and the box's own history.

const (
	// maxCallers is how many unknown callers are listed. A hospital has a
	// handful of modalities; a hundred covers a whole imaging department
	// sent our way by mistake, and keeps /v1/status small.
	maxCallers = 100
	// callerLogPeriod: after a caller's first refusal (logged at once), at
	// most one line per caller per period, with the count since its last.
	callerLogPeriod = 10 * time.Minute
	// refusalWindow and refusalLines cap the per-caller lines: beyond
	// refusalLines in a window, refusals are counted into one summary line
	// written when the window ends.
	refusalWindow = time.Minute
	refusalLines  = 10
)

// callerBook is the bounded list of unknown callers and the state of the
// refusal lines. It decides what to log under its lock; the appliance
// writes the lines outside it.
type callerBook struct {
	mu      sync.Mutex
	byKey   map[string]*list.Element // of *callerEntry
	lru     list.List                // front: most recently seen
	dropped int                      // refused callers pushed out of the list
	win     refusalCount
}

type callerEntry struct {
	key      string
	c        control.Caller
	unlogged int       // refusals in no event line yet
	loggedAt time.Time // its last line, or the summary that counted it
	window   int       // the last window whose summary counted it
}

// refusalCount is the current window of the global cap.
type refusalCount struct {
	n           int // window number, from 1
	start       time.Time
	lines       int // per-caller lines written in this window
	requests    int // refusals counted for the summary, not logged one by one
	callers     int // distinct listed callers among them
	wrongCalled int // requests for another called AE title among them
}

// line is one event the book asks to be written.
type line struct {
	msg   string
	attrs map[string]string
}

// newCallerBook starts with a window that is already over, so the first
// refusal opens one.
func newCallerBook() *callerBook {
	return &callerBook{byKey: map[string]*list.Element{}, win: refusalCount{n: 1}}
}

// refused records a refused request from ae at ip and says what to log.
func (b *callerBook) refused(ae string, ip netip.Addr, now time.Time) []line {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.roll(now, false)
	e, _ := b.seen(ae, ip, false, now)
	switch {
	case !e.loggedAt.IsZero() && now.Sub(e.loggedAt) < callerLogPeriod:
		e.unlogged++
	case b.win.lines < refusalLines:
		out = append(out, b.callerLine(e, e.unlogged+1, now))
	default:
		b.count(e, e.unlogged+1)
		e.loggedAt = now
	}
	return out
}

// learned records a caller let in by learning mode; added says it was not
// listed (the appliance logs that once, not on every association).
func (b *callerBook) learned(ae string, ip netip.Addr, now time.Time) (added bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, added = b.seen(ae, ip, true, now)
	return added
}

// wrongCalled records a request for another called AE title: not a caller
// to approve, so not listed, but under the same cap.
func (b *callerBook) wrongCalled(msg string, attrs map[string]string, now time.Time) []line {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.roll(now, false)
	if b.win.lines < refusalLines {
		b.win.lines++
		return append(out, line{msg, attrs})
	}
	b.win.requests++
	b.win.wrongCalled++
	return out
}

// seen finds or adds the caller, counts the attempt and makes it the most
// recent; the least recently seen beyond maxCallers is dropped.
func (b *callerBook) seen(ae string, ip netip.Addr, learned bool, now time.Time) (e *callerEntry, added bool) {
	k := callerKey(ae, ip)
	if el, ok := b.byKey[k]; ok {
		b.lru.MoveToFront(el)
		e = el.Value.(*callerEntry)
	} else {
		e = &callerEntry{key: k, c: control.Caller{AETitle: ae, Address: ip.String(), FirstSeen: now}}
		b.byKey[k] = b.lru.PushFront(e)
		added = true
	}
	e.c.LastSeen = now
	e.c.Attempts++
	e.c.Learned = e.c.Learned || learned
	for b.lru.Len() > maxCallers {
		b.drop(b.lru.Back())
	}
	return e, added
}

// drop forgets a caller; refusals of it not yet logged go to the summary.
func (b *callerBook) drop(el *list.Element) {
	e := b.lru.Remove(el).(*callerEntry)
	delete(b.byKey, e.key)
	if e.unlogged > 0 {
		b.count(e, e.unlogged)
	}
	if !e.c.Learned {
		b.dropped++
	}
}

// count adds n refusals of e to the window's summary.
func (b *callerBook) count(e *callerEntry, n int) {
	b.win.requests += n
	if e.window != b.win.n {
		e.window = b.win.n
		b.win.callers++
	}
	e.unlogged = 0
}

func (b *callerBook) callerLine(e *callerEntry, n int, now time.Time) line {
	b.win.lines++
	msg := fmt.Sprintf("unknown modality %s (%s) tried to send: approve it to accept", e.c.AETitle, e.c.Address)
	if !e.loggedAt.IsZero() {
		msg = fmt.Sprintf("unknown modality %s (%s) tried to send %d more time(s) since %s: approve it to accept",
			e.c.AETitle, e.c.Address, n, e.loggedAt.Local().Format(time.TimeOnly))
	}
	e.loggedAt, e.unlogged = now, 0
	return line{msg, map[string]string{"calling_ae": e.c.AETitle, "address": e.c.Address, "attempts": strconv.Itoa(n)}}
}

// roll ends the window when it is over (or when forced, at shutdown) and
// returns its summary line, if anything went uncounted.
func (b *callerBook) roll(now time.Time, force bool) []line {
	if !force && now.Sub(b.win.start) < refusalWindow {
		return nil
	}
	w := b.win
	b.win = refusalCount{n: w.n + 1, start: now}
	if w.requests == 0 {
		return nil
	}
	msg := fmt.Sprintf("%d refused association requests in the last minute", w.requests)
	if w.callers > 0 {
		msg = fmt.Sprintf("%d refused association requests from %d unknown callers in the last minute", w.requests, w.callers)
	}
	if w.wrongCalled > 0 {
		msg += fmt.Sprintf(" (%d of them called another AE title)", w.wrongCalled)
	}
	return []line{{msg + ": not each logged; relais callers lists the latest", map[string]string{
		"requests": strconv.Itoa(w.requests), "callers": strconv.Itoa(w.callers)}}}
}

// flush ends the window if it is over and logs, within the cap, the
// callers whose period has passed with refusals not yet logged. It runs
// every few seconds, so a caller that stopped knocking still gets its count.
func (b *callerBook) flush(now time.Time) []line {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.roll(now, false)
	for el := b.lru.Front(); el != nil; el = el.Next() {
		e := el.Value.(*callerEntry)
		if e.unlogged == 0 || now.Sub(e.loggedAt) < callerLogPeriod {
			continue
		}
		if b.win.lines < refusalLines {
			out = append(out, b.callerLine(e, e.unlogged, now))
		} else {
			b.count(e, e.unlogged)
			e.loggedAt = now
		}
	}
	return out
}

// close ends the window, for the last summary at shutdown.
func (b *callerBook) close(now time.Time) []line {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.roll(now, true)
}

// list returns the listed callers, most recently seen first, and how many
// refused callers were dropped from the list.
func (b *callerBook) list() ([]control.Caller, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]control.Caller, 0, b.lru.Len())
	for el := b.lru.Front(); el != nil; el = el.Next() {
		out = append(out, el.Value.(*callerEntry).c)
	}
	return out, b.dropped
}

// forget removes ae's entries (at address, or all when address is empty).
func (b *callerBook) forget(ae, address string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for el := b.lru.Front(); el != nil; {
		next := el.Next()
		if c := el.Value.(*callerEntry).c; c.AETitle == ae && (address == "" || c.Address == address) {
			b.lru.Remove(el)
			delete(b.byKey, el.Value.(*callerEntry).key)
		}
		el = next
	}
}

// refusalEvents writes the lines the caller book asked for.
func (a *Appliance) refusalEvents(lines []line) {
	for _, l := range lines {
		a.event(store.KindReject, store.Warning, l.msg, l.attrs)
	}
}

// refusalLoop ends the refusal windows and logs the counts of callers
// that stopped knocking; at shutdown it writes the last summary.
func (a *Appliance) refusalLoop(ctx context.Context) {
	t := time.NewTicker(refusalWindow / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			a.refusalEvents(a.callers.close(time.Now()))
			return
		case now := <-t.C:
			a.refusalEvents(a.callers.flush(now))
		}
	}
}
