package dimse

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/relais/relais/appliance/part10"
	"github.com/relais/relais/testdata/dcmgen"
)

func storageProposals(sopClasses ...string) []Proposal {
	var ps []Proposal
	for _, c := range sopClasses {
		// One context per transfer syntax: each instance goes in its own.
		ps = append(ps, Proposal{AbstractSyntax: c, TransferSyntaxes: []string{ExplicitVRLittleEndian}},
			Proposal{AbstractSyntax: c, TransferSyntaxes: []string{ImplicitVRLittleEndian}})
	}
	return append(ps, Proposal{AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{ImplicitVRLittleEndian}})
}

// sendFile C-STOREs the data set of a Part 10 file.
func sendFile(t testing.TB, a *Association, path string) Status {
	t.Helper()
	m, br, err := part10.OpenDataSet(path)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	st, err := a.Store(context.Background(), StoreParams{
		SOPClassUID:       m.MediaStorageSOPClassUID,
		SOPInstanceUID:    m.MediaStorageSOPInstanceUID,
		TransferSyntaxUID: m.TransferSyntaxUID,
	}, br)
	if err != nil {
		t.Fatalf("store %s: %v", path, err)
	}
	return st
}

func TestStoreBetweenOwnSCUAndSCPKeepsBytesAtEveryPDUSize(t *testing.T) {
	dir := t.TempDir()
	var files []string
	for i, in := range []dcmgen.Instance{
		{Rows: 64, Columns: 64, InstanceNumber: 1},
		{Rows: 512, Columns: 512, InstanceNumber: 2},
		{Rows: 128, Columns: 128, Frames: 7, InstanceNumber: 3, SOPClassUID: dcmgen.MultiFrameGrayscaleWordSC},
		{Rows: 64, Columns: 64, InstanceNumber: 4, TransferSyntax: dcmgen.ImplicitVRLittleEndian},
	} {
		p := filepath.Join(dir, filepath.Base(t.Name())+string(rune('a'+i))+".dcm")
		if _, err := in.WriteFile(p); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	for _, tc := range []struct {
		name     string
		scp, scu Config
	}{
		{"16KiB", Config{MaxPDULength: 16384}, Config{MaxPDULength: 16384}},
		{"unlimited", Config{Unlimited: true}, Config{Unlimited: true}},
		{"odd", Config{MaxPDULength: 4099}, Config{MaxPDULength: 1 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(false)
			tc.scp.Logger = testLogger(t)
			srv := &Server{Policy: &StaticPolicy{CalledAETitles: []string{"RELAIS"}}, Handlers: Handlers{Store: rec.store}, Config: tc.scp}
			addr := startServer(t, srv)
			a, err := Dial(context.Background(), addr, DialParams{
				CallingAE: "TESTSCU", CalledAE: "RELAIS",
				Proposals: storageProposals(dcmgen.CTImageStorage, dcmgen.MultiFrameGrayscaleWordSC),
				Config:    tc.scu,
			})
			if err != nil {
				t.Fatal(err)
			}
			if st, err := a.Echo(context.Background()); err != nil || st != StatusSuccess {
				t.Fatalf("echo: %v %v", st, err)
			}
			for _, p := range files {
				if st := sendFile(t, a, p); st != StatusSuccess {
					t.Fatalf("store %s: status %v", p, st)
				}
				m, n, sum := dataSetHash(t, p)
				got := rec.get(m.MediaStorageSOPInstanceUID)
				if got == nil || got.size != n || got.sum != sum {
					t.Fatalf("%s: received data set differs from the file's (got %+v, want %d bytes)", p, got, n)
				}
				if got.req.TransferSyntaxUID != m.TransferSyntaxUID {
					t.Errorf("transfer syntax %s, want %s", got.req.TransferSyntaxUID, m.TransferSyntaxUID)
				}
			}
			if err := a.Release(context.Background()); err != nil {
				t.Fatalf("release: %v", err)
			}
		})
	}
}

// commitSCP is a Storage Commitment SCP that commits what its recorder holds.
func commitSCP(rec *recorder, reports chan<- error) func(context.Context, *Association, *CommitRequest) Status {
	return func(_ context.Context, a *Association, req *CommitRequest) Status {
		go func() {
			rep := &CommitReport{TransactionUID: req.TransactionUID}
			for _, r := range req.Refs {
				if rec.get(r.SOPInstanceUID) != nil {
					rep.Committed = append(rep.Committed, r)
				} else {
					r.FailureReason = FailureNoSuchObject
					rep.Failed = append(rep.Failed, r)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := a.SendCommitReport(ctx, rep)
			reports <- err
		}()
		return StatusSuccess
	}
}

func TestStorageCommitmentReportOnTheSameAssociation(t *testing.T) {
	rec := newRecorder(false)
	sent := make(chan error, 1)
	srv := &Server{Policy: &StaticPolicy{}, Handlers: Handlers{Store: rec.store, Commit: commitSCP(rec, sent)}}
	addr := startServer(t, srv)
	got := make(chan *CommitReport, 1)
	a, err := Dial(context.Background(), addr, DialParams{
		CallingAE: "SCU", CalledAE: "SCP",
		Proposals: append(storageProposals(dcmgen.CTImageStorage),
			Proposal{AbstractSyntax: StorageCommitmentSOPClass, TransferSyntaxes: []string{ImplicitVRLittleEndian}}),
		Handlers: Handlers{CommitReport: func(_ context.Context, _ *Association, rep *CommitReport) Status {
			got <- rep
			return StatusSuccess
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	p := filepath.Join(t.TempDir(), "ct.dcm")
	in := dcmgen.Instance{Rows: 32, Columns: 32}.Defaults()
	in.WriteFile(p)
	if st := sendFile(t, a, p); st != StatusSuccess {
		t.Fatal(st)
	}
	tx := dcmgen.UID("tx", t.Name())
	st, err := a.RequestCommit(context.Background(), &CommitRequest{TransactionUID: tx, Refs: []SOPRef{
		{SOPClassUID: in.SOPClassUID, SOPInstanceUID: in.SOPInstanceUID},
		{SOPClassUID: in.SOPClassUID, SOPInstanceUID: "1.2.3.4.5.404"},
	}})
	if err != nil || st != StatusSuccess {
		t.Fatalf("N-ACTION: %v %v", st, err)
	}
	select {
	case rep := <-got:
		if rep.TransactionUID != tx || len(rep.Committed) != 1 || rep.Committed[0].SOPInstanceUID != in.SOPInstanceUID ||
			len(rep.Failed) != 1 || rep.Failed[0].SOPInstanceUID != "1.2.3.4.5.404" || rep.Failed[0].FailureReason != FailureNoSuchObject {
			t.Fatalf("report %+v", rep)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no N-EVENT-REPORT")
	}
	if err := <-sent; err != nil {
		t.Fatalf("SCP sending report: %v", err)
	}
}

// failingReader yields data, then an error instead of io.EOF (as the
// store's reader does when a stored copy fails its hash check).
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestReadErrorAtTheEndIsReturnedAndThePeerGetsNothing: the sender reads one
// fragment ahead, so an error found at the end of the data set aborts the
// association before the last fragment: the peer discards it, and the error
// comes back wrapped for errors.Is.
func TestReadErrorAtTheEndIsReturnedAndThePeerGetsNothing(t *testing.T) {
	damaged := errors.New("damaged copy")
	for _, size := range []int{1000, 16384 - 6, 3 * (16384 - 6)} { // one fragment, exactly one, several
		rec := newRecorder(false)
		addr := startServer(t, &Server{Policy: &StaticPolicy{}, Handlers: Handlers{Store: rec.store}, Config: Config{MaxPDULength: 16384}})
		a, err := Dial(context.Background(), addr, DialParams{CallingAE: "A", CalledAE: "B", Proposals: storageProposals(dcmgen.CTImageStorage)})
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.Store(context.Background(), StoreParams{SOPClassUID: dcmgen.CTImageStorage, SOPInstanceUID: "1.2.3",
			TransferSyntaxUID: ExplicitVRLittleEndian}, &failingReader{data: make([]byte, size), err: damaged})
		if !errors.Is(err, damaged) {
			t.Fatalf("size %d: got %v, want the reader's error", size, err)
		}
		<-a.Done()
		for i := 0; i < 500 && rec.get("aborted:1.2.3") == nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if rec.get("1.2.3") != nil || rec.get("aborted:1.2.3") == nil {
			t.Fatalf("size %d: the peer did not discard the data set", size)
		}
	}
}
