package dimse

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/relais/relais/appliance/part10"
	"github.com/relais/relais/testdata/dcmgen"
	"github.com/relais/relais/testdata/peers"
)

var (
	bigOnce sync.Once
	bigPath string
	bigErr  error
	bigDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if bigDir != "" {
		os.RemoveAll(bigDir)
	}
	os.Exit(code)
}

// bigInstance is a ~262 MB multi-frame instance (500 frames of 512×512×16
// bits), generated once per test run.
func bigInstance(t testing.TB) string {
	t.Helper()
	bigOnce.Do(func() {
		bigDir, bigErr = os.MkdirTemp("", "relais-big-")
		if bigErr != nil {
			return
		}
		bigPath = filepath.Join(bigDir, "multiframe.dcm")
		_, bigErr = dcmgen.Instance{Rows: 512, Columns: 512, Frames: 500, Seed: 250,
			SOPClassUID: dcmgen.MultiFrameGrayscaleWordSC, Modality: "OT"}.WriteFile(bigPath)
	})
	if bigErr != nil {
		t.Fatal(bigErr)
	}
	return bigPath
}

// sameDataSet asserts that a Part 10 stream holds the same data set as a file.
func sameDataSet(t testing.TB, got io.Reader, want string) {
	t.Helper()
	gm, _, br, err := part10.ReadHeader(got)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, br)
	if err != nil {
		t.Fatal(err)
	}
	wm, wn, wsum := dataSetHash(t, want)
	if gm.TransferSyntaxUID != wm.TransferSyntaxUID || n != wn || [32]byte(h.Sum(nil)) != wsum {
		t.Fatalf("%s: peer holds %d bytes in %s, the file's data set is %d bytes in %s (or hashes differ)",
			filepath.Base(want), n, gm.TransferSyntaxUID, wn, wm.TransferSyntaxUID)
	}
}

func dialPeer(t testing.TB, addr, called string, cfg Config, h Handlers, sopClasses ...string) *Association {
	t.Helper()
	ps := storageProposals(sopClasses...)
	ps = append(ps, Proposal{AbstractSyntax: StorageCommitmentSOPClass, TransferSyntaxes: []string{ExplicitVRLittleEndian, ImplicitVRLittleEndian}})
	cfg.Logger = testLogger(t)
	a, err := Dial(context.Background(), addr, DialParams{CallingAE: "RELAISSCU", CalledAE: called, Proposals: ps, Config: cfg, Handlers: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func smallCorpus(t testing.TB) []string {
	t.Helper()
	dir := t.TempDir()
	var files []string
	for i, in := range []dcmgen.Instance{
		{Rows: 512, Columns: 512, InstanceNumber: 1, Seed: 11},
		{Rows: 64, Columns: 64, InstanceNumber: 2, Seed: 11},
		{Rows: 64, Columns: 64, InstanceNumber: 3, Seed: 11, TransferSyntax: dcmgen.ImplicitVRLittleEndian},
	} {
		p := filepath.Join(dir, strconv.Itoa(i)+".dcm")
		if _, err := in.WriteFile(p); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	return files
}

func TestSCUToStorescpStoresBitExact(t *testing.T) {
	peers.Require(t, "storescp")
	files := smallCorpus(t)
	out := t.TempDir()
	port := peers.FreePort(t)
	peers.Start(t, "storescp", "+B", "-uf", "--max-pdu", "16384", "-aet", "STORESCP", "-od", out, strconv.Itoa(port))
	peers.WaitForPort(t, port)
	a := dialPeer(t, fmt.Sprintf("127.0.0.1:%d", port), "STORESCP", Config{}, Handlers{}, dcmgen.CTImageStorage)
	if got := a.PeerMaxPDU(); got != 16384 {
		t.Errorf("peer max PDU %d, want 16384", got)
	}
	for _, f := range files {
		if st := sendFile(t, a, f); st != StatusSuccess {
			t.Fatalf("%s: %v", f, st)
		}
	}
	if err := a.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		m, _ := dataSet(t, f)
		// storescp names files <modality>.<SOP Instance UID>[.dcm].
		matches, _ := filepath.Glob(filepath.Join(out, "*"+m.MediaStorageSOPInstanceUID+"*"))
		if len(matches) != 1 {
			t.Fatalf("storescp wrote %v for %s", matches, m.MediaStorageSOPInstanceUID)
		}
		got, err := os.Open(matches[0])
		if err != nil {
			t.Fatal(err)
		}
		sameDataSet(t, got, f)
		got.Close()
	}
}

func TestSCUToOrthancStoresBitExactAtBothPDUSizes(t *testing.T) {
	files := smallCorpus(t)
	for _, maxPDU := range []int{16384, 131072} {
		t.Run(strconv.Itoa(maxPDU), func(t *testing.T) {
			o := peers.StartOrthanc(t, peers.OrthancOptions{MaxPDU: maxPDU})
			a := dialPeer(t, o.Addr(), o.AET, Config{}, Handlers{}, dcmgen.CTImageStorage)
			if got := a.PeerMaxPDU(); got != uint32(maxPDU) {
				t.Errorf("Orthanc's max PDU %d, want %d", got, maxPDU)
			}
			for _, f := range files {
				if st := sendFile(t, a, f); st != StatusSuccess {
					t.Fatalf("%s: %v", f, st)
				}
			}
			a.Release(context.Background())
			for _, f := range files {
				m, _ := dataSet(t, f)
				rc, err := o.File(m.MediaStorageSOPInstanceUID)
				if err != nil {
					t.Fatal(err)
				}
				sameDataSet(t, rc, f)
				rc.Close()
			}
		})
	}
}

// TestLargeMultiframeReachesOrthancAndOwnSCPBitExact sends the 262 MB
// instance to Orthanc (16 KiB PDUs) and to our own SCP advertising an
// unlimited PDU.
func TestLargeMultiframeReachesOrthancAndOwnSCPBitExact(t *testing.T) {
	if testing.Short() {
		t.Skip("262 MB transfer: not in -short")
	}
	big := bigInstance(t)
	m, n, sum := dataSetHash(t, big)

	t.Run("orthanc-16KiB", func(t *testing.T) {
		o := peers.StartOrthanc(t, peers.OrthancOptions{MaxPDU: 16384})
		a := dialPeer(t, o.Addr(), o.AET, Config{}, Handlers{}, m.MediaStorageSOPClassUID)
		if st := sendFile(t, a, big); st != StatusSuccess {
			t.Fatalf("status %v", st)
		}
		a.Release(context.Background())
		rc, err := o.File(m.MediaStorageSOPInstanceUID)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		sameDataSet(t, rc, big)
	})
	t.Run("own-scp-unlimited", func(t *testing.T) {
		rec := newRecorder(false)
		addr := startServer(t, &Server{Policy: &StaticPolicy{}, Handlers: Handlers{Store: rec.store}, Config: Config{Unlimited: true}})
		a := dialPeer(t, addr, "RELAIS", Config{}, Handlers{}, m.MediaStorageSOPClassUID)
		if a.PeerMaxPDU() != 0 {
			t.Fatalf("peer max PDU %d, want 0 (unlimited)", a.PeerMaxPDU())
		}
		if st := sendFile(t, a, big); st != StatusSuccess {
			t.Fatalf("status %v", st)
		}
		got := rec.get(m.MediaStorageSOPInstanceUID)
		if got == nil || got.size != n || got.sum != sum {
			t.Fatalf("received %+v, want %d bytes", got, n)
		}
	})
}

// TestOrthancCommitsStoredInstancesAndFailsUnknownOne asks Orthanc for
// Storage Commitment; Orthanc reports on a new association to our SCP.
func TestOrthancCommitsStoredInstancesAndFailsUnknownOne(t *testing.T) {
	files := smallCorpus(t)
	reports := make(chan *CommitReport, 1)
	var roles []RoleSelection
	var mu sync.Mutex
	scp := &Server{
		Policy: &StaticPolicy{CalledAETitles: []string{"RELAISSCU"}, AbstractSyntaxes: []string{StorageCommitmentSOPClass, VerificationSOPClass}},
		Handlers: Handlers{CommitReport: func(_ context.Context, a *Association, rep *CommitReport) Status {
			mu.Lock()
			roles = a.Accepted().UserInfo.Roles
			mu.Unlock()
			reports <- rep
			return StatusSuccess
		}},
		Config: Config{Logger: testLogger(t)},
	}
	addr := startServer(t, scp)
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	o := peers.StartOrthanc(t, peers.OrthancOptions{Modalities: map[string]int{"RELAISSCU": p}})

	a := dialPeer(t, o.Addr(), o.AET, Config{}, Handlers{}, dcmgen.CTImageStorage)
	var refs []SOPRef
	for _, f := range files {
		if st := sendFile(t, a, f); st != StatusSuccess {
			t.Fatalf("%s: %v", f, st)
		}
		m, _ := dataSet(t, f)
		refs = append(refs, SOPRef{SOPClassUID: m.MediaStorageSOPClassUID, SOPInstanceUID: m.MediaStorageSOPInstanceUID})
	}
	unknown := SOPRef{SOPClassUID: dcmgen.CTImageStorage, SOPInstanceUID: dcmgen.UID("never sent")}
	tx := dcmgen.UID("transaction", t.Name())
	st, err := a.RequestCommit(context.Background(), &CommitRequest{TransactionUID: tx, Refs: append(refs, unknown)})
	if err != nil || st != StatusSuccess {
		t.Fatalf("N-ACTION: %v %v", st, err)
	}
	a.Release(context.Background())
	select {
	case rep := <-reports:
		if rep.TransactionUID != tx {
			t.Errorf("transaction %s, want %s", rep.TransactionUID, tx)
		}
		committed := map[string]bool{}
		for _, r := range rep.Committed {
			committed[r.SOPInstanceUID] = true
		}
		for _, r := range refs {
			if !committed[r.SOPInstanceUID] {
				t.Errorf("%s not committed: %+v", r.SOPInstanceUID, rep)
			}
		}
		if len(rep.Failed) != 1 || rep.Failed[0].SOPInstanceUID != unknown.SOPInstanceUID || rep.Failed[0].FailureReason == 0 {
			t.Errorf("failed list %+v, want only %s with a reason", rep.Failed, unknown.SOPInstanceUID)
		}
		t.Logf("Orthanc reported %d committed, %d failed (reason 0x%04X); roles %+v", len(rep.Committed), len(rep.Failed), rep.Failed[0].FailureReason, roles)
	case <-time.After(60 * time.Second):
		t.Fatal("no N-EVENT-REPORT from Orthanc within 60 s")
	}
}
