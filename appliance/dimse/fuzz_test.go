package dimse

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// Fuzz targets for everything that parses bytes from the network. Seeds are
// here and in testdata/fuzz; `make fuzz` runs each for a while.

func seedPDUs() [][]byte {
	rq := echoRQ()
	rq.UserInfo.UserIdentity = &UserIdentity{Type: 2, PositiveResponseRequested: true, Primary: []byte("u"), Secondary: []byte("p")}
	rq.UserInfo.Roles = []RoleSelection{{SOPClass: StorageCommitmentSOPClass, SCP: true}}
	rq.UserInfo.AsyncOpsInvoked, rq.UserInfo.AsyncOpsPerformed = 2, 2
	ac := &Associate{CalledAE: "A", CallingAE: "B", ApplicationContext: ApplicationContext,
		Contexts: []PresentationContext{{ID: 1, Result: 0, TransferSyntax: ImplicitVRLittleEndian}, {ID: 3, Result: 3}},
		UserInfo: UserInfo{MaxPDULength: 0, ImplementationClassUID: "1.2", UserIdentityResponse: []byte{}}}
	return [][]byte{
		encodeAssociate(pduAssociateRQ, rq),
		encodeAssociate(pduAssociateAC, ac),
		encodeReject(RejectCallingAE),
		encodeRelease(pduReleaseRQ),
		encodeAbort(AbortSourceProvider, AbortUnexpectedPDU),
		pdata(1, 3, encodeCommand(&Command{Field: CEchoRQ, MessageID: 1, AffectedSOPClassUID: VerificationSOPClass})),
		append(pdata(3, 1|2, storeCommand("1.2.3")), pdata(3, 2, []byte{8, 0, 0x18, 0, 'U', 'I', 2, 0, '1', 0})...),
	}
}

func FuzzReadPDU(f *testing.F) {
	for _, s := range seedPDUs() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pr := newPDUReader(bytes.NewReader(b), 16384)
		chunk := make([]byte, 512)
		for i := 0; i < 64; i++ {
			typ, body, err := pr.next()
			if err != nil {
				return
			}
			switch typ {
			case pduAssociateRQ, pduAssociateAC:
				if a, err := decodeAssociate(typ, body); err == nil {
					// What decodes re-encodes and decodes the same.
					b2 := encodeAssociate(typ, a)
					if _, err := decodeAssociate(typ, b2[6:]); err != nil {
						t.Fatalf("re-encoded A-ASSOCIATE does not decode: %v", err)
					}
				}
			case pduDataTF:
				for pr.inPData() {
					if _, err := pr.nextPDV(); err != nil {
						return
					}
					for {
						n, err := pr.readData(chunk)
						if err != nil {
							return
						}
						if n == 0 {
							break
						}
					}
				}
			}
		}
	})
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add(encodeCommand(&Command{Field: CStoreRQ, MessageID: 3, AffectedSOPClassUID: "1.2.3", AffectedSOPInstanceUID: "4.5", HasDataSet: true, MoveOriginatorAE: "X"}))
	f.Add(encodeCommand(&Command{Field: NEventReportRSP, MessageIDBeingRespondedTo: 9, Status: StatusProcessingFailure, ErrorComment: "no"}))
	f.Add(encodeCommand(&Command{Field: NActionRQ, RequestedSOPClassUID: StorageCommitmentSOPClass, ActionTypeID: 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCommand(b)
		if err != nil {
			return
		}
		c2, err := decodeCommand(encodeCommand(c))
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		if c2.Field != c.Field || c2.HasDataSet != c.HasDataSet || c2.SOPInstanceUID() != c.SOPInstanceUID() {
			t.Fatalf("round trip changed the command: %+v -> %+v", c, c2)
		}
	})
}

func FuzzDecodeDataSet(f *testing.F) {
	req := encodeDataSet([]dsElement{
		{tag: tagTransactionUID, vr: "UI", value: padded("1.2.3", 0)},
		{tag: tagReferencedSOPSeq, vr: "SQ", items: refItems([]SOPRef{{SOPClassUID: "1.2", SOPInstanceUID: "3.4"}}, false)},
	}, true)
	f.Add(req, true)
	f.Add(encodeDataSet([]dsElement{{tag: tagFailedSOPSeq, items: refItems([]SOPRef{{SOPInstanceUID: "9", FailureReason: 0x112}}, true)}}, false), false)
	// Undefined-length sequence and item.
	f.Add([]byte{0x08, 0x00, 0x99, 0x11, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF,
		0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0}, false)
	f.Fuzz(func(t *testing.T, b []byte, explicit bool) {
		els, err := decodeDataSet(b, explicit)
		if err != nil {
			return
		}
		parseRefs(findElement(els, tagReferencedSOPSeq))
		parseRefs(findElement(els, tagFailedSOPSeq))
	})
}

// FuzzServeAssociation feeds arbitrary bytes to a whole accepting
// association: whatever arrives, ServeConn returns, without a panic.
func FuzzServeAssociation(f *testing.F) {
	rq := encodeAssociate(pduAssociateRQ, echoRQ())
	for _, s := range seedPDUs()[3:] {
		f.Add(append(append([]byte{}, rq...), s...))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rec := newRecorder(false)
		srv := &Server{Policy: &StaticPolicy{}, Handlers: Handlers{Store: rec.store},
			Config: Config{ARTIM: time.Second, ReadTimeout: time.Second, IdleTimeout: time.Second, WriteTimeout: time.Second}}
		c1, c2 := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ServeConn(context.Background(), c1)
		}()
		go io.Copy(io.Discard, c2) // whatever the server answers
		c2.SetWriteDeadline(time.Now().Add(2 * time.Second))
		c2.Write(b)
		c2.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("association not freed after the peer went away")
		}
	})
}
