package dimse

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// PDU types (PS3.8 9.3).
const (
	pduAssociateRQ byte = 0x01
	pduAssociateAC byte = 0x02
	pduAssociateRJ byte = 0x03
	pduDataTF      byte = 0x04
	pduReleaseRQ   byte = 0x05
	pduReleaseRP   byte = 0x06
	pduAbort       byte = 0x07
)

// Item types inside A-ASSOCIATE-RQ/AC (PS3.8 9.3.2, 9.3.3) and user
// information sub-items (PS3.8 D.1, PS3.7 D.3.3).
const (
	itemApplicationContext byte = 0x10
	itemPresentationRQ     byte = 0x20
	itemPresentationAC     byte = 0x21
	itemAbstractSyntax     byte = 0x30
	itemTransferSyntax     byte = 0x40
	itemUserInfo           byte = 0x50
	subMaxLength           byte = 0x51
	subImplementationUID   byte = 0x52
	subAsyncOps            byte = 0x53
	subRoleSelection       byte = 0x54
	subImplementationName  byte = 0x55
	subUserIdentityRQ      byte = 0x58
	subUserIdentityAC      byte = 0x59
)

// Presentation context results (PS3.8 Table 9-18).
const (
	ResultAcceptance                = 0
	ResultUserRejection             = 1
	ResultNoReason                  = 2
	ResultAbstractSyntaxUnsupported = 3
	ResultTransferSyntaxUnsupported = 4
)

// Limits that keep a peer's declared lengths from deciding our allocations.
const (
	// maxAssociatePDU bounds A-ASSOCIATE-RQ/AC. It is read before the caller
	// is known, so it is what real requests need, no more: 128 presentation
	// contexts with 13 transfer syntaxes each and a 4 KiB User Identity token
	// take 50 KiB (TestLargestRealRequestFits).
	maxAssociatePDU = 64 << 10
	// DefaultMaxPDU is the P-DATA-TF length we advertise unless configured.
	// PDVs are streamed, not buffered whole, so this costs no memory.
	DefaultMaxPDU = 256 << 10
	// unlimitedSendPDU is the PDU we send when the peer says 0 (no limit).
	unlimitedSendPDU = 256 << 10
)

// ProtocolError is a violation of PS3.8 by the peer; it becomes an A-ABORT
// with source 2 (service provider) and Reason.
type ProtocolError struct {
	Reason AbortReason
	Msg    string
}

func (e *ProtocolError) Error() string { return "protocol error: " + e.Msg }

func protoErr(reason AbortReason, format string, args ...any) error {
	return &ProtocolError{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// AbortSource and AbortReason are the A-ABORT fields (PS3.8 Table 9-26).
type (
	AbortSource byte
	AbortReason byte
)

const (
	AbortSourceUser     AbortSource = 0
	AbortSourceProvider AbortSource = 2

	AbortNotSpecified          AbortReason = 0
	AbortUnrecognizedPDU       AbortReason = 1
	AbortUnexpectedPDU         AbortReason = 2
	AbortUnrecognizedParameter AbortReason = 4
	AbortUnexpectedParameter   AbortReason = 5
	AbortInvalidParameterValue AbortReason = 6
)

// AbortError reports an A-ABORT received from the peer or sent by us.
type AbortError struct {
	Source AbortSource
	Reason AbortReason
	Local  bool // we sent it
	Cause  error
}

func (e *AbortError) Error() string {
	who := "peer aborted"
	if e.Local {
		who = "aborted"
	}
	s := fmt.Sprintf("%s association (source %d, reason %d)", who, e.Source, e.Reason)
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

func (e *AbortError) Unwrap() error { return e.Cause }

// Rejection is an A-ASSOCIATE-RJ (PS3.8 Table 9-21).
type Rejection struct {
	Result byte // 1 permanent, 2 transient
	Source byte // 1 service user, 2 provider (ACSE), 3 provider (presentation)
	Reason byte
}

// Common rejections.
var (
	RejectNoReason            = &Rejection{Result: 1, Source: 1, Reason: 1}
	RejectAppContext          = &Rejection{Result: 1, Source: 1, Reason: 2}
	RejectCallingAE           = &Rejection{Result: 1, Source: 1, Reason: 3}
	RejectCalledAE            = &Rejection{Result: 1, Source: 1, Reason: 7}
	RejectProtocolVersion     = &Rejection{Result: 1, Source: 2, Reason: 2}
	RejectTemporaryCongestion = &Rejection{Result: 2, Source: 3, Reason: 1}
	RejectLocalLimit          = &Rejection{Result: 2, Source: 3, Reason: 2}
)

func (r *Rejection) Error() string {
	kind := "permanently"
	if r.Result == 2 {
		kind = "transiently"
	}
	var why string
	switch {
	case r.Source == 1 && r.Reason == 2:
		why = "application context name not supported"
	case r.Source == 1 && r.Reason == 3:
		why = "calling AE title not recognized"
	case r.Source == 1 && r.Reason == 7:
		why = "called AE title not recognized"
	case r.Source == 2 && r.Reason == 2:
		why = "protocol version not supported"
	case r.Source == 3 && r.Reason == 1:
		why = "temporary congestion"
	case r.Source == 3 && r.Reason == 2:
		why = "local limit exceeded"
	default:
		why = fmt.Sprintf("source %d reason %d", r.Source, r.Reason)
	}
	return fmt.Sprintf("association rejected %s: %s", kind, why)
}

// PresentationContext is one proposed (RQ) or answered (AC) context.
type PresentationContext struct {
	ID               byte
	AbstractSyntax   string   // RQ; on an AC, filled in from the request
	TransferSyntaxes []string // RQ: proposed, in preference order
	Result           byte     // AC
	TransferSyntax   string   // AC: the one accepted
}

// RoleSelection is an SCP/SCU role selection sub-item (PS3.7 D.3.3.4).
type RoleSelection struct {
	SOPClass string
	SCU, SCP bool
}

// UserIdentity is the User Identity negotiation request (PS3.7 D.3.3.7).
type UserIdentity struct {
	Type                      byte // 1 username, 2 username+passcode, 3 Kerberos, 4 SAML, 5 JWT
	PositiveResponseRequested bool
	Primary, Secondary        []byte
}

// UserInfo is the user information item.
type UserInfo struct {
	MaxPDULength              uint32 // 0 means unlimited
	ImplementationClassUID    string
	ImplementationVersionName string
	AsyncOpsInvoked           uint16 // both 0: not negotiated
	AsyncOpsPerformed         uint16
	Roles                     []RoleSelection
	UserIdentity              *UserIdentity // RQ
	UserIdentityResponse      []byte        // AC; non-nil when present
}

// Associate is an A-ASSOCIATE-RQ or -AC PDU; they share their layout.
type Associate struct {
	ProtocolVersion    uint16
	CalledAE           string
	CallingAE          string
	ApplicationContext string
	Contexts           []PresentationContext
	UserInfo           UserInfo
}

// pduWriter builds a PDU in one buffer, so it goes out in one write.
type pduWriter struct{ b []byte }

func (w *pduWriter) u8(v byte)      { w.b = append(w.b, v) }
func (w *pduWriter) u16(v uint16)   { w.b = binary.BigEndian.AppendUint16(w.b, v) }
func (w *pduWriter) u32(v uint32)   { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *pduWriter) bytes(p []byte) { w.b = append(w.b, p...) }

// begin starts an item with a 16-bit length; end patches the length.
func (w *pduWriter) begin(typ byte) int {
	w.u8(typ)
	w.u8(0)
	w.u16(0)
	return len(w.b)
}

func (w *pduWriter) end(start int) {
	binary.BigEndian.PutUint16(w.b[start-2:], uint16(len(w.b)-start))
}

func (w *pduWriter) item(typ byte, value string) {
	s := w.begin(typ)
	w.b = append(w.b, value...)
	w.end(s)
}

func aeField(ae string) []byte {
	b := []byte("                ")
	copy(b, ae)
	return b
}

func encodeAssociate(typ byte, a *Associate) []byte {
	w := &pduWriter{b: make([]byte, 0, 512)}
	w.u8(typ)
	w.u8(0)
	w.u32(0) // patched below
	v := a.ProtocolVersion
	if v == 0 {
		v = 1
	}
	w.u16(v)
	w.u16(0)
	w.bytes(aeField(a.CalledAE))
	w.bytes(aeField(a.CallingAE))
	w.bytes(make([]byte, 32))
	ctx := a.ApplicationContext
	if ctx == "" {
		ctx = ApplicationContext
	}
	w.item(itemApplicationContext, ctx)
	for _, pc := range a.Contexts {
		if typ == pduAssociateRQ {
			s := w.begin(itemPresentationRQ)
			w.bytes([]byte{pc.ID, 0, 0, 0})
			w.item(itemAbstractSyntax, pc.AbstractSyntax)
			for _, ts := range pc.TransferSyntaxes {
				w.item(itemTransferSyntax, ts)
			}
			w.end(s)
			continue
		}
		s := w.begin(itemPresentationAC)
		w.bytes([]byte{pc.ID, 0, pc.Result, 0})
		ts := pc.TransferSyntax
		if pc.Result != ResultAcceptance && ts == "" {
			ts = ImplicitVRLittleEndian // a value is required even when rejected
		}
		w.item(itemTransferSyntax, ts)
		w.end(s)
	}
	u := &a.UserInfo
	s := w.begin(itemUserInfo)
	ml := w.begin(subMaxLength)
	w.u32(u.MaxPDULength)
	w.end(ml)
	w.item(subImplementationUID, u.ImplementationClassUID)
	if u.AsyncOpsInvoked != 0 || u.AsyncOpsPerformed != 0 {
		as := w.begin(subAsyncOps)
		w.u16(u.AsyncOpsInvoked)
		w.u16(u.AsyncOpsPerformed)
		w.end(as)
	}
	for _, r := range u.Roles {
		rs := w.begin(subRoleSelection)
		w.u16(uint16(len(r.SOPClass)))
		w.bytes([]byte(r.SOPClass))
		w.u8(b2u(r.SCU))
		w.u8(b2u(r.SCP))
		w.end(rs)
	}
	if u.ImplementationVersionName != "" {
		w.item(subImplementationName, u.ImplementationVersionName)
	}
	if typ == pduAssociateRQ && u.UserIdentity != nil {
		id := u.UserIdentity
		us := w.begin(subUserIdentityRQ)
		w.u8(id.Type)
		w.u8(b2u(id.PositiveResponseRequested))
		w.u16(uint16(len(id.Primary)))
		w.bytes(id.Primary)
		w.u16(uint16(len(id.Secondary)))
		w.bytes(id.Secondary)
		w.end(us)
	}
	if typ == pduAssociateAC && u.UserIdentityResponse != nil {
		us := w.begin(subUserIdentityAC)
		w.u16(uint16(len(u.UserIdentityResponse)))
		w.bytes(u.UserIdentityResponse)
		w.end(us)
	}
	w.end(s)
	binary.BigEndian.PutUint32(w.b[2:], uint32(len(w.b)-6))
	return w.b
}

func b2u(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// itemReader walks type-length-value items in an A-ASSOCIATE body.
type itemReader struct{ b []byte }

func (r *itemReader) next() (typ byte, value []byte, err error) {
	if len(r.b) < 4 {
		return 0, nil, protoErr(AbortInvalidParameterValue, "truncated item header")
	}
	typ = r.b[0]
	n := int(binary.BigEndian.Uint16(r.b[2:4]))
	if len(r.b)-4 < n {
		return 0, nil, protoErr(AbortInvalidParameterValue, "item 0x%02X length %d exceeds PDU", typ, n)
	}
	value = r.b[4 : 4+n]
	r.b = r.b[4+n:]
	return typ, value, nil
}

func trimAE(b []byte) string { return strings.Trim(string(b), " \x00") }

func trimUID(b []byte) string { return strings.TrimRight(string(b), " \x00") }

// decodeAssociate parses the body (after the 6-byte PDU header) of an
// A-ASSOCIATE-RQ or -AC.
func decodeAssociate(typ byte, body []byte) (*Associate, error) {
	if len(body) < 68 {
		return nil, protoErr(AbortInvalidParameterValue, "A-ASSOCIATE PDU of %d bytes, want at least 68", len(body))
	}
	a := &Associate{
		ProtocolVersion: binary.BigEndian.Uint16(body[0:2]),
		CalledAE:        trimAE(body[4:20]),
		CallingAE:       trimAE(body[20:36]),
	}
	r := itemReader{b: body[68:]}
	for len(r.b) > 0 {
		it, v, err := r.next()
		if err != nil {
			return nil, err
		}
		switch it {
		case itemApplicationContext:
			a.ApplicationContext = trimUID(v)
		case itemPresentationRQ, itemPresentationAC:
			want := itemPresentationRQ
			if typ == pduAssociateAC {
				want = itemPresentationAC
			}
			if it != want {
				return nil, protoErr(AbortUnexpectedParameter, "presentation context item 0x%02X in PDU 0x%02X", it, typ)
			}
			if len(a.Contexts) >= 256 {
				return nil, protoErr(AbortInvalidParameterValue, "more than 256 presentation contexts")
			}
			pc, err := decodePresentationContext(it, v)
			if err != nil {
				return nil, err
			}
			a.Contexts = append(a.Contexts, pc)
		case itemUserInfo:
			if err := decodeUserInfo(&a.UserInfo, v); err != nil {
				return nil, err
			}
		default:
			// PS3.8 9.3.1: unknown items are ignored.
		}
	}
	if a.ApplicationContext == "" {
		return nil, protoErr(AbortInvalidParameterValue, "no application context item")
	}
	return a, nil
}

func decodePresentationContext(it byte, v []byte) (PresentationContext, error) {
	var pc PresentationContext
	if len(v) < 4 {
		return pc, protoErr(AbortInvalidParameterValue, "presentation context item of %d bytes", len(v))
	}
	pc.ID = v[0]
	pc.Result = v[2]
	r := itemReader{b: v[4:]}
	for len(r.b) > 0 {
		st, sv, err := r.next()
		if err != nil {
			return pc, err
		}
		switch st {
		case itemAbstractSyntax:
			pc.AbstractSyntax = trimUID(sv)
		case itemTransferSyntax:
			ts := trimUID(sv)
			if it == itemPresentationAC {
				pc.TransferSyntax = ts
			} else if len(pc.TransferSyntaxes) < 64 {
				pc.TransferSyntaxes = append(pc.TransferSyntaxes, ts)
			}
		}
	}
	if it == itemPresentationRQ {
		pc.Result = 0
		if pc.AbstractSyntax == "" || len(pc.TransferSyntaxes) == 0 {
			return pc, protoErr(AbortInvalidParameterValue, "presentation context %d without abstract or transfer syntax", pc.ID)
		}
	}
	return pc, nil
}

func decodeUserInfo(u *UserInfo, v []byte) error {
	r := itemReader{b: v}
	for len(r.b) > 0 {
		st, sv, err := r.next()
		if err != nil {
			return err
		}
		switch st {
		case subMaxLength:
			if len(sv) != 4 {
				return protoErr(AbortInvalidParameterValue, "max length sub-item of %d bytes", len(sv))
			}
			u.MaxPDULength = binary.BigEndian.Uint32(sv)
		case subImplementationUID:
			u.ImplementationClassUID = trimUID(sv)
		case subImplementationName:
			u.ImplementationVersionName = trimAE(sv)
		case subAsyncOps:
			if len(sv) != 4 {
				return protoErr(AbortInvalidParameterValue, "asynchronous operations sub-item of %d bytes", len(sv))
			}
			u.AsyncOpsInvoked = binary.BigEndian.Uint16(sv[0:2])
			u.AsyncOpsPerformed = binary.BigEndian.Uint16(sv[2:4])
		case subRoleSelection:
			if len(sv) < 2 {
				return protoErr(AbortInvalidParameterValue, "role selection sub-item of %d bytes", len(sv))
			}
			n := int(binary.BigEndian.Uint16(sv[0:2]))
			if len(sv) != 2+n+2 {
				return protoErr(AbortInvalidParameterValue, "role selection sub-item length mismatch")
			}
			if len(u.Roles) < 256 {
				u.Roles = append(u.Roles, RoleSelection{
					SOPClass: trimUID(sv[2 : 2+n]),
					SCU:      sv[2+n] == 1,
					SCP:      sv[3+n] == 1,
				})
			}
		case subUserIdentityRQ:
			id, err := decodeUserIdentity(sv)
			if err != nil {
				return err
			}
			u.UserIdentity = id
		case subUserIdentityAC:
			if len(sv) < 2 || len(sv) != 2+int(binary.BigEndian.Uint16(sv[0:2])) {
				return protoErr(AbortInvalidParameterValue, "user identity response sub-item length mismatch")
			}
			u.UserIdentityResponse = append([]byte{}, sv[2:]...)
		default:
			// Extended negotiation and unknown sub-items: ignored (we offer none).
		}
	}
	return nil
}

func decodeUserIdentity(sv []byte) (*UserIdentity, error) {
	bad := protoErr(AbortInvalidParameterValue, "user identity sub-item length mismatch")
	if len(sv) < 4 {
		return nil, bad
	}
	id := &UserIdentity{Type: sv[0], PositiveResponseRequested: sv[1] == 1}
	n := int(binary.BigEndian.Uint16(sv[2:4]))
	if len(sv) < 4+n+2 {
		return nil, bad
	}
	id.Primary = append([]byte{}, sv[4:4+n]...)
	rest := sv[4+n:]
	m := int(binary.BigEndian.Uint16(rest[0:2]))
	if len(rest) != 2+m {
		return nil, bad
	}
	id.Secondary = append([]byte{}, rest[2:]...)
	return id, nil
}

func encodeReject(r *Rejection) []byte {
	return []byte{pduAssociateRJ, 0, 0, 0, 0, 4, 0, r.Result, r.Source, r.Reason}
}

func decodeReject(body []byte) *Rejection {
	return &Rejection{Result: body[1], Source: body[2], Reason: body[3]}
}

func encodeAbort(src AbortSource, reason AbortReason) []byte {
	return []byte{pduAbort, 0, 0, 0, 0, 4, 0, 0, byte(src), byte(reason)}
}

func encodeRelease(typ byte) []byte {
	return []byte{typ, 0, 0, 0, 0, 4, 0, 0, 0, 0}
}

// pdvHeader is the header of one presentation data value item.
type pdvHeader struct {
	contextID byte
	command   bool
	last      bool
	length    uint32 // of the data, after the 2 header bytes
}

// pduReader reads PDUs from a connection. Short PDUs are returned whole,
// bounded by limits of ours; P-DATA-TF bodies are never buffered: the caller
// walks their PDVs with nextPDV and streams each one's data with readData.
// Nothing is ever allocated from a length the peer declares.
type pduReader struct {
	r *bufio.Reader
	// onHeader, when set, runs once a PDU header is read, before its body:
	// the association arms the deadline the whole body must arrive within.
	onHeader func()

	maxData  uint32 // largest P-DATA-TF body we accept; 0 = unlimited
	hdr      [6]byte
	buf      bytes.Buffer
	pduLeft  uint64 // bytes left in the current P-DATA-TF
	dataLeft uint32 // bytes left in the current PDV
}

func newPDUReader(r io.Reader, maxData uint32) *pduReader {
	return &pduReader{r: bufio.NewReaderSize(r, 64<<10), maxData: maxData}
}

// errTruncated marks a connection that ended inside a PDU.
var errTruncated = errors.New("connection closed inside a PDU")

func truncated(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errTruncated
	}
	return err
}

// next reads the next PDU header and, except for P-DATA-TF, its body. The
// body aliases an internal buffer valid until the next call.
func (p *pduReader) next() (typ byte, body []byte, err error) {
	if p.pduLeft != 0 || p.dataLeft != 0 {
		return 0, nil, errors.New("dimse: next PDU requested inside a P-DATA-TF")
	}
	if _, err := io.ReadFull(p.r, p.hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = errTruncated
		}
		return 0, nil, err
	}
	typ = p.hdr[0]
	n := binary.BigEndian.Uint32(p.hdr[2:6])
	if p.onHeader != nil {
		p.onHeader()
	}
	switch typ {
	case pduDataTF:
		if p.maxData != 0 && n > p.maxData {
			return typ, nil, protoErr(AbortInvalidParameterValue, "P-DATA-TF of %d bytes exceeds the negotiated maximum %d", n, p.maxData)
		}
		if n == 0 {
			return typ, nil, protoErr(AbortInvalidParameterValue, "empty P-DATA-TF")
		}
		p.pduLeft = uint64(n)
		return typ, nil, nil
	case pduAssociateRQ, pduAssociateAC:
		if n > maxAssociatePDU {
			return typ, nil, protoErr(AbortInvalidParameterValue, "A-ASSOCIATE PDU of %d bytes exceeds limit %d", n, maxAssociatePDU)
		}
	case pduAssociateRJ, pduReleaseRQ, pduReleaseRP, pduAbort:
		if n != 4 {
			return typ, nil, protoErr(AbortInvalidParameterValue, "PDU 0x%02X with length %d, want 4", typ, n)
		}
	default:
		return typ, nil, protoErr(AbortUnrecognizedPDU, "unrecognized PDU type 0x%02X", typ)
	}
	p.buf.Reset()
	// CopyN grows the buffer with the bytes that arrive, not with n.
	if _, err := io.CopyN(&p.buf, p.r, int64(n)); err != nil {
		return typ, nil, truncated(err)
	}
	return typ, p.buf.Bytes(), nil
}

// inPData reports whether PDVs of the current P-DATA-TF remain.
func (p *pduReader) inPData() bool { return p.pduLeft > 0 }

// nextPDV reads the next PDV header of the current P-DATA-TF.
func (p *pduReader) nextPDV() (pdvHeader, error) {
	var h pdvHeader
	if p.dataLeft != 0 {
		return h, errors.New("dimse: PDV data left unread")
	}
	if p.pduLeft < 6 {
		return h, protoErr(AbortInvalidParameterValue, "P-DATA-TF ends inside a PDV header")
	}
	var b [6]byte
	if _, err := io.ReadFull(p.r, b[:]); err != nil {
		return h, truncated(err)
	}
	n := binary.BigEndian.Uint32(b[0:4])
	if n < 2 || uint64(n) > p.pduLeft-4 {
		return h, protoErr(AbortInvalidParameterValue, "PDV length %d does not fit its P-DATA-TF (%d bytes left)", n, p.pduLeft-4)
	}
	p.pduLeft -= 4 + uint64(n)
	h = pdvHeader{contextID: b[4], command: b[5]&1 != 0, last: b[5]&2 != 0, length: n - 2}
	p.dataLeft = h.length
	return h, nil
}

// readData reads PDV data into buf, at most what is left of the PDV; it
// returns 0, nil when the PDV is exhausted.
func (p *pduReader) readData(buf []byte) (int, error) {
	if p.dataLeft == 0 {
		return 0, nil
	}
	if uint32(len(buf)) > p.dataLeft {
		buf = buf[:p.dataLeft]
	}
	n, err := io.ReadFull(p.r, buf)
	p.dataLeft -= uint32(n)
	if err != nil {
		return n, truncated(err)
	}
	return n, nil
}

// errBudget says that an A-ASSOCIATE-RQ could not be read within the bytes
// the server lets connections not yet associated hold.
var errBudget = errors.New("too many association requests being read at once")

// readAssociateRQ reads a connection's first PDU, which must be an
// A-ASSOCIATE-RQ of at most maxAssociatePDU bytes, unbuffered so that
// nothing past it is read. Its buffer grows with the bytes that arrive, and
// every growth is first taken from the caller's budget: a peer that declares
// a length it never sends holds nothing.
func readAssociateRQ(r io.Reader, take func(n int) bool) (typ byte, body []byte, err error) {
	var hdr [6]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = errTruncated
		}
		return 0, nil, err
	}
	typ = hdr[0]
	n := int(binary.BigEndian.Uint32(hdr[2:6]))
	switch {
	case typ == 0 || typ > pduAbort:
		return typ, nil, protoErr(AbortUnrecognizedPDU, "unrecognized PDU type 0x%02X", typ)
	case typ != pduAssociateRQ:
		return typ, nil, protoErr(AbortUnexpectedPDU, "PDU 0x%02X before A-ASSOCIATE-RQ", typ)
	case n > maxAssociatePDU:
		return typ, nil, protoErr(AbortInvalidParameterValue, "A-ASSOCIATE-RQ of %d bytes exceeds limit %d", n, maxAssociatePDU)
	}
	body, err = readGrowing(r, n, take)
	return typ, body, err
}

// readGrowing reads exactly n bytes into a buffer that starts small and
// doubles as bytes arrive, never beyond n.
func readGrowing(r io.Reader, n int, take func(n int) bool) ([]byte, error) {
	var buf []byte
	for len(buf) < n {
		if len(buf) == cap(buf) {
			size := min(max(2*cap(buf), 4096), n)
			if !take(size - cap(buf)) {
				return nil, errBudget
			}
			buf = append(make([]byte, 0, size), buf...)
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil && len(buf) < n {
			return nil, truncated(err)
		}
	}
	return buf, nil
}
