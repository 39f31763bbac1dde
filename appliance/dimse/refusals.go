package dimse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Association requests that fail or are refused are logged sparingly: a
// flood of them would push everything else out of a small log (gokrazy
// keeps the last 100 lines). In each minute, the first failure of each
// caller (calling AE title and address, or the address alone when no
// request was read) is logged at info level, for the first refusalLines
// callers; the rest go to debug level and are counted into one info line
// when the minute ends (or the server stops). Refusals the Policy decided are at debug level and
// not counted: the Policy's owner reports them (the appliance aggregates
// them into its event log, which it prints too).

const (
	refusalWindow = time.Minute
	refusalLines  = 10   // callers logged at info level per window
	refusalKeys   = 1000 // distinct callers counted per window
)

// refusedError is a request refused once read: who asked, and whether the
// Policy refused it.
type refusedError struct {
	callingAE string
	byPolicy  bool
	err       error
}

func (e *refusedError) Error() string { return fmt.Sprintf("from %s: %v", e.callingAE, e.err) }
func (e *refusedError) Unwrap() error { return e.err }

// refusalLog is the current window's counts.
type refusalLog struct {
	mu           sync.Mutex
	start        time.Time
	callers      map[string]refusalMark // seen this window, up to refusalKeys
	logged       int                    // callers logged at info level
	quiet        int                    // failures logged at debug level only
	quietCallers int                    // distinct callers among them
	uncounted    bool                   // more callers than refusalKeys
}

type refusalMark struct{ logged, quiet bool }

// note records a failure from caller and says at which level to log it,
// with the summary of the window it ended, if it ended one.
func (r *refusalLog) note(caller string, now time.Time) (slog.Level, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	summary := r.roll(now, false)
	if r.callers == nil {
		r.callers = map[string]refusalMark{}
	}
	m, seen := r.callers[caller]
	if !seen && r.logged < refusalLines {
		r.callers[caller] = refusalMark{logged: true}
		r.logged++
		return slog.LevelInfo, summary
	}
	r.quiet++
	switch {
	case seen && !m.quiet, !seen && len(r.callers) < refusalKeys:
		r.callers[caller] = refusalMark{logged: m.logged, quiet: true}
		r.quietCallers++
	case !seen:
		r.uncounted = true
	}
	return slog.LevelDebug, summary
}

// roll ends the window when it is over (or when forced) and returns its
// summary if failures went to debug level. Under r.mu.
func (r *refusalLog) roll(now time.Time, force bool) string {
	if !force && now.Sub(r.start) < refusalWindow {
		return ""
	}
	since, quiet, callers, uncounted := r.start, r.quiet, r.quietCallers, r.uncounted
	r.start, r.callers, r.logged, r.quiet, r.quietCallers, r.uncounted = now, nil, 0, 0, 0, false
	if quiet == 0 {
		return ""
	}
	from := fmt.Sprintf("%d callers", callers)
	if uncounted {
		from = "more than " + from
	}
	return fmt.Sprintf("%d more association requests refused or failed since %s, from %s: logged at debug level only",
		quiet, since.Local().Format(time.TimeOnly), from)
}

// summarize logs the summary of each window as it ends, until ctx ends,
// then that of the last one; the returned func waits for it to be done.
func (s *Server) summarize(ctx context.Context, log *slog.Logger) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(refusalWindow / 4)
		defer t.Stop()
		for {
			var force bool
			select {
			case <-ctx.Done():
				force = true
			case <-t.C:
			}
			s.refusals.mu.Lock()
			summary := s.refusals.roll(time.Now(), force)
			s.refusals.mu.Unlock()
			if summary != "" {
				log.Info(summary)
			}
			if force {
				return
			}
		}
	}()
	return func() { <-done }
}

// notEstablished logs an association request that failed or was refused
// on the connection's logger, and a window's summary on the server's.
func (s *Server) notEstablished(server, conn *slog.Logger, addr netip.Addr, err error) {
	caller := addr.String()
	var re *refusedError
	if errors.As(err, &re) {
		if re.byPolicy {
			conn.Debug("association refused by the policy", "calling", re.callingAE, "err", re.err)
			return
		}
		caller = re.callingAE + "@" + caller
	}
	level, summary := s.refusals.note(caller, time.Now())
	if summary != "" {
		server.Info(summary)
	}
	conn.Log(context.Background(), level, "association not established", "err", err)
}
