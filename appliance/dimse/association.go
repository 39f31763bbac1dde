package dimse

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// Config holds the limits and timers of an association. Zero values take
// the defaults given.
type Config struct {
	// MaxPDULength is the largest P-DATA-TF we accept, advertised to the
	// peer. 0 takes DefaultMaxPDU; Unlimited advertises 0 (no limit).
	MaxPDULength uint32
	Unlimited    bool
	// ARTIM bounds association set-up and release (PS3.8 9.1.5): from the
	// first byte, the A-ASSOCIATE-RQ (or AC) must be complete within it. 30 s.
	ARTIM time.Duration
	// ReadTimeout bounds each PDU: from its header, the whole PDU must
	// arrive within it (not re-armed per read), and inside a message the
	// next PDU must start within it. 60 s.
	ReadTimeout time.Duration
	// IdleTimeout is the silence allowed between messages. 5 min.
	IdleTimeout time.Duration
	// FirstCommandTimeout is the silence allowed, on an association we
	// accepted, before the peer's first command: an association that is
	// opened and never used holds a slot for less long. 60 s (at most
	// IdleTimeout).
	FirstCommandTimeout time.Duration
	// WriteTimeout bounds each PDU write. 60 s.
	WriteTimeout time.Duration
	// ResponseTimeout bounds the wait for a DIMSE response once a request is
	// sent (the peer may be syncing a large instance to disk). 10 min.
	ResponseTimeout time.Duration
	// Logger receives association-level logs; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ARTIM, 30*time.Second)
	def(&c.ReadTimeout, 60*time.Second)
	def(&c.IdleTimeout, 5*time.Minute)
	def(&c.FirstCommandTimeout, 60*time.Second)
	c.FirstCommandTimeout = min(c.FirstCommandTimeout, c.IdleTimeout)
	def(&c.WriteTimeout, 60*time.Second)
	def(&c.ResponseTimeout, 10*time.Minute)
	if c.MaxPDULength == 0 {
		c.MaxPDULength = DefaultMaxPDU
	}
	if c.Unlimited {
		c.MaxPDULength = 0
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Handlers answer the requests a peer sends on an association. A nil field
// means the service is not offered: the request gets a failure status.
type Handlers struct {
	// Echo answers a C-ECHO; nil answers Success.
	Echo func(ctx context.Context, a *Association) Status
	// Store is called when a C-STORE command has arrived, before its data
	// set; the data set is then streamed into the returned sink.
	Store func(ctx context.Context, a *Association, req *StoreRequest) StoreSink
	// Commit answers a Storage Commitment N-ACTION (we are the commitment
	// SCP). The report is sent later with (*Association).SendCommitReport,
	// from another goroutine, on this association or on a new one.
	Commit func(ctx context.Context, a *Association, req *CommitRequest) Status
	// CommitReport answers a Storage Commitment N-EVENT-REPORT (we asked for
	// commitment).
	CommitReport func(ctx context.Context, a *Association, rep *CommitReport) Status
}

// Association is an established DICOM association, in either role.
type Association struct {
	conn      net.Conn
	requestor bool
	rq, ac    *Associate
	cfg       Config
	handlers  Handlers
	log       *slog.Logger

	dc        *deadlineConn
	pr        *pduReader
	commanded bool // a command arrived; read loop only

	contexts map[byte]*PresentationContext // accepted ones
	sendMax  int                           // PDV data bytes per P-DATA-TF we send

	ctx    context.Context // ends with the association
	cancel context.CancelFunc

	wmu   sync.Mutex // one message or PDU on the wire at a time
	wbuf  []byte     // PDU buffers, used under wmu
	wbuf2 []byte

	opMu sync.Mutex // one outstanding request (no asynchronous operations)

	mu        sync.Mutex
	nextID    uint16
	pending   map[uint16]chan response
	releasing bool  // we sent A-RELEASE-RQ
	err       error // why the association ended; nil for a clean release
	done      chan struct{}
}

type response struct {
	cmd  *Command
	data []byte
}

// ErrReleased is returned for operations on an association that was released.
var ErrReleased = errors.New("association released")

func newAssociation(conn net.Conn, requestor bool, rq, ac *Associate, cfg Config, h Handlers) *Association {
	a := &Association{
		conn:      conn,
		requestor: requestor,
		rq:        rq,
		ac:        ac,
		cfg:       cfg,
		handlers:  h,
		contexts:  make(map[byte]*PresentationContext),
		pending:   make(map[uint16]chan response),
		done:      make(chan struct{}),
	}
	a.log = cfg.Logger.With("calling", rq.CallingAE, "called", rq.CalledAE, "remote", conn.RemoteAddr().String())
	a.ctx, a.cancel = context.WithCancel(context.Background())
	proposed := make(map[byte]string, len(rq.Contexts))
	for _, pc := range rq.Contexts {
		proposed[pc.ID] = pc.AbstractSyntax
	}
	for i := range ac.Contexts {
		pc := ac.Contexts[i]
		if pc.Result != ResultAcceptance {
			continue
		}
		pc.AbstractSyntax = proposed[pc.ID]
		a.contexts[pc.ID] = &pc
	}
	// The peer's max is what we may send: PDV data is max − 6 bytes (PS3.8 9.3.5).
	peerMax := ac.UserInfo.MaxPDULength
	if !requestor {
		peerMax = rq.UserInfo.MaxPDULength
	}
	if peerMax == 0 || peerMax > unlimitedSendPDU {
		peerMax = unlimitedSendPDU
	}
	a.sendMax = max(int(peerMax)-6, 1)
	return a
}

// CallingAE, CalledAE, RemoteAddr and the negotiation describe the association.
func (a *Association) CallingAE() string        { return a.rq.CallingAE }
func (a *Association) CalledAE() string         { return a.rq.CalledAE }
func (a *Association) RemoteAddr() net.Addr     { return a.conn.RemoteAddr() }
func (a *Association) LocalAddr() net.Addr      { return a.conn.LocalAddr() }
func (a *Association) Requested() *Associate    { return a.rq }
func (a *Association) Accepted() *Associate     { return a.ac }
func (a *Association) Done() <-chan struct{}    { return a.done }
func (a *Association) Context() context.Context { return a.ctx }

// PeerMaxPDU is the largest P-DATA-TF the peer accepts (0: unlimited).
func (a *Association) PeerMaxPDU() uint32 {
	if a.requestor {
		return a.ac.UserInfo.MaxPDULength
	}
	return a.rq.UserInfo.MaxPDULength
}

// Err is why the association ended: nil after a clean release.
func (a *Association) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// ContextFor finds an accepted presentation context for the abstract syntax
// and, when ts is not empty, that transfer syntax.
func (a *Association) ContextFor(abstract, ts string) (*PresentationContext, bool) {
	var best *PresentationContext
	for _, pc := range a.contexts {
		if pc.AbstractSyntax == abstract && (ts == "" || pc.TransferSyntax == ts) {
			if best == nil || pc.ID < best.ID {
				best = pc
			}
		}
	}
	return best, best != nil
}

// finish ends the association once; err nil means released cleanly.
func (a *Association) finish(err error) {
	a.mu.Lock()
	select {
	case <-a.done:
		a.mu.Unlock()
		return
	default:
	}
	a.err = err
	// The pending channels are never closed: dispatch may still send on one
	// from the read loop. Waiters see done instead.
	close(a.done)
	a.mu.Unlock()
	a.cancel()
	a.conn.Close()
}

// endErr is the error to report for an operation on an ended association.
func (a *Association) endErr() error {
	if err := a.Err(); err != nil {
		return err
	}
	return ErrReleased
}

// writePDU sends one PDU in one write, under wmu.
func (a *Association) writePDU(b []byte) error {
	a.conn.SetWriteDeadline(time.Now().Add(a.cfg.WriteTimeout))
	_, err := a.conn.Write(b)
	return err
}

// abort sends A-ABORT and ends the association. Safe from any goroutine.
func (a *Association) abort(src AbortSource, reason AbortReason, cause error) {
	select {
	case <-a.done:
		return
	default:
	}
	// Don't wait for a writer stuck on a dead peer: its deadline frees wmu.
	if a.wmu.TryLock() {
		a.writePDU(encodeAbort(src, reason))
		a.wmu.Unlock()
	}
	a.finish(&AbortError{Source: src, Reason: reason, Local: true, Cause: cause})
}

// Abort sends an A-ABORT (service user) and closes the association.
func (a *Association) Abort() {
	a.abort(AbortSourceUser, AbortNotSpecified, errors.New("aborted by caller"))
}

// Release asks the peer to release the association and waits for its reply.
func (a *Association) Release(ctx context.Context) error {
	a.opMu.Lock()
	defer a.opMu.Unlock()
	a.mu.Lock()
	if a.releasing {
		a.mu.Unlock()
		return errors.New("release already requested")
	}
	a.releasing = true
	a.mu.Unlock()
	a.wmu.Lock()
	err := a.writePDU(encodeRelease(pduReleaseRQ))
	a.wmu.Unlock()
	if err != nil {
		a.finish(fmt.Errorf("send A-RELEASE-RQ: %w", err))
		return a.Err()
	}
	t := time.NewTimer(a.cfg.ARTIM)
	defer t.Stop()
	select {
	case <-a.done:
		return a.Err()
	case <-t.C:
		a.abort(AbortSourceUser, AbortNotSpecified, errors.New("no A-RELEASE-RP within ARTIM"))
		return a.Err()
	case <-ctx.Done():
		a.abort(AbortSourceUser, AbortNotSpecified, ctx.Err())
		return ctx.Err()
	}
}

// Close releases the association, aborting it if release fails.
func (a *Association) Close() error {
	select {
	case <-a.done:
		return nil
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ARTIM)
	defer cancel()
	return a.Release(ctx)
}

// ---- sending ----

// sendMessage sends a command and, when data is not nil, its data set
// streamed from data and fragmented to the peer's maximum PDU.
func (a *Association) sendMessage(pcID byte, cmd *Command, data io.Reader) error {
	cmd.HasDataSet = data != nil
	cb := encodeCommand(cmd)
	a.wmu.Lock()
	defer a.wmu.Unlock()
	select {
	case <-a.done:
		return a.endErr()
	default:
	}
	if err := a.sendFragments(pcID, true, cb); err != nil {
		return a.failSend(err)
	}
	if data == nil {
		return nil
	}
	if err := a.streamDataSet(pcID, data); err != nil {
		return a.failSend(err)
	}
	return nil
}

// failSend aborts after a failed or partial send: the peer holds half a
// message, so the association must never be reused.
func (a *Association) failSend(err error) error {
	a.writePDU(encodeAbort(AbortSourceUser, AbortNotSpecified))
	a.finish(&AbortError{Source: AbortSourceUser, Local: true, Cause: err})
	return err
}

// pdu returns a buffer for one P-DATA-TF with one PDV of n data bytes, whose
// data starts at offset 12.
func pduBuffer(buf *[]byte, n int) []byte {
	if cap(*buf) < 12+n {
		*buf = make([]byte, 12+n)
	}
	return (*buf)[:12+n]
}

func putPDVHeader(b []byte, pcID byte, command, last bool, n int) {
	b[0] = pduDataTF
	b[1] = 0
	binary.BigEndian.PutUint32(b[2:6], uint32(6+n))
	binary.BigEndian.PutUint32(b[6:10], uint32(2+n))
	b[10] = pcID
	var mch byte
	if command {
		mch |= 1
	}
	if last {
		mch |= 2
	}
	b[11] = mch
}

func (a *Association) sendFragments(pcID byte, command bool, p []byte) error {
	for {
		n := min(len(p), a.sendMax)
		b := pduBuffer(&a.wbuf, n)
		copy(b[12:], p[:n])
		p = p[n:]
		putPDVHeader(b, pcID, command, len(p) == 0, n)
		if err := a.writePDU(b); err != nil {
			return err
		}
		if len(p) == 0 {
			return nil
		}
	}
}

// streamDataSet reads one fragment ahead, so the last one can be flagged.
func (a *Association) streamDataSet(pcID byte, r io.Reader) error {
	cur := pduBuffer(&a.wbuf, a.sendMax)
	n, err := io.ReadFull(r, cur[12:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return fmt.Errorf("read data set: %w", err)
	}
	if n == 0 {
		return errors.New("read data set: empty")
	}
	eof := err != nil
	for {
		if eof {
			putPDVHeader(cur, pcID, false, true, n)
			return a.writePDU(cur[:12+n])
		}
		next := pduBuffer(&a.wbuf2, a.sendMax)
		m, err := io.ReadFull(r, next[12:])
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return fmt.Errorf("read data set: %w", err)
		}
		last := m == 0
		putPDVHeader(cur, pcID, false, last, n)
		if err := a.writePDU(cur[:12+n]); err != nil {
			return err
		}
		if last {
			return nil
		}
		a.wbuf, a.wbuf2 = a.wbuf2, a.wbuf
		cur, n, eof = next, m, err != nil
	}
}

// request sends a request and waits for its response.
func (a *Association) request(ctx context.Context, pcID byte, cmd *Command, data io.Reader) (response, error) {
	a.opMu.Lock()
	defer a.opMu.Unlock()
	a.mu.Lock()
	select {
	case <-a.done:
		a.mu.Unlock()
		return response{}, a.endErr()
	default:
	}
	if a.releasing {
		a.mu.Unlock()
		return response{}, errors.New("association is being released")
	}
	a.nextID++
	id := a.nextID
	ch := make(chan response, 1)
	a.pending[id] = ch
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.pending, id)
		a.mu.Unlock()
	}()

	cmd.MessageID = id
	if err := a.sendMessage(pcID, cmd, data); err != nil {
		return response{}, err
	}
	t := time.NewTimer(a.cfg.ResponseTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r, nil
	case <-a.done:
		select {
		case r := <-ch: // answered just before the end
			return r, nil
		default:
		}
		return response{}, a.endErr()
	case <-t.C:
		err := fmt.Errorf("no response to message %d within %v", id, a.cfg.ResponseTimeout)
		a.abort(AbortSourceUser, AbortNotSpecified, err)
		return response{}, err
	case <-ctx.Done():
		// The peer may still answer: the association can't be trusted any more.
		a.abort(AbortSourceUser, AbortNotSpecified, ctx.Err())
		return response{}, ctx.Err()
	}
}

// respond sends a response with no data set.
func (a *Association) respond(pcID byte, rq *Command, field uint16, status Status) {
	rsp := &Command{
		Field:                     field,
		MessageIDBeingRespondedTo: rq.MessageID,
		AffectedSOPClassUID:       rq.SOPClassUID(),
		AffectedSOPInstanceUID:    rq.SOPInstanceUID(),
		Status:                    status,
		EventTypeID:               rq.EventTypeID,
		ActionTypeID:              rq.ActionTypeID,
	}
	if err := a.sendMessage(pcID, rsp, nil); err != nil {
		a.log.Warn("send response", "err", err)
	}
}

// ---- receiving ----

// deadlineConn applies the read deadline its owner arms. Reads never extend
// it, so a timeout bounds a whole PDU, however the peer spreads its bytes (a
// trickle of one byte per read timeout is cut).
type deadlineConn struct {
	net.Conn
	deadline time.Time // armed
	applied  time.Time // set on Conn
}

// arm sets the deadline d from now.
func (c *deadlineConn) arm(d time.Duration) { c.deadline = time.Now().Add(d) }

func (c *deadlineConn) Read(p []byte) (int, error) {
	if !c.deadline.Equal(c.applied) {
		c.Conn.SetReadDeadline(c.deadline)
		c.applied = c.deadline
	}
	return c.Conn.Read(p)
}

// dataSink receives one message's data set fragments.
type dataSink interface {
	write(p []byte) // errors are kept by the sink and reported by its finish
	abort(err error)
}

// bufferSink keeps a small data set (Storage Commitment) in memory, bounded.
type bufferSink struct {
	buf      bytes.Buffer
	overflow bool
}

const maxSmallDataSet = 16 << 20

func (s *bufferSink) write(p []byte) {
	if s.overflow || s.buf.Len()+len(p) > maxSmallDataSet {
		s.overflow = true
		return
	}
	s.buf.Write(p)
}

func (s *bufferSink) abort(error) {}

// storeSinkAdapter feeds a caller's StoreSink, stopping at its first error.
type storeSinkAdapter struct {
	sink   StoreSink
	failed bool
}

func (s *storeSinkAdapter) write(p []byte) {
	if s.failed {
		return
	}
	if _, err := s.sink.Write(p); err != nil {
		s.failed = true
	}
}

func (s *storeSinkAdapter) abort(err error) { s.sink.Abort(err) }

// discardSink drops a data set nobody wants.
type discardSink struct{}

func (discardSink) write([]byte) {}
func (discardSink) abort(error)  {}

// message is the message being received.
type message struct {
	pcID   byte
	cmdBuf bytes.Buffer
	cmd    *Command
	sink   dataSink
}

const maxCommandSet = 64 << 10

// serve runs the read loop until the association ends.
func (a *Association) serve() {
	dc, pr := a.dc, a.pr
	var (
		msg   *message
		chunk = make([]byte, 64<<10)
	)
	fail := func(err error) {
		if msg != nil && msg.sink != nil {
			msg.sink.abort(err)
		}
		var pe *ProtocolError
		var ne net.Error
		switch {
		case errors.As(err, &pe):
			a.log.Warn("protocol error, aborting", "err", err)
			a.abort(AbortSourceProvider, pe.Reason, err)
		case errors.As(err, &ne) && ne.Timeout():
			a.log.Warn("timeout, aborting", "err", err)
			a.abort(AbortSourceProvider, AbortNotSpecified, err)
		default:
			a.finish(err)
		}
	}
	// Each PDU's body must arrive within ReadTimeout of its header.
	var inPDU bool
	pr.onHeader = func() {
		inPDU = true
		dc.arm(a.cfg.ReadTimeout)
	}
	for {
		wait := a.cfg.ReadTimeout
		if msg == nil {
			wait = a.idleTimeout()
		}
		dc.arm(wait)
		inPDU = false
		typ, body, err := pr.next()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && msg == nil && !inPDU {
				err = fmt.Errorf("idle for %v: %w", wait, err)
			} else if err == io.EOF {
				err = errors.New("peer closed the connection without release")
			}
			fail(err)
			return
		}
		switch typ {
		case pduDataTF:
			for pr.inPData() {
				if msg, err = a.readPDV(pr, msg, chunk); err != nil {
					fail(err)
					return
				}
			}
		case pduReleaseRQ:
			if msg != nil && msg.sink != nil {
				msg.sink.abort(errors.New("released inside a message"))
			}
			msg = nil
			a.mu.Lock()
			collision := a.releasing
			a.mu.Unlock()
			if collision && !a.requestor {
				// PS3.8 release collision: the acceptor answers after the requestor's RP.
				continue
			}
			a.wmu.Lock()
			err := a.writePDU(encodeRelease(pduReleaseRP))
			a.wmu.Unlock()
			if collision {
				continue // requestor: now wait for the acceptor's RP
			}
			if err != nil {
				a.finish(fmt.Errorf("send A-RELEASE-RP: %w", err))
			} else {
				a.finish(nil)
			}
			return
		case pduReleaseRP:
			a.mu.Lock()
			releasing := a.releasing
			a.mu.Unlock()
			if !releasing {
				fail(protoErr(AbortUnexpectedPDU, "A-RELEASE-RP without a request"))
				return
			}
			if !a.requestor {
				// Release collision, acceptor side: the requestor answered; answer it.
				a.wmu.Lock()
				a.writePDU(encodeRelease(pduReleaseRP))
				a.wmu.Unlock()
			}
			a.finish(nil)
			return
		case pduAbort:
			err := &AbortError{Source: AbortSource(body[2]), Reason: AbortReason(body[3])}
			if msg != nil && msg.sink != nil {
				msg.sink.abort(err)
			}
			a.finish(err)
			return
		default:
			fail(protoErr(AbortUnexpectedPDU, "unexpected PDU 0x%02X on an established association", typ))
			return
		}
	}
}

// readPDV consumes one PDV, advancing the message being received.
func (a *Association) readPDV(pr *pduReader, msg *message, chunk []byte) (*message, error) {
	h, err := pr.nextPDV()
	if err != nil {
		return msg, err
	}
	pc, ok := a.contexts[h.contextID]
	if !ok {
		return msg, protoErr(AbortInvalidParameterValue, "PDV on presentation context %d, which was not accepted", h.contextID)
	}
	if msg == nil {
		if !h.command {
			return msg, protoErr(AbortUnexpectedParameter, "data set fragment with no command before it")
		}
		msg = &message{pcID: h.contextID}
	}
	if h.contextID != msg.pcID {
		return msg, protoErr(AbortInvalidParameterValue, "PDV on context %d inside a message on context %d", h.contextID, msg.pcID)
	}
	if h.command {
		if msg.cmd != nil {
			return msg, protoErr(AbortUnexpectedParameter, "command fragment inside a data set")
		}
		if msg.cmdBuf.Len()+int(h.length) > maxCommandSet {
			return msg, protoErr(AbortInvalidParameterValue, "command set larger than %d bytes", maxCommandSet)
		}
		if _, err := io.CopyN(&msg.cmdBuf, pr.r, int64(h.length)); err != nil {
			return msg, truncated(err)
		}
		pr.dataLeft = 0
		if !h.last {
			return msg, nil
		}
		cmd, err := decodeCommand(msg.cmdBuf.Bytes())
		if err != nil {
			return msg, protoErr(AbortInvalidParameterValue, "%v", err)
		}
		msg.cmd = cmd
		a.commanded = true
		if !cmd.HasDataSet {
			a.dispatchInPDU(pc, cmd, nil)
			return nil, nil
		}
		msg.sink = a.sinkFor(pc, cmd)
		return msg, nil
	}
	if msg.cmd == nil {
		return msg, protoErr(AbortUnexpectedParameter, "data set fragment before the command was complete")
	}
	for {
		n, err := pr.readData(chunk)
		if err != nil {
			return msg, err
		}
		if n == 0 {
			break
		}
		msg.sink.write(chunk[:n])
	}
	if !h.last {
		return msg, nil
	}
	a.dispatchInPDU(pc, msg.cmd, msg.sink)
	return nil, nil
}

// dispatchInPDU dispatches a message that ended inside a P-DATA-TF: the
// rest of the PDU gets a fresh ReadTimeout once the handler is done (an
// instance may take a while to be made durable).
func (a *Association) dispatchInPDU(pc *PresentationContext, cmd *Command, sink dataSink) {
	a.dispatch(pc, cmd, sink)
	a.dc.arm(a.cfg.ReadTimeout)
}

// idleTimeout is the silence allowed between messages: shorter on an
// association we accepted until its first command.
func (a *Association) idleTimeout() time.Duration {
	if !a.requestor && !a.commanded {
		return a.cfg.FirstCommandTimeout
	}
	return a.cfg.IdleTimeout
}

// sinkFor decides where a message's data set goes.
func (a *Association) sinkFor(pc *PresentationContext, cmd *Command) dataSink {
	if cmd.Field == CStoreRQ && a.handlers.Store != nil {
		req := &StoreRequest{
			SOPClassUID:       cmd.AffectedSOPClassUID,
			SOPInstanceUID:    cmd.AffectedSOPInstanceUID,
			TransferSyntaxUID: pc.TransferSyntax,
			ContextID:         pc.ID,
			MessageID:         cmd.MessageID,
			Priority:          cmd.Priority,
			MoveOriginatorAE:  cmd.MoveOriginatorAE,
		}
		if sink := a.handlers.Store(a.ctx, a, req); sink != nil {
			return &storeSinkAdapter{sink: sink}
		}
		return discardSink{}
	}
	if cmd.Field == CStoreRQ {
		return discardSink{}
	}
	return &bufferSink{}
}

// dispatch acts on a complete message: a response goes to its waiter, a
// request to its handler, whose status is answered.
func (a *Association) dispatch(pc *PresentationContext, cmd *Command, sink dataSink) {
	if cmd.IsResponse() {
		var data []byte
		if bs, ok := sink.(*bufferSink); ok && !bs.overflow {
			data = bs.buf.Bytes()
		}
		a.mu.Lock()
		ch, ok := a.pending[cmd.MessageIDBeingRespondedTo]
		a.mu.Unlock()
		if !ok {
			a.log.Warn("response to no outstanding request", "field", fmt.Sprintf("0x%04X", cmd.Field), "id", cmd.MessageIDBeingRespondedTo)
			return
		}
		// ch holds one response and is read by its request only: a second
		// answer to the same request is dropped, never waited for.
		select {
		case ch <- response{cmd: cmd, data: data}:
		default:
			a.log.Warn("second response to one request", "id", cmd.MessageIDBeingRespondedTo)
		}
		return
	}
	rspField := cmd.Field | 0x8000
	switch cmd.Field {
	case CEchoRQ:
		status := StatusSuccess
		if a.handlers.Echo != nil {
			status = a.handlers.Echo(a.ctx, a)
		}
		a.respond(pc.ID, cmd, rspField, status)
	case CStoreRQ:
		status := StatusUnrecognizedOperation
		if s, ok := sink.(*storeSinkAdapter); ok {
			status = s.sink.Close()
		}
		a.respond(pc.ID, cmd, rspField, status)
	case NActionRQ:
		a.respond(pc.ID, cmd, rspField, a.handleCommitRequest(pc, cmd, sink))
	case NEventReportRQ:
		a.respond(pc.ID, cmd, rspField, a.handleCommitReport(pc, cmd, sink))
	default:
		a.log.Warn("unsupported DIMSE request", "field", fmt.Sprintf("0x%04X", cmd.Field))
		a.respond(pc.ID, cmd, rspField, StatusUnrecognizedOperation)
	}
}
