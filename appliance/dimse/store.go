package dimse

import (
	"context"
	"fmt"
	"io"
	"time"
)

// StoreRequest describes an incoming C-STORE before its data set arrives.
type StoreRequest struct {
	SOPClassUID       string
	SOPInstanceUID    string
	TransferSyntaxUID string // of the presentation context: how the data set is encoded
	ContextID         byte
	MessageID         uint16
	Priority          uint16 // 0 medium, 1 high, 2 low
	MoveOriginatorAE  string
}

// StoreSink receives one C-STORE data set as it arrives, fragment by fragment.
//
// Write is called with each fragment (the slice is reused afterwards). After
// Write returns an error it is not called again: the rest of the data set is
// read and discarded, and Close is still called, to name the status. Close
// is called once the last fragment is in and returns the status answered to
// the peer. Abort is called instead of Close when the association ends
// before the data set is complete: everything must be discarded.
type StoreSink interface {
	Write(p []byte) (int, error)
	Close() Status
	Abort(err error)
}

// StoreParams describe an outgoing C-STORE.
type StoreParams struct {
	SOPClassUID       string
	SOPInstanceUID    string
	TransferSyntaxUID string // the data set's encoding: sent as is, never converted
	Priority          uint16
	MoveOriginatorAE  string
	MoveOriginatorID  uint16
}

// NoContextError means the peer accepted no presentation context for an
// instance's SOP class and transfer syntax; nothing was sent.
type NoContextError struct {
	SOPClassUID, TransferSyntaxUID string
}

func (e *NoContextError) Error() string {
	return fmt.Sprintf("peer accepted no presentation context for SOP class %s in transfer syntax %s", e.SOPClassUID, e.TransferSyntaxUID)
}

// Store sends a C-STORE whose data set (without Part 10 meta header) is read
// from data and streamed to the peer, and returns the peer's status. Any
// error means the association is gone and the instance was not stored.
func (a *Association) Store(ctx context.Context, p StoreParams, data io.Reader) (Status, error) {
	pc, ok := a.ContextFor(p.SOPClassUID, p.TransferSyntaxUID)
	if !ok {
		return 0, &NoContextError{p.SOPClassUID, p.TransferSyntaxUID}
	}
	rsp, err := a.request(ctx, pc.ID, &Command{
		Field:                   CStoreRQ,
		AffectedSOPClassUID:     p.SOPClassUID,
		AffectedSOPInstanceUID:  p.SOPInstanceUID,
		Priority:                p.Priority,
		MoveOriginatorAE:        p.MoveOriginatorAE,
		MoveOriginatorMessageID: p.MoveOriginatorID,
	}, data)
	if err != nil {
		return 0, fmt.Errorf("C-STORE %s: %w", p.SOPInstanceUID, err)
	}
	if rsp.cmd.Field != CStoreRSP {
		a.abort(AbortSourceProvider, AbortUnexpectedParameter, nil)
		return 0, fmt.Errorf("C-STORE %s: answered with command 0x%04X", p.SOPInstanceUID, rsp.cmd.Field)
	}
	return rsp.cmd.Status, nil
}

// Echo sends a C-ECHO and returns the peer's status.
func (a *Association) Echo(ctx context.Context) (Status, error) {
	pc, ok := a.ContextFor(VerificationSOPClass, "")
	if !ok {
		return 0, &NoContextError{VerificationSOPClass, "any"}
	}
	rsp, err := a.request(ctx, pc.ID, &Command{Field: CEchoRQ, AffectedSOPClassUID: VerificationSOPClass}, nil)
	if err != nil {
		return 0, fmt.Errorf("C-ECHO: %w", err)
	}
	return rsp.cmd.Status, nil
}

// VerificationProposal proposes the Verification SOP class (C-ECHO) in
// both uncompressed little-endian syntaxes.
func VerificationProposal() Proposal {
	return Proposal{AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{ExplicitVRLittleEndian, ImplicitVRLittleEndian}}
}

// Echo opens an association to addr proposing Verification only, sends one
// C-ECHO and releases the association. It returns the peer's status and the
// time from dialling to the answer.
func Echo(ctx context.Context, addr string, p DialParams) (status Status, rtt time.Duration, err error) {
	p.Proposals = []Proposal{VerificationProposal()}
	start := time.Now()
	a, err := Dial(ctx, addr, p)
	if err != nil {
		return 0, 0, err
	}
	defer a.Release(ctx)
	status, err = a.Echo(ctx)
	return status, time.Since(start), err
}
