package dimse

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
)

// Storage Commitment Push Model (PS3.4 Annex J): the requester sends an
// N-ACTION listing instances; the SCP answers at once, then later sends an
// N-EVENT-REPORT saying which it holds, on the same association if it is
// still open or on a new one it opens (with SCP/SCU role selection).

// Data set elements of Storage Commitment.
const (
	tagRetrieveAE       uint32 = 0x00080054
	tagRefSOPClass      uint32 = 0x00081150
	tagRefSOPInstance   uint32 = 0x00081155
	tagFailureReason    uint32 = 0x00081197
	tagFailedSOPSeq     uint32 = 0x00081198
	tagReferencedSOPSeq uint32 = 0x00081199
	tagTransactionUID   uint32 = 0x00081195
)

// Event types of the report (PS3.4 J.3.3).
const (
	CommitEventAllSuccess   uint16 = 1
	CommitEventSomeFailures uint16 = 2
)

// Failure reasons (PS3.4 J.3.3).
const (
	FailureProcessing            uint16 = 0x0110
	FailureNoSuchObject          uint16 = 0x0112
	FailureResourceLimitation    uint16 = 0x0213
	FailureReferencedSOPClass    uint16 = 0x0122
	FailureClassInstanceConflict uint16 = 0x0119
	FailureDuplicateTransaction  uint16 = 0x0131
)

// SOPRef references one instance.
type SOPRef struct {
	SOPClassUID    string
	SOPInstanceUID string
	FailureReason  uint16 // in a report's failed list
}

// CommitRequest is the N-ACTION asking for commitment.
type CommitRequest struct {
	TransactionUID string
	Refs           []SOPRef
}

// CommitReport is the N-EVENT-REPORT answering it.
type CommitReport struct {
	TransactionUID string
	RetrieveAE     string
	Committed      []SOPRef
	Failed         []SOPRef
}

func refItems(refs []SOPRef, withReason bool) [][]dsElement {
	items := make([][]dsElement, 0, len(refs))
	for _, r := range refs {
		it := []dsElement{
			{tag: tagRefSOPClass, vr: "UI", value: padded(r.SOPClassUID, 0)},
			{tag: tagRefSOPInstance, vr: "UI", value: padded(r.SOPInstanceUID, 0)},
		}
		if withReason {
			it = append(it, dsElement{tag: tagFailureReason, vr: "US", value: usValue(r.FailureReason)})
		}
		items = append(items, it)
	}
	return items
}

func parseRefs(e *dsElement) ([]SOPRef, error) {
	if e == nil {
		return nil, nil
	}
	if e.items == nil {
		return nil, fmt.Errorf("(%04X,%04X) is not a sequence", e.tag>>16, e.tag&0xFFFF)
	}
	refs := make([]SOPRef, 0, len(e.items))
	for _, it := range e.items {
		var r SOPRef
		if c := findElement(it, tagRefSOPClass); c != nil {
			r.SOPClassUID = trimUID(c.value)
		}
		if c := findElement(it, tagRefSOPInstance); c != nil {
			r.SOPInstanceUID = trimUID(c.value)
		}
		if c := findElement(it, tagFailureReason); c != nil && len(c.value) == 2 {
			r.FailureReason = binary.LittleEndian.Uint16(c.value)
		}
		if r.SOPInstanceUID == "" {
			return nil, errors.New("referenced SOP item without an instance UID")
		}
		refs = append(refs, r)
	}
	return refs, nil
}

func commitSyntax(a *Association) (*PresentationContext, bool, error) {
	pc, ok := a.ContextFor(StorageCommitmentSOPClass, "")
	if !ok {
		return nil, false, &NoContextError{StorageCommitmentSOPClass, "any"}
	}
	explicit, err := explicitLE(pc.TransferSyntax)
	return pc, explicit, err
}

// RequestCommit sends the N-ACTION asking the peer to commit refs and
// returns its immediate status; the outcome arrives later as a report, to
// Handlers.CommitReport.
func (a *Association) RequestCommit(ctx context.Context, req *CommitRequest) (Status, error) {
	pc, explicit, err := commitSyntax(a)
	if err != nil {
		return 0, err
	}
	ds := encodeDataSet([]dsElement{
		{tag: tagTransactionUID, vr: "UI", value: padded(req.TransactionUID, 0)},
		{tag: tagReferencedSOPSeq, vr: "SQ", items: refItems(req.Refs, false)},
	}, explicit)
	rsp, err := a.request(ctx, pc.ID, &Command{
		Field:                   NActionRQ,
		RequestedSOPClassUID:    StorageCommitmentSOPClass,
		RequestedSOPInstanceUID: StorageCommitmentSOPInstance,
		ActionTypeID:            1,
	}, bytes.NewReader(ds))
	if err != nil {
		return 0, fmt.Errorf("storage commitment N-ACTION: %w", err)
	}
	return rsp.cmd.Status, nil
}

// SendCommitReport sends the N-EVENT-REPORT with the outcome of a
// commitment request. Call it from outside the association's handlers.
func (a *Association) SendCommitReport(ctx context.Context, rep *CommitReport) (Status, error) {
	pc, explicit, err := commitSyntax(a)
	if err != nil {
		return 0, err
	}
	els := []dsElement{}
	if rep.RetrieveAE != "" {
		els = append(els, dsElement{tag: tagRetrieveAE, vr: "AE", value: padded(rep.RetrieveAE, ' ')})
	}
	els = append(els, dsElement{tag: tagTransactionUID, vr: "UI", value: padded(rep.TransactionUID, 0)})
	event := CommitEventAllSuccess
	if len(rep.Failed) > 0 {
		event = CommitEventSomeFailures
		els = append(els, dsElement{tag: tagFailedSOPSeq, vr: "SQ", items: refItems(rep.Failed, true)})
	}
	if len(rep.Committed) > 0 {
		els = append(els, dsElement{tag: tagReferencedSOPSeq, vr: "SQ", items: refItems(rep.Committed, false)})
	}
	rsp, err := a.request(ctx, pc.ID, &Command{
		Field:                  NEventReportRQ,
		AffectedSOPClassUID:    StorageCommitmentSOPClass,
		AffectedSOPInstanceUID: StorageCommitmentSOPInstance,
		EventTypeID:            event,
	}, bytes.NewReader(encodeDataSet(els, explicit)))
	if err != nil {
		return 0, fmt.Errorf("storage commitment N-EVENT-REPORT: %w", err)
	}
	return rsp.cmd.Status, nil
}

// smallDataSet returns a buffered request data set decoded in the
// context's transfer syntax, or the status to answer.
func smallDataSet(pc *PresentationContext, sink dataSink) ([]dsElement, Status) {
	bs, ok := sink.(*bufferSink)
	if !ok || bs.overflow {
		return nil, StatusProcessingFailure
	}
	explicit, err := explicitLE(pc.TransferSyntax)
	if err != nil {
		return nil, StatusProcessingFailure
	}
	els, err := decodeDataSet(bs.buf.Bytes(), explicit)
	if err != nil {
		return nil, StatusInvalidArgumentValue
	}
	return els, StatusSuccess
}

func (a *Association) handleCommitRequest(pc *PresentationContext, cmd *Command, sink dataSink) Status {
	if cmd.RequestedSOPClassUID != StorageCommitmentSOPClass {
		return StatusNoSuchSOPClass
	}
	if cmd.ActionTypeID != 1 {
		return StatusNoSuchActionType
	}
	if a.handlers.Commit == nil {
		return StatusUnrecognizedOperation
	}
	els, status := smallDataSet(pc, sink)
	if status != StatusSuccess {
		return status
	}
	req := &CommitRequest{}
	if e := findElement(els, tagTransactionUID); e != nil {
		req.TransactionUID = trimUID(e.value)
	}
	refs, err := parseRefs(findElement(els, tagReferencedSOPSeq))
	if err != nil || req.TransactionUID == "" || len(refs) == 0 {
		a.log.Warn("storage commitment request unreadable", "err", err)
		return StatusInvalidArgumentValue
	}
	req.Refs = refs
	return a.handlers.Commit(a.ctx, a, req)
}

func (a *Association) handleCommitReport(pc *PresentationContext, cmd *Command, sink dataSink) Status {
	if cmd.AffectedSOPClassUID != StorageCommitmentSOPClass {
		return StatusNoSuchSOPClass
	}
	if a.handlers.CommitReport == nil {
		return StatusUnrecognizedOperation
	}
	els, status := smallDataSet(pc, sink)
	if status != StatusSuccess {
		return status
	}
	rep := &CommitReport{}
	if e := findElement(els, tagTransactionUID); e != nil {
		rep.TransactionUID = trimUID(e.value)
	}
	if e := findElement(els, tagRetrieveAE); e != nil {
		rep.RetrieveAE = trimAE(e.value)
	}
	var err1, err2 error
	rep.Committed, err1 = parseRefs(findElement(els, tagReferencedSOPSeq))
	rep.Failed, err2 = parseRefs(findElement(els, tagFailedSOPSeq))
	if err := errors.Join(err1, err2); err != nil || rep.TransactionUID == "" {
		a.log.Warn("storage commitment report unreadable", "err", err)
		return StatusInvalidArgumentValue
	}
	return a.handlers.CommitReport(a.ctx, a, rep)
}
