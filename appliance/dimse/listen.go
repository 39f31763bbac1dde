package dimse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// The accept loop never gives up: an accept error (out of file descriptors,
// a connection aborted before it was accepted) is retried after a backoff,
// as net/http does, and kept as evidence for the health line.

const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// ListenerHealth is what the listener saw, for the appliance's health line.
type ListenerHealth struct {
	LastAccept   time.Time // the last connection accepted
	Failing      bool      // accepting fails, since FailingSince; cleared by the next accept
	FailingSince time.Time
	OutOfFiles   bool   // the last error was EMFILE or ENFILE
	Errors       uint64 // accept errors since the server started
	LastError    string
	LastErrorAt  time.Time

	Open         int    // connections held, associated or not
	Pending      int    // of which not yet associated
	PendingBytes int    // bytes of A-ASSOCIATE-RQs being read
	Associations int    // associations established
	Closed       uint64 // connections closed at once, beyond the caps
	Refused      uint64 // requests refused for lack of budget
}

// listenState is the accept loop's evidence.
type listenState struct {
	mu           sync.Mutex
	lastAccept   time.Time
	failingSince time.Time // zero when accepting works
	episode      uint64    // errors in the current failing episode
	errors       uint64
	lastErr      error
	lastErrAt    time.Time
}

// Serve accepts connections until ctx ends or ln is closed; it then closes
// ln, aborts the associations and waits for them. Accept errors never end
// it: they are retried with a backoff of 5 ms doubling to 1 s.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	log := s.Config.withDefaults().Logger
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	summaries := s.summarize(ctx, log)
	defer func() { cancel(); summaries() }() // after the associations ended
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer s.wg.Wait()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept: %w", err)
			}
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			s.acceptFailed(log, err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff): // collected when unfired (Go 1.23)
			}
			continue
		}
		backoff = 0
		s.acceptWorked(log)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.ServeConn(ctx, conn)
		}()
	}
}

// acceptFailed records an error; the first of an episode is logged.
func (s *Server) acceptFailed(log *slog.Logger, err error) {
	ls := &s.listen
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := time.Now()
	ls.errors++
	ls.episode++
	ls.lastErr, ls.lastErrAt = err, now
	if ls.failingSince.IsZero() {
		ls.failingSince = now
		log.Warn("DICOM listener cannot accept connections; retrying", "err", err, "open", s.adm.openConns())
	}
}

// acceptWorked records a connection accepted, ending a failing episode.
func (s *Server) acceptWorked(log *slog.Logger) {
	ls := &s.listen
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := time.Now()
	ls.lastAccept = now
	if !ls.failingSince.IsZero() {
		log.Warn("DICOM listener accepting connections again", "after", now.Sub(ls.failingSince).Round(time.Millisecond), "errors", ls.episode)
		ls.failingSince, ls.episode = time.Time{}, 0
	}
}

// Health is a snapshot of the listener's evidence and the connections held.
func (s *Server) Health() ListenerHealth {
	ls := &s.listen
	ls.mu.Lock()
	h := ListenerHealth{
		LastAccept:   ls.lastAccept,
		Failing:      !ls.failingSince.IsZero(),
		FailingSince: ls.failingSince,
		Errors:       ls.errors,
		LastErrorAt:  ls.lastErrAt,
	}
	if ls.lastErr != nil {
		h.LastError = ls.lastErr.Error()
		h.OutOfFiles = errors.Is(ls.lastErr, syscall.EMFILE) || errors.Is(ls.lastErr, syscall.ENFILE)
	}
	ls.mu.Unlock()
	ad := &s.adm
	ad.mu.Lock()
	h.Open, h.Pending, h.PendingBytes, h.Associations = ad.conns, ad.pending, ad.pendingBytes, ad.assocs
	h.Closed, h.Refused = ad.closed, ad.refused
	ad.mu.Unlock()
	return h
}
