package dimse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// Proposal is a presentation context to propose: one abstract syntax and the
// transfer syntaxes we can send it in, preferred first.
type Proposal struct {
	AbstractSyntax   string
	TransferSyntaxes []string
}

// DialParams describe an association to request.
type DialParams struct {
	CallingAE, CalledAE string
	Proposals           []Proposal
	Roles               []RoleSelection
	UserIdentity        *UserIdentity
	// Handlers answer requests the peer sends on this association (for
	// example a Storage Commitment report).
	Handlers Handlers
	Config   Config
	// Dial opens the transport; nil uses net.Dialer (the tunnel supplies its own).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// ErrNoContextAccepted: the peer accepted the association but none of the
// presentation contexts proposed.
var ErrNoContextAccepted = errors.New("no presentation context accepted")

// Dial opens a TCP connection to addr and requests an association. A
// refusal is returned as *Rejection.
func Dial(ctx context.Context, addr string, p DialParams) (*Association, error) {
	cfg := p.Config.withDefaults()
	if len(p.Proposals) == 0 || len(p.Proposals) > 128 {
		return nil, fmt.Errorf("associate with %s: %d presentation contexts, want 1 to 128", addr, len(p.Proposals))
	}
	dial := p.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: cfg.ARTIM}).DialContext
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("associate with %s: %w", addr, err)
	}
	a, err := requestAssociation(ctx, conn, p, cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("associate with %s (%s): %w", p.CalledAE, addr, err)
	}
	go a.serve()
	return a, nil
}

func requestAssociation(ctx context.Context, conn net.Conn, p DialParams, cfg Config) (*Association, error) {
	rq := &Associate{
		ProtocolVersion:    1,
		CalledAE:           p.CalledAE,
		CallingAE:          p.CallingAE,
		ApplicationContext: ApplicationContext,
		UserInfo: UserInfo{
			MaxPDULength:              cfg.MaxPDULength,
			ImplementationClassUID:    ImplementationClassUID,
			ImplementationVersionName: ImplementationVersionName,
			Roles:                     p.Roles,
			UserIdentity:              p.UserIdentity,
		},
	}
	for i, pr := range p.Proposals {
		rq.Contexts = append(rq.Contexts, PresentationContext{
			ID:               byte(2*i + 1), // odd IDs (PS3.8 9.3.2.2)
			AbstractSyntax:   pr.AbstractSyntax,
			TransferSyntaxes: pr.TransferSyntaxes,
		})
	}
	deadline := time.Now().Add(cfg.ARTIM)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	conn.SetWriteDeadline(deadline)
	if _, err := conn.Write(encodeAssociate(pduAssociateRQ, rq)); err != nil {
		return nil, fmt.Errorf("send A-ASSOCIATE-RQ: %w", err)
	}
	dc := &deadlineConn{Conn: conn, deadline: deadline}
	pr := newPDUReader(dc, cfg.MaxPDULength)
	typ, body, err := pr.next()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("read A-ASSOCIATE-AC: %w", err)
	}
	switch typ {
	case pduAssociateAC:
	case pduAssociateRJ:
		return nil, decodeReject(body)
	case pduAbort:
		return nil, &AbortError{Source: AbortSource(body[2]), Reason: AbortReason(body[3])}
	default:
		conn.Write(encodeAbort(AbortSourceProvider, AbortUnexpectedPDU))
		return nil, fmt.Errorf("PDU 0x%02X in answer to A-ASSOCIATE-RQ", typ)
	}
	ac, err := decodeAssociate(typ, body)
	if err != nil {
		var pe *ProtocolError
		if errors.As(err, &pe) {
			conn.Write(encodeAbort(AbortSourceProvider, pe.Reason))
		}
		return nil, fmt.Errorf("A-ASSOCIATE-AC: %w", err)
	}
	ids := map[byte]bool{}
	for _, pc := range rq.Contexts {
		ids[pc.ID] = true
	}
	for _, pc := range ac.Contexts {
		if pc.Result == ResultAcceptance && !ids[pc.ID] {
			conn.Write(encodeAbort(AbortSourceProvider, AbortInvalidParameterValue))
			return nil, fmt.Errorf("A-ASSOCIATE-AC accepts presentation context %d, which was not proposed", pc.ID)
		}
	}
	conn.SetDeadline(time.Time{})
	dc.deadline, dc.applied = time.Time{}, time.Time{}
	a := newAssociation(conn, true, rq, ac, cfg, p.Handlers)
	a.dc, a.pr = dc, pr
	if len(a.contexts) == 0 {
		a.abort(AbortSourceUser, AbortNotSpecified, nil)
		return nil, ErrNoContextAccepted
	}
	return a, nil
}
