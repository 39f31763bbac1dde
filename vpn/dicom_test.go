package vpn

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"net"
	"sync"

	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/testdata/dcmgen"
)

// What the tunnel tests send through the tunnel: DICOM, with our own stack.

const (
	testCalledAE  = "READING"
	testCallingAE = "RELAIS"
)

// instance is one generated instance's data set (Part 10 meta header
// removed) and its UIDs.
type instance struct {
	sopClass, sopInstance string
	data                  []byte
}

func newInstance(n int) (instance, error) {
	in := dcmgen.Instance{Rows: 128, Columns: 128, InstanceNumber: n}.Defaults()
	var buf bytes.Buffer
	if _, err := in.Write(&buf); err != nil {
		return instance{}, err
	}
	data, err := stripMeta(buf.Bytes())
	return instance{in.SOPClassUID, in.SOPInstanceUID, data}, err
}

// stripMeta drops the preamble and the group 0002 meta header, whose first
// element, (0002,0000) UL, gives the group's length.
func stripMeta(f []byte) ([]byte, error) {
	const groupLength = 132 + 12
	if len(f) < groupLength || string(f[128:132]) != "DICM" || string(f[136:138]) != "UL" {
		return nil, fmt.Errorf("not a Part 10 file")
	}
	end := groupLength + int(binary.LittleEndian.Uint32(f[140:144]))
	if end > len(f) {
		return nil, fmt.Errorf("meta header longer than the file")
	}
	return f[end:], nil
}

// scp is a storage SCP that hashes what it receives.
type scp struct {
	mu  sync.Mutex
	got map[string][32]byte // SOP Instance UID → SHA-256 of the data set
}

func (s *scp) serve(ctx context.Context, ln net.Listener) error {
	s.got = map[string][32]byte{}
	srv := &dimse.Server{
		Policy: &dimse.StaticPolicy{CalledAETitles: []string{testCalledAE}},
		Handlers: dimse.Handlers{Store: func(_ context.Context, _ *dimse.Association, req *dimse.StoreRequest) dimse.StoreSink {
			return &hashSink{h: sha256.New(), done: func(sum [32]byte) {
				s.mu.Lock()
				s.got[req.SOPInstanceUID] = sum
				s.mu.Unlock()
			}}
		}},
	}
	return srv.Serve(ctx, ln)
}

func (s *scp) sum(uid string) ([32]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum, ok := s.got[uid]
	return sum, ok
}

type hashSink struct {
	h    hash.Hash
	done func([32]byte)
}

func (k *hashSink) Write(p []byte) (int, error) { return k.h.Write(p) }
func (k *hashSink) Abort(error)                 {}
func (k *hashSink) Close() dimse.Status {
	k.done([32]byte(k.h.Sum(nil)))
	return dimse.StatusSuccess
}

// echoAndStore opens an association to addr through dial, C-ECHOes, and
// C-STOREs in; any failure is an error.
func echoAndStore(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), addr string, in instance) error {
	a, err := dimse.Dial(ctx, addr, dimse.DialParams{
		CallingAE: testCallingAE, CalledAE: testCalledAE,
		Proposals: []dimse.Proposal{
			{AbstractSyntax: in.sopClass, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}},
			{AbstractSyntax: dimse.VerificationSOPClass, TransferSyntaxes: []string{dimse.ImplicitVRLittleEndian}},
		},
		Dial: dial,
	})
	if err != nil {
		return err
	}
	if st, err := a.Echo(ctx); err != nil || st != dimse.StatusSuccess {
		a.Abort()
		return fmt.Errorf("C-ECHO: status %v, %v", st, err)
	}
	st, err := a.Store(ctx, dimse.StoreParams{SOPClassUID: in.sopClass, SOPInstanceUID: in.sopInstance,
		TransferSyntaxUID: dimse.ExplicitVRLittleEndian}, bytes.NewReader(in.data))
	if err != nil || st != dimse.StatusSuccess {
		a.Abort()
		return fmt.Errorf("C-STORE: status %v, %v", st, err)
	}
	return a.Release(ctx)
}
