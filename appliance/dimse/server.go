package dimse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
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
// so no peer can delay another. Set its fields before Serve; after, only
// through SetMaxAssociations.
type Server struct {
	Policy   Policy
	Handlers Handlers
	Config   Config
	// MaxPerCaller and MaxPerAddress bound the associations one calling AE
	// title and one source address may hold; beyond, A-ASSOCIATE-RJ
	// transient (local limit exceeded) while others still get in. 0 takes
	// half of MaxAssociations: one caller always leaves half to the others.
	MaxPerCaller, MaxPerAddress int
	// PendingMargin is how many connections not yet associated may be open
	// beyond MaxAssociations; more are closed at once, and one address may
	// hold half of the total. 0 takes DefaultPendingMargin.
	PendingMargin int
	// PendingBudget bounds the bytes held by A-ASSOCIATE-RQs being read,
	// before the caller is known; one address may hold half of it. Beyond,
	// a request gets A-ASSOCIATE-RJ transient (temporary congestion). 0
	// takes DefaultPendingBudget (16 MiB).
	PendingBudget int
	// Quiet, when set, picks the associations whose start and end are
	// logged at debug level, not info: the box's own periodic C-ECHO would
	// otherwise fill a small log with lines that say nothing.
	Quiet func(a *Association) bool

	maxAssociations atomic.Int64
	adm             admission
	listen          listenState
	refusals        refusalLog
	wg              sync.WaitGroup
}

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

// Active is the number of associations being served.
func (s *Server) Active() int { return s.adm.active() }

// ServeConn runs one association on conn until it ends; it closes conn.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn) {
	cfg := s.Config.withDefaults()
	addr := addrKey(conn.RemoteAddr())
	l := s.limits()
	if !s.adm.open(addr, l) {
		// Beyond the caps: closing at once answers fastest and holds nothing.
		conn.Close()
		return
	}
	defer s.adm.close(addr)
	log := cfg.Logger.With("remote", conn.RemoteAddr().String())
	a, err := s.accept(conn, cfg, addr, l)
	s.adm.answered()
	if err != nil {
		s.notEstablished(cfg.Logger, log, addr, err)
		closeAnswered(conn, err)
		return
	}
	defer s.adm.release(a.CallingAE(), addr)
	stop := context.AfterFunc(ctx, func() {
		a.abort(AbortSourceUser, AbortNotSpecified, errors.New("server shutting down"))
	})
	defer stop()
	level := slog.LevelInfo
	if s.Quiet != nil && s.Quiet(a) {
		level = slog.LevelDebug
	}
	a.log.Log(ctx, level, "association accepted", "contexts", len(a.contexts))
	a.serve()
	if err := a.Err(); err != nil {
		a.log.Log(ctx, level, "association ended", "err", err)
	} else {
		a.log.Log(ctx, level, "association released")
	}
}

// readRQ reads the A-ASSOCIATE-RQ within ARTIM, its bytes taken from the
// budget of connections not yet associated and given back once decoded.
func (s *Server) readRQ(conn net.Conn, cfg Config, addr netip.Addr, l limits) (*Associate, error) {
	// ARTIM runs from the first moment: a silent or slow peer is dropped.
	conn.SetReadDeadline(time.Now().Add(cfg.ARTIM))
	taken := 0
	defer func() { s.adm.give(addr, taken) }()
	_, body, err := readAssociateRQ(conn, func(n int) bool {
		if !s.adm.take(addr, n, l) {
			return false
		}
		taken += n
		return true
	})
	if err != nil {
		return nil, err
	}
	rq, err := decodeAssociate(pduAssociateRQ, body)
	if err != nil {
		var pe *ProtocolError
		if !errors.As(err, &pe) {
			err = &ProtocolError{Reason: AbortInvalidParameterValue, Msg: err.Error()}
		}
		return nil, err
	}
	return rq, nil
}

// accept reads the A-ASSOCIATE-RQ and answers it; on acceptance the
// association holds a slot of the caller's share.
func (s *Server) accept(conn net.Conn, cfg Config, addr netip.Addr, l limits) (*Association, error) {
	answer := func(pdu []byte) {
		conn.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
		conn.Write(pdu)
	}
	rq, err := s.readRQ(conn, cfg, addr, l)
	var pe *ProtocolError
	switch {
	case errors.Is(err, errBudget):
		answer(encodeReject(RejectTemporaryCongestion))
		return nil, fmt.Errorf("read A-ASSOCIATE-RQ: %w", err)
	case errors.As(err, &pe):
		answer(encodeAbort(AbortSourceProvider, pe.Reason))
		return nil, fmt.Errorf("read A-ASSOCIATE-RQ: %w", err)
	case err != nil:
		return nil, fmt.Errorf("read A-ASSOCIATE-RQ: %w", err)
	}
	reject := func(rj *Rejection, byPolicy bool) (*Association, error) {
		answer(encodeReject(rj))
		return nil, &refusedError{callingAE: rq.CallingAE, byPolicy: byPolicy, err: rj}
	}
	switch {
	case rq.ProtocolVersion&1 == 0:
		return reject(RejectProtocolVersion, false)
	case rq.ApplicationContext != ApplicationContext:
		return reject(RejectAppContext, false)
	}
	if rj := s.Policy.Admit(rq, conn.RemoteAddr()); rj != nil {
		return reject(rj, true)
	}
	if rj := s.adm.associate(rq.CallingAE, addr, l); rj != nil {
		return reject(rj, false)
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
		s.adm.release(rq.CallingAE, addr)
		return nil, fmt.Errorf("send A-ASSOCIATE-AC: %w", err)
	}
	dc := &deadlineConn{Conn: conn}
	a := newAssociation(conn, false, rq, ac, cfg, s.Handlers)
	a.dc, a.pr = dc, newPDUReader(dc, cfg.MaxPDULength)
	return a, nil
}

// Lingering after a refusal: how long, and how much of the peer's rest.
const (
	lingerTimeout = time.Second
	lingerBytes   = 256 << 10
)

// closeAnswered closes a connection refused before association. The peer
// may still be sending its PDU, and unread bytes at close make the kernel
// reset the connection, which loses our answer: so unless the peer went
// silent or away, send FIN and discard what arrives, briefly, first.
func closeAnswered(conn net.Conn, err error) {
	defer conn.Close()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTruncated) || errors.Is(err, io.EOF) {
		return
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	conn.SetReadDeadline(time.Now().Add(lingerTimeout))
	io.CopyN(io.Discard, conn, lingerBytes)
}
