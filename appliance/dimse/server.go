package dimse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Policy decides which associations and presentation contexts an accepting
// side takes. The caller supplies it; StaticPolicy covers the simple cases.
type Policy interface {
	// Admit decides on the association as a whole (AE titles, address,
	// user identity); a non-nil Rejection refuses it.
	Admit(rq *Associate, remote net.Addr) *Rejection
	// Negotiate answers one proposed presentation context: a result and,
	// on acceptance, exactly one of the proposed transfer syntaxes.
	Negotiate(rq *Associate, pc PresentationContext) (result byte, transferSyntax string)
}

// StaticPolicy accepts by fixed lists; an empty list accepts anything.
type StaticPolicy struct {
	CalledAETitles   []string
	CallingAETitles  []string
	AbstractSyntaxes []string
	// TransferSyntaxes in our order of preference; empty takes the
	// peer's first proposal (for storage, how the sender prefers to send).
	TransferSyntaxes []string
}

func (p *StaticPolicy) Admit(rq *Associate, _ net.Addr) *Rejection {
	if len(p.CalledAETitles) > 0 && !slices.Contains(p.CalledAETitles, rq.CalledAE) {
		return RejectCalledAE
	}
	if len(p.CallingAETitles) > 0 && !slices.Contains(p.CallingAETitles, rq.CallingAE) {
		return RejectCallingAE
	}
	return nil
}

func (p *StaticPolicy) Negotiate(_ *Associate, pc PresentationContext) (byte, string) {
	if len(p.AbstractSyntaxes) > 0 && !slices.Contains(p.AbstractSyntaxes, pc.AbstractSyntax) {
		return ResultAbstractSyntaxUnsupported, ""
	}
	return ChooseTransferSyntax(pc, p.TransferSyntaxes)
}

// ChooseTransferSyntax picks the first of prefs the peer proposed (or the
// peer's first when prefs is empty). The stack's own services (Verification,
// Storage Commitment) only take the uncompressed little endian syntaxes it
// decodes.
func ChooseTransferSyntax(pc PresentationContext, prefs []string) (byte, string) {
	if pc.AbstractSyntax == VerificationSOPClass || pc.AbstractSyntax == StorageCommitmentSOPClass {
		prefs = []string{ExplicitVRLittleEndian, ImplicitVRLittleEndian}
	}
	if len(prefs) == 0 {
		return ResultAcceptance, pc.TransferSyntaxes[0]
	}
	for _, ts := range prefs {
		if slices.Contains(pc.TransferSyntaxes, ts) {
			return ResultAcceptance, ts
		}
	}
	return ResultTransferSyntaxUnsupported, ""
}

// Server accepts associations, each on its own goroutine with its own timers,
// so no peer can delay another.
type Server struct {
	Policy   Policy
	Handlers Handlers
	Config   Config

	maxAssociations atomic.Int64
	mu              sync.Mutex
	active          int
	listen          listenState
	wg              sync.WaitGroup
}

// DefaultMaxAssociations applies when SetMaxAssociations was never called.
const DefaultMaxAssociations = 100

// SetMaxAssociations bounds concurrent associations, beyond which requests
// are rejected transiently (local limit exceeded); n < 1 takes
// DefaultMaxAssociations. Safe at any time: associations above a lowered
// limit go on, new ones wait for room.
func (s *Server) SetMaxAssociations(n int) { s.maxAssociations.Store(int64(n)) }

// MaxAssociations is the limit in force.
func (s *Server) MaxAssociations() int {
	if n := s.maxAssociations.Load(); n > 0 {
		return int(n)
	}
	return DefaultMaxAssociations
}

func (s *Server) acquire() bool {
	limit := s.MaxAssociations()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active >= limit {
		return false
	}
	s.active++
	return true
}

func (s *Server) release() {
	s.mu.Lock()
	s.active--
	s.mu.Unlock()
}

// Active is the number of associations being served.
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// ServeConn runs one association on conn until it ends; it closes conn.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn) {
	cfg := s.Config.withDefaults()
	log := cfg.Logger.With("remote", conn.RemoteAddr().String())
	a, err := s.accept(conn, cfg)
	if err != nil {
		log.Info("association not established", "err", err)
		conn.Close()
		return
	}
	defer s.release()
	stop := context.AfterFunc(ctx, func() {
		a.abort(AbortSourceUser, AbortNotSpecified, errors.New("server shutting down"))
	})
	defer stop()
	a.log.Info("association accepted", "contexts", len(a.contexts))
	a.serve()
	if err := a.Err(); err != nil {
		a.log.Info("association ended", "err", err)
	} else {
		a.log.Info("association released")
	}
}

// accept reads the A-ASSOCIATE-RQ within ARTIM and answers it.
func (s *Server) accept(conn net.Conn, cfg Config) (*Association, error) {
	// ARTIM runs from the first moment: a silent or slow peer is dropped.
	dc := &deadlineConn{Conn: conn, deadline: time.Now().Add(cfg.ARTIM)}
	pr := newPDUReader(dc, cfg.MaxPDULength)
	typ, body, err := pr.next()
	if err != nil {
		var pe *ProtocolError
		if errors.As(err, &pe) {
			conn.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
			conn.Write(encodeAbort(AbortSourceProvider, pe.Reason))
		}
		return nil, fmt.Errorf("read A-ASSOCIATE-RQ: %w", err)
	}
	abort := func(reason AbortReason, err error) (*Association, error) {
		conn.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
		conn.Write(encodeAbort(AbortSourceProvider, reason))
		return nil, err
	}
	if typ != pduAssociateRQ {
		return abort(AbortUnexpectedPDU, fmt.Errorf("PDU 0x%02X before A-ASSOCIATE-RQ", typ))
	}
	rq, err := decodeAssociate(typ, body)
	if err != nil {
		var pe *ProtocolError
		reason := AbortInvalidParameterValue
		if errors.As(err, &pe) {
			reason = pe.Reason
		}
		return abort(reason, fmt.Errorf("A-ASSOCIATE-RQ: %w", err))
	}
	reject := func(rj *Rejection) (*Association, error) {
		conn.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
		conn.Write(encodeReject(rj))
		return nil, rj
	}
	switch {
	case rq.ProtocolVersion&1 == 0:
		return reject(RejectProtocolVersion)
	case rq.ApplicationContext != ApplicationContext:
		return reject(RejectAppContext)
	}
	if rj := s.Policy.Admit(rq, conn.RemoteAddr()); rj != nil {
		return reject(rj)
	}
	if !s.acquire() {
		return reject(RejectLocalLimit)
	}
	ac := &Associate{
		ProtocolVersion:    1,
		CalledAE:           rq.CalledAE,
		CallingAE:          rq.CallingAE,
		ApplicationContext: ApplicationContext,
		UserInfo: UserInfo{
			MaxPDULength:              cfg.MaxPDULength,
			ImplementationClassUID:    ImplementationClassUID,
			ImplementationVersionName: ImplementationVersionName,
		},
	}
	accepted := map[string]bool{}
	for _, pc := range rq.Contexts {
		res, ts := s.Policy.Negotiate(rq, pc)
		if res == ResultAcceptance {
			accepted[pc.AbstractSyntax] = true
		}
		ac.Contexts = append(ac.Contexts, PresentationContext{ID: pc.ID, Result: res, TransferSyntax: ts})
	}
	// Role selection: we take the roles proposed for the classes we accepted.
	for _, r := range rq.UserInfo.Roles {
		if accepted[r.SOPClass] {
			ac.UserInfo.Roles = append(ac.UserInfo.Roles, r)
		}
	}
	if rq.UserInfo.AsyncOpsInvoked != 0 || rq.UserInfo.AsyncOpsPerformed != 0 {
		ac.UserInfo.AsyncOpsInvoked, ac.UserInfo.AsyncOpsPerformed = 1, 1 // no asynchronous operations
	}
	if id := rq.UserInfo.UserIdentity; id != nil && id.PositiveResponseRequested {
		ac.UserInfo.UserIdentityResponse = []byte{} // no server response for these types
	}
	conn.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
	if _, err := conn.Write(encodeAssociate(pduAssociateAC, ac)); err != nil {
		s.release()
		conn.Close()
		return nil, fmt.Errorf("send A-ASSOCIATE-AC: %w", err)
	}
	a := newAssociation(conn, false, rq, ac, cfg, s.Handlers)
	a.dc, a.pr = dc, pr
	return a, nil
}
