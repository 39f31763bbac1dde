package dimse

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tests of what a broken or hostile peer gets: the right A-ABORT or
// A-ASSOCIATE-RJ, a freed association, a discarded partial data set, and
// never a panic or a stuck goroutine.

func echoRQ(ctx ...Proposal) *Associate {
	if len(ctx) == 0 {
		ctx = []Proposal{{AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{ImplicitVRLittleEndian}},
			{AbstractSyntax: "1.2.840.10008.5.1.4.1.1.2", TransferSyntaxes: []string{ExplicitVRLittleEndian}}}
	}
	rq := &Associate{CalledAE: "RELAIS", CallingAE: "RAW", ApplicationContext: ApplicationContext,
		UserInfo: UserInfo{MaxPDULength: 16384, ImplementationClassUID: "1.2.3"}}
	for i, p := range ctx {
		rq.Contexts = append(rq.Contexts, PresentationContext{ID: byte(2*i + 1), AbstractSyntax: p.AbstractSyntax, TransferSyntaxes: p.TransferSyntaxes})
	}
	return rq
}

// hostileServer is an SCP with short timers whose sinks report what happened.
type hostileServer struct {
	srv  *Server
	addr string
	rec  *recorder
}

func newHostileServer(t *testing.T, cfg Config, opts ...func(*Server)) *hostileServer {
	h := &hostileServer{rec: newRecorder(false)}
	if cfg.ARTIM == 0 {
		cfg.ARTIM = 500 * time.Millisecond
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = 500 * time.Millisecond
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = time.Second
	}
	if cfg.MaxPDULength == 0 && !cfg.Unlimited {
		cfg.MaxPDULength = 16384
	}
	cfg.Logger = testLogger(t)
	h.srv = &Server{Policy: &StaticPolicy{CalledAETitles: []string{"RELAIS"}}, Handlers: Handlers{Store: h.rec.store}, Config: cfg}
	for _, o := range opts {
		o(h.srv)
	}
	h.addr = startServer(t, h.srv)
	return h
}

// waitIdle waits until the server holds no association.
func (h *hostileServer) waitIdle(t *testing.T) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if h.srv.Active() == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%d associations still held 5 s later", h.srv.Active())
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readPDU reads one PDU the server sent, with a deadline.
func readPDU(t *testing.T, c net.Conn) (byte, []byte) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [6]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("read PDU: %v", err)
	}
	n := binary.BigEndian.Uint32(hdr[2:])
	if n > 1<<20 {
		t.Fatalf("PDU of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read PDU body: %v", err)
	}
	return hdr[0], b
}

// expectAbort reads an A-ABORT with the given reason, then EOF.
func expectAbort(t *testing.T, c net.Conn, reason AbortReason) {
	t.Helper()
	typ, b := readPDU(t, c)
	if typ != pduAbort || AbortSource(b[2]) != AbortSourceProvider || AbortReason(b[3]) != reason {
		t.Fatalf("got PDU 0x%02X %v, want A-ABORT source 2 reason %d", typ, b, reason)
	}
	expectClosed(t, c)
}

func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("connection not closed: %d bytes, %v", n, err)
	}
}

// associateRaw sends rq and returns the A-ASSOCIATE-AC.
func associateRaw(t *testing.T, c net.Conn, rq *Associate) *Associate {
	t.Helper()
	c.Write(encodeAssociate(pduAssociateRQ, rq))
	typ, b := readPDU(t, c)
	if typ != pduAssociateAC {
		t.Fatalf("got PDU 0x%02X, want A-ASSOCIATE-AC", typ)
	}
	ac, err := decodeAssociate(typ, b)
	if err != nil {
		t.Fatal(err)
	}
	return ac
}

func pdata(pcID byte, mch byte, data []byte) []byte {
	b := make([]byte, 12+len(data))
	putPDVHeader(b, pcID, mch&1 != 0, mch&2 != 0, len(data))
	copy(b[12:], data)
	return b
}

func storeCommand(uid string) []byte {
	return encodeCommand(&Command{Field: CStoreRQ, MessageID: 1, AffectedSOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
		AffectedSOPInstanceUID: uid, HasDataSet: true})
}

func TestMaxPDUZeroMeansUnlimitedForTheSender(t *testing.T) {
	rq := echoRQ()
	rq.UserInfo.MaxPDULength = 0
	ac := &Associate{UserInfo: UserInfo{MaxPDULength: 0}}
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	a := newAssociation(c1, false, rq, ac, Config{}.withDefaults(), Handlers{})
	if a.sendMax != unlimitedSendPDU-6 {
		t.Fatalf("fragment size %d for a peer with no limit, want %d", a.sendMax, unlimitedSendPDU-6)
	}
}

func TestPDVLargerThanNegotiatedMaxIsAborted(t *testing.T) {
	h := newHostileServer(t, Config{MaxPDULength: 16384})
	c := dialRaw(t, h.addr)
	associateRaw(t, c, echoRQ())
	c.Write(pdata(3, 1|2, storeCommand("1.2.3")))
	c.Write(pdata(3, 2, make([]byte, 20000)))
	expectAbort(t, c, AbortInvalidParameterValue)
	h.waitIdle(t)
	if got := h.rec.get("aborted:1.2.3"); got == nil {
		t.Fatal("sink was not told to discard")
	}
	if h.rec.get("1.2.3") != nil {
		t.Fatal("instance stored after an abort")
	}
}

func TestUserIdentityIsAnsweredAndUnknownSubItemsIgnored(t *testing.T) {
	h := newHostileServer(t, Config{})
	c := dialRaw(t, h.addr)
	rq := echoRQ()
	rq.UserInfo.UserIdentity = &UserIdentity{Type: 2, PositiveResponseRequested: true, Primary: []byte("tech"), Secondary: []byte("secret")}
	b := encodeAssociate(pduAssociateRQ, rq)
	// Append an unknown sub-item (0x5F) and an unknown item (0x7E) at the end.
	unknown := []byte{0x7E, 0, 0, 3, 'x', 'y', 'z'}
	b = append(b, unknown...)
	binary.BigEndian.PutUint32(b[2:], uint32(len(b)-6))
	// Unknown sub-item inside user info: rebuild with it.
	ui := bytes.LastIndex(b, []byte{itemUserInfo, 0})
	sub := []byte{0x5F, 0, 0, 2, 1, 2}
	b = append(b[:ui+4], append(sub, b[ui+4:]...)...)
	binary.BigEndian.PutUint16(b[ui+2:], binary.BigEndian.Uint16(b[ui+2:])+uint16(len(sub)))
	binary.BigEndian.PutUint32(b[2:], uint32(len(b)-6))
	c.Write(b)
	typ, body := readPDU(t, c)
	if typ != pduAssociateAC {
		t.Fatalf("PDU 0x%02X, want AC", typ)
	}
	ac, err := decodeAssociate(typ, body)
	if err != nil {
		t.Fatal(err)
	}
	if ac.UserInfo.UserIdentityResponse == nil {
		t.Fatal("no User Identity response sub-item though a positive response was requested")
	}
	c.Write(pdata(1, 1|2, encodeCommand(&Command{Field: CEchoRQ, MessageID: 7, AffectedSOPClassUID: VerificationSOPClass})))
	typ, body = readPDU(t, c)
	cmd, err := decodeCommand(body[6:])
	if typ != pduDataTF || err != nil || cmd.Field != CEchoRSP || cmd.Status != StatusSuccess || cmd.MessageIDBeingRespondedTo != 7 {
		t.Fatalf("echo answer %v %+v", err, cmd)
	}
}

func TestTruncatedAssociateRequestFreesTheAssociation(t *testing.T) {
	h := newHostileServer(t, Config{})
	c := dialRaw(t, h.addr)
	b := encodeAssociate(pduAssociateRQ, echoRQ())
	c.Write(b[:len(b)/2])
	c.(*net.TCPConn).CloseWrite()
	expectClosed(t, c)
	h.waitIdle(t)
}

func TestTruncatedAssociateRequestHeldOpenIsDroppedByARTIM(t *testing.T) {
	h := newHostileServer(t, Config{})
	c := dialRaw(t, h.addr)
	b := encodeAssociate(pduAssociateRQ, echoRQ())
	c.Write(b[:len(b)/2]) // and then silence
	expectClosed(t, c)
	h.waitIdle(t)
}

func TestConnectionClosedInsideDataSetDiscardsIt(t *testing.T) {
	h := newHostileServer(t, Config{})
	c := dialRaw(t, h.addr)
	associateRaw(t, c, echoRQ())
	c.Write(pdata(3, 1|2, storeCommand("1.2.4")))
	c.Write(pdata(3, 0, make([]byte, 1000)))
	full := pdata(3, 2, make([]byte, 4000))
	c.Write(full[:2000]) // the PDU stops half way
	c.Close()
	h.waitIdle(t)
	if h.rec.get("aborted:1.2.4") == nil || h.rec.get("1.2.4") != nil {
		t.Fatal("partial data set was not discarded")
	}
}

func TestDeclared4GiBLengthsAllocateNothing(t *testing.T) {
	h := newHostileServer(t, Config{Unlimited: true})
	t.Run("associate", func(t *testing.T) {
		c := dialRaw(t, h.addr)
		c.Write([]byte{pduAssociateRQ, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 1})
		expectAbort(t, c, AbortInvalidParameterValue)
	})
	t.Run("pdata-unlimited", func(t *testing.T) {
		var before, after runtimeMem
		before.read()
		c := dialRaw(t, h.addr)
		associateRaw(t, c, echoRQ())
		// A 4 GiB P-DATA-TF holding a 4 GiB command PDV: refused at 64 KiB.
		hdr := []byte{pduDataTF, 0, 0xFF, 0xFF, 0xFF, 0xF0, 0xFF, 0xFF, 0xFF, 0xE0, 3, 3}
		c.Write(hdr)
		expectAbort(t, c, AbortInvalidParameterValue)
		after.read()
		if after.peak-before.peak > 16<<20 {
			t.Fatalf("heap grew by %d bytes", after.peak-before.peak)
		}
	})
	t.Run("data-set-unlimited", func(t *testing.T) {
		c := dialRaw(t, h.addr)
		associateRaw(t, c, echoRQ())
		c.Write(pdata(3, 1|2, storeCommand("1.2.5")))
		// A PDV declaring ~4 GiB of data set; 1 MiB arrives, then the peer goes.
		c.Write([]byte{pduDataTF, 0, 0xFF, 0xFF, 0xFF, 0xF0, 0xFF, 0xFF, 0xFF, 0xE0, 3, 2})
		c.Write(make([]byte, 1<<20))
		c.Close()
		h.waitIdle(t)
		if h.rec.get("aborted:1.2.5") == nil || h.rec.get("1.2.5") != nil {
			t.Fatal("partial data set was not discarded")
		}
	})
}

func TestAbortInsideDataSetTellsSinkToDiscard(t *testing.T) {
	h := newHostileServer(t, Config{})
	c := dialRaw(t, h.addr)
	associateRaw(t, c, echoRQ())
	c.Write(pdata(3, 1|2, storeCommand("1.2.6")))
	c.Write(pdata(3, 0, make([]byte, 5000)))
	c.Write(encodeAbort(AbortSourceUser, AbortNotSpecified))
	expectClosed(t, c)
	h.waitIdle(t)
	got := h.rec.get("aborted:1.2.6")
	if got == nil || h.rec.get("1.2.6") != nil {
		t.Fatal("sink not told to discard after A-ABORT")
	}
	var ae *AbortError
	if !errors.As(got.aborted, &ae) || ae.Local {
		t.Fatalf("sink told %v, want the peer's A-ABORT", got.aborted)
	}
}

func TestSilentPeersAreDroppedAndDelayNobody(t *testing.T) {
	h := newHostileServer(t, Config{})
	silent := dialRaw(t, h.addr) // says nothing at all
	mid := dialRaw(t, h.addr)    // stops inside a message
	associateRaw(t, mid, echoRQ())
	mid.Write(pdata(3, 1|2, storeCommand("1.2.7")))
	mid.Write(pdata(3, 0, make([]byte, 100)))

	// Meanwhile another peer is served at once.
	a, err := Dial(context.Background(), h.addr, DialParams{CallingAE: "OK", CalledAE: "RELAIS", Proposals: storageProposals()})
	if err != nil {
		t.Fatalf("a silent peer delayed another: %v", err)
	}
	if st, err := a.Echo(context.Background()); err != nil || st != StatusSuccess {
		t.Fatal(st, err)
	}
	a.Release(context.Background())

	expectClosed(t, silent)
	expectAbort(t, mid, AbortNotSpecified)
	h.waitIdle(t)
	if h.rec.get("aborted:1.2.7") == nil {
		t.Fatal("sink of the stalled message not told to discard")
	}
}

func TestIdleAssociationIsAborted(t *testing.T) {
	h := newHostileServer(t, Config{IdleTimeout: 300 * time.Millisecond})
	c := dialRaw(t, h.addr)
	associateRaw(t, c, echoRQ())
	expectAbort(t, c, AbortNotSpecified)
	h.waitIdle(t)
}

func TestProtocolViolationsGetTheRightAbort(t *testing.T) {
	h := newHostileServer(t, Config{})
	for _, tc := range []struct {
		name   string
		before bool // send before association
		pdu    []byte
		reason AbortReason
	}{
		{"unknown PDU type", true, []byte{0x09, 0, 0, 0, 0, 0}, AbortUnrecognizedPDU},
		{"data before association", true, pdata(1, 3, []byte{1, 2}), AbortUnexpectedPDU},
		{"associate twice", false, encodeAssociate(pduAssociateRQ, echoRQ()), AbortUnexpectedPDU},
		{"unaccepted context", false, pdata(9, 3, storeCommand("1.2.8")), AbortInvalidParameterValue},
		{"data set before command", false, pdata(3, 2, []byte{1, 2, 3, 4}), AbortUnexpectedParameter},
		{"garbage command", false, pdata(3, 3, []byte{1, 2, 3}), AbortInvalidParameterValue},
		{"PDV longer than PDU", false, []byte{pduDataTF, 0, 0, 0, 0, 8, 0, 0, 0, 9, 3, 3, 0, 0}, AbortInvalidParameterValue},
		{"release RQ of wrong size", false, []byte{pduReleaseRQ, 0, 0, 0, 0, 2, 0, 0}, AbortInvalidParameterValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, h.addr)
			if !tc.before {
				associateRaw(t, c, echoRQ())
			}
			c.Write(tc.pdu)
			expectAbort(t, c, tc.reason)
		})
	}
	h.waitIdle(t)
}

func TestBadAssociateRequestsAreRejected(t *testing.T) {
	h := newHostileServer(t, Config{})
	for _, tc := range []struct {
		name string
		mod  func(*Associate)
		want Rejection
	}{
		{"wrong called AE", func(a *Associate) { a.CalledAE = "NOPE" }, *RejectCalledAE},
		{"wrong application context", func(a *Associate) { a.ApplicationContext = "1.2.3" }, *RejectAppContext},
		{"protocol version 2", func(a *Associate) { a.ProtocolVersion = 2 }, *RejectProtocolVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, h.addr)
			rq := echoRQ()
			tc.mod(rq)
			c.Write(encodeAssociate(pduAssociateRQ, rq))
			typ, b := readPDU(t, c)
			if typ != pduAssociateRJ || *decodeReject(b) != tc.want {
				t.Fatalf("got PDU 0x%02X %v, want A-ASSOCIATE-RJ %+v", typ, b, tc.want)
			}
		})
	}
}

func TestFiftyConcurrentAssociationsAllStore(t *testing.T) {
	h := newHostileServer(t, Config{ARTIM: 10 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: 10 * time.Second})
	data := bytes.Repeat([]byte{0x08, 0x00, 0x18, 0x00, 'U', 'I', 2, 0, '1', 0}, 5000)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			a, err := Dial(context.Background(), h.addr, DialParams{CallingAE: "MANY", CalledAE: "RELAIS",
				Proposals: storageProposals("1.2.840.10008.5.1.4.1.1.2")})
			if err != nil {
				errs <- err
				return
			}
			defer a.Close()
			for j := 0; j < 3; j++ {
				uid := "1.2.9." + strconv.Itoa(i) + "." + strconv.Itoa(j)
				st, err := a.Store(context.Background(), StoreParams{SOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
					SOPInstanceUID: uid, TransferSyntaxUID: ExplicitVRLittleEndian}, bytes.NewReader(data))
				if err != nil || st != StatusSuccess {
					errs <- errors.Join(err, errors.New(st.String()))
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	h.rec.mu.Lock()
	n := len(h.rec.order)
	h.rec.mu.Unlock()
	if n != 150 {
		t.Fatalf("%d instances stored, want 150", n)
	}
	h.waitIdle(t)
}

func TestAssociationsBeyondTheLimitAreRejectedTransiently(t *testing.T) {
	h := newHostileServer(t, Config{ARTIM: 5 * time.Second, IdleTimeout: 5 * time.Second}, func(s *Server) {
		s.SetMaxAssociations(2)
		s.MaxPerCaller, s.MaxPerAddress = 2, 2 // this test is about the total
	})
	var held []*Association
	for i := 0; i < 2; i++ {
		a, err := Dial(context.Background(), h.addr, DialParams{CallingAE: "A", CalledAE: "RELAIS", Proposals: storageProposals()})
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, a)
	}
	_, err := Dial(context.Background(), h.addr, DialParams{CallingAE: "A", CalledAE: "RELAIS", Proposals: storageProposals()})
	var rj *Rejection
	if !errors.As(err, &rj) || *rj != *RejectLocalLimit {
		t.Fatalf("third association: %v, want transient local-limit rejection", err)
	}
	for _, a := range held {
		a.Release(context.Background())
	}
	h.waitIdle(t)
	a, err := Dial(context.Background(), h.addr, DialParams{CallingAE: "A", CalledAE: "RELAIS", Proposals: storageProposals()})
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	a.Release(context.Background())
}

// TestReleaseCollisionOnTheRequestorSide: the peer answers our
// A-RELEASE-RQ with its own; PS3.8's collision rules let both finish.
func TestReleaseCollisionOnTheRequestorSide(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peerDone := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peerDone <- err
			return
		}
		defer c.Close()
		pr := newPDUReader(c, 0)
		typ, body, err := pr.next()
		if err != nil || typ != pduAssociateRQ {
			peerDone <- fmt.Errorf("want A-ASSOCIATE-RQ: %v", err)
			return
		}
		rq, _ := decodeAssociate(typ, body)
		ac := &Associate{CalledAE: rq.CalledAE, CallingAE: rq.CallingAE, UserInfo: UserInfo{MaxPDULength: 16384, ImplementationClassUID: "1.2"}}
		for _, pc := range rq.Contexts {
			ac.Contexts = append(ac.Contexts, PresentationContext{ID: pc.ID, Result: ResultAcceptance, TransferSyntax: pc.TransferSyntaxes[0]})
		}
		c.Write(encodeAssociate(pduAssociateAC, ac))
		if typ, _, err = pr.next(); err != nil || typ != pduReleaseRQ {
			peerDone <- fmt.Errorf("want A-RELEASE-RQ: %v", err)
			return
		}
		c.Write(encodeRelease(pduReleaseRQ)) // collision
		if typ, _, err = pr.next(); err != nil || typ != pduReleaseRP {
			peerDone <- fmt.Errorf("the requestor must answer the collision with A-RELEASE-RP first: %v", err)
			return
		}
		c.Write(encodeRelease(pduReleaseRP))
		peerDone <- nil
	}()
	a, err := Dial(context.Background(), ln.Addr().String(), DialParams{CallingAE: "A", CalledAE: "B", Proposals: storageProposals()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Release(context.Background()); err != nil {
		t.Fatalf("release with collision: %v", err)
	}
	if err := <-peerDone; err != nil {
		t.Fatal(err)
	}
}

// TestResponseRacingTheEndNeverPanics: a response that arrives while the
// request is being given up (its context ends) is dropped or delivered,
// never sent on a closed channel.
func TestResponseRacingTheEndNeverPanics(t *testing.T) {
	answering := make(chan struct{}, 1)
	addr := startServer(t, &Server{Policy: &StaticPolicy{}, Handlers: Handlers{Echo: func(context.Context, *Association) Status {
		answering <- struct{}{}
		return StatusSuccess
	}}})
	for range 200 {
		a, err := Dial(context.Background(), addr, DialParams{CallingAE: "A", CalledAE: "RELAIS", Proposals: storageProposals()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			<-answering
			cancel()
		}()
		a.Echo(ctx)
		cancel()
		a.Abort()
		<-a.Done()
	}
}

// TestMaxAssociationsChangesWhileServing: the limit may be changed while
// requests are being decided (a configuration change); -race checks it.
func TestMaxAssociationsChangesWhileServing(t *testing.T) {
	h := newHostileServer(t, Config{})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			h.srv.SetMaxAssociations(50 + i%50)
		}
	}()
	for range 20 {
		a, err := Dial(context.Background(), h.addr, DialParams{CallingAE: "A", CalledAE: "RELAIS", Proposals: storageProposals()})
		if err != nil {
			t.Fatal(err)
		}
		a.Release(context.Background())
	}
	close(stop)
	<-done
}

// TestTrickledPDUIsCut: a PDU whose bytes come one at a time, each within
// the read timeout, is cut when the whole PDU has not arrived within it.
func TestTrickledPDUIsCut(t *testing.T) {
	const timeout = time.Second
	h := newHostileServer(t, Config{ReadTimeout: timeout, IdleTimeout: 30 * time.Second})
	c := dialRaw(t, h.addr)
	associateRaw(t, c, echoRQ())
	pdu := pdata(3, 1|2, storeCommand("1.2.5"))
	start := time.Now()
	var cut time.Duration
	for i := range pdu {
		if _, err := c.Write(pdu[i : i+1]); err != nil {
			cut = time.Since(start)
			break
		}
		time.Sleep(timeout / 4)
		if time.Since(start) > 20*timeout {
			t.Fatalf("a PDU trickled one byte per %v was not cut after %v", timeout/4, time.Since(start))
		}
		if i > 5 && h.srv.Active() == 0 {
			cut = time.Since(start)
			break
		}
	}
	t.Logf("PDU trickled at 1 byte per %v, read timeout %v: cut after %v", timeout/4, timeout, cut.Round(time.Millisecond))
	// The A-ABORT is lost when a byte we trickled after the cut arrived
	// before the close (the kernel then resets the connection): either way
	// the association is gone.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [10]byte
	if n, err := io.ReadFull(c, hdr[:]); err == nil && (hdr[0] != pduAbort || AbortReason(hdr[9]) != AbortNotSpecified) {
		t.Fatalf("got % x, want A-ABORT", hdr[:n])
	} else if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after the cut: %v, want A-ABORT or reset", err)
	}
	h.waitIdle(t)
}

// TestUnusedAssociationIsDroppedSooner: an association that never sends a
// command is dropped after FirstCommandTimeout; one that did waits the
// IdleTimeout.
func TestUnusedAssociationIsDroppedSooner(t *testing.T) {
	h := newHostileServer(t, Config{FirstCommandTimeout: 300 * time.Millisecond, IdleTimeout: 3 * time.Second})
	unused := dialRaw(t, h.addr)
	associateRaw(t, unused, echoRQ())
	used, err := Dial(context.Background(), h.addr, DialParams{CallingAE: "A", CalledAE: "RELAIS", Proposals: storageProposals()})
	if err != nil {
		t.Fatal(err)
	}
	defer used.Abort()
	if st, err := used.Echo(context.Background()); err != nil || st != StatusSuccess {
		t.Fatal(st, err)
	}
	start := time.Now()
	expectAbort(t, unused, AbortNotSpecified)
	t.Logf("association with no command dropped after %v", time.Since(start).Round(time.Millisecond))
	time.Sleep(time.Second)
	if st, err := used.Echo(context.Background()); err != nil || st != StatusSuccess {
		t.Fatalf("used association dropped before its idle timeout: %v %v", st, err)
	}
}
