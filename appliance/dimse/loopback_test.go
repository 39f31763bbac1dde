package dimse

import (
	"context"
	"crypto/sha256"
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

func TestCalledAEOtherThanOursIsRejected(t *testing.T) {
	srv := &Server{Policy: &StaticPolicy{CalledAETitles: []string{"RELAIS"}}}
	addr := startServer(t, srv)
	_, err := Dial(context.Background(), addr, DialParams{CallingAE: "X", CalledAE: "OTHER", Proposals: storageProposals()})
	rj, ok := err.(interface{ Unwrap() error })
	_ = rj
	var r *Rejection
	if !ok || !asRejection(err, &r) || *r != *RejectCalledAE {
		t.Fatalf("got %v, want called AE rejection", err)
	}
}

func asRejection(err error, r **Rejection) bool {
	for err != nil {
		if x, ok := err.(*Rejection); ok {
			*r = x
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
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

func TestHashHelperMatchesWholeFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.dcm")
	dcmgen.Instance{Rows: 16, Columns: 16}.WriteFile(p)
	_, b := dataSet(t, p)
	_, n, sum := dataSetHash(t, p)
	if int64(len(b)) != n || sha256.Sum256(b) != sum {
		t.Fatal("helpers disagree")
	}
}
