package appliance

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/appliance/part10"
	"github.com/relais/relais/store"
	"github.com/relais/relais/testdata/dcmgen"
	"github.com/relais/relais/testdata/peers"
)

// pacs is a destination made of our own SCP on loopback, taking only the
// transfer syntaxes given (all when none), recording what it receives.
type pacs struct {
	port   int
	mu     sync.Mutex
	got    map[string]int
	assocs map[*dimse.Association]bool // that stored something
}

type pacsSink struct {
	p   *pacs
	uid string
}

func (s *pacsSink) Write(b []byte) (int, error) { return len(b), nil }
func (s *pacsSink) Abort(error)                 {}
func (s *pacsSink) Close() dimse.Status {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	s.p.got[s.uid]++
	return dimse.StatusSuccess
}

func startPACS(t *testing.T, ae string, syntaxes ...string) *pacs {
	t.Helper()
	p := &pacs{got: map[string]int{}, assocs: map[*dimse.Association]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.port = ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	srv := &dimse.Server{Policy: &dimse.StaticPolicy{CalledAETitles: []string{ae}, TransferSyntaxes: syntaxes},
		Handlers: dimse.Handlers{Store: func(_ context.Context, a *dimse.Association, req *dimse.StoreRequest) dimse.StoreSink {
			p.mu.Lock()
			p.assocs[a] = true
			p.mu.Unlock()
			return &pacsSink{p: p, uid: req.SOPInstanceUID}
		}}}
	go func() { srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

func (p *pacs) count() (instances, copies int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range p.got {
		instances++
		copies += n
	}
	return
}

// TestDeadDestinationBlocksNoOtherAndFiltersApply: one destination is down
// for good; the other gets everything meant for it at once; a filtered
// destination gets only its modality.
func TestDeadDestinationBlocksNoOtherAndFiltersApply(t *testing.T) {
	alive := startPACS(t, "ALIVE")
	onlyMR := startPACS(t, "MRONLY")
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Destinations = []config.Destination{
		{Name: "dead", AETitle: "DEAD", Host: "127.0.0.1", Port: peers.FreePort(t)},
		{Name: "alive", AETitle: "ALIVE", Host: "127.0.0.1", Port: alive.port, Parallel: 2},
		{Name: "mr", AETitle: "MRONLY", Host: "127.0.0.1", Port: onlyMR.port, Only: config.Match{Modalities: []string{"MR"}}},
	}
	b := startBox(t, cfg, boxOptions{})
	ct := series(t, t.TempDir(), 20, 64, 1001, nil)
	mr := series(t, t.TempDir(), 5, 64, 1002, func(in *dcmgen.Instance) { in.Modality = "MR" })
	a, err := modality(t, b.addr(), "CT1", dimse.Handlers{}, dcmgen.CTImageStorage)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range append(ct.files, mr.files...) {
		if st, err := sendFile(a, f); err != nil || st != dimse.StatusSuccess {
			t.Fatal(st, err)
		}
	}
	a.Close()
	peers.Eventually(t, time.Minute, "alive destination served", func() (bool, string) {
		n, copies := alive.count()
		m, _ := onlyMR.count()
		return n == 25 && copies == 25 && m == 5, fmt.Sprintf("alive %d (%d copies), mr %d", n, copies, m)
	})
	ctx := context.Background()
	peers.Eventually(t, time.Minute, "dead destination shown retrying with its reason", func() (bool, string) {
		st, _ := b.client.Status(ctx)
		for _, d := range st.Destinations {
			if d.Name == "dead" {
				return d.State == "retrying" && d.QueueDepth == 25 && strings.Contains(d.LastError, "refused"), fmt.Sprintf("%+v", d)
			}
		}
		return false, "no status"
	})
	if m, _ := onlyMR.count(); m != 5 {
		t.Fatalf("filtered destination got %d instances, want the 5 MR", m)
	}
}

// TestQueueGoesOutOnOneAssociation: a queue of several lease batches goes
// to the destination on one association, as storescu sends a series, not
// on one per batch.
func TestQueueGoesOutOnOneAssociation(t *testing.T) {
	dest := startPACS(t, "CENTER")
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Destinations = []config.Destination{{Name: "center", AETitle: "CENTER", Host: "127.0.0.1", Port: dest.port, Paused: true}}
	b := startBox(t, cfg, boxOptions{})
	ct := series(t, t.TempDir(), 100, 64, 1003, nil) // over three batches of 32
	a, err := modality(t, b.addr(), "CT1", dimse.Handlers{}, dcmgen.CTImageStorage)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range ct.files {
		if st, err := sendFile(a, f); err != nil || st != dimse.StatusSuccess {
			t.Fatal(st, err)
		}
	}
	a.Close()
	if err := b.client.Resume(context.Background(), "center"); err != nil {
		t.Fatal(err)
	}
	peers.Eventually(t, time.Minute, "every instance delivered", func() (bool, string) {
		n, copies := dest.count()
		return n == 100 && copies == 100, fmt.Sprintf("%d instances (%d copies)", n, copies)
	})
	dest.mu.Lock()
	defer dest.mu.Unlock()
	if len(dest.assocs) != 1 {
		t.Fatalf("100 instances came on %d associations, want 1", len(dest.assocs))
	}
}

// TestRefusedCompressedSyntaxStaysQueuedNeverConverted: a destination that
// takes only uncompressed syntaxes gets the uncompressed instance; the JPEG
// one waits, unchanged, with a clear error.
func TestRefusedCompressedSyntaxStaysQueuedNeverConverted(t *testing.T) {
	peers.Require(t, "dcmcjpeg")
	p := startPACS(t, "PLAIN", dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian)
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Destinations = []config.Destination{{Name: "plain", AETitle: "PLAIN", Host: "127.0.0.1", Port: p.port}}
	b := startBox(t, cfg, boxOptions{})
	dir := t.TempDir()
	c := series(t, dir, 2, 64, 1101, nil)
	jpeg := dir + "/jpeg.dcm"
	if out, err := peers.DCMTK(t, "dcmcjpeg", "+e1", c.files[1], jpeg); err != nil {
		t.Fatalf("dcmcjpeg: %v\n%s", err, out)
	}
	for _, f := range []string{c.files[0], jpeg} {
		name, args := "storescu", []string{"-aec", "RELAIS", "-aet", "STORESCU", "-xs", "127.0.0.1", fmt.Sprint(b.port), f}
		if out, err := peers.DCMTK(t, name, args...); err != nil {
			t.Fatalf("storescu: %v\n%s", err, out)
		}
	}
	ctx := context.Background()
	jpegUID := c.uids[1]
	peers.Eventually(t, time.Minute, "JPEG instance kept, parked with a reason", func() (bool, string) {
		es, _ := b.a.Store().Entries(jpegUID)
		return len(es) == 1 && es[0].State == store.Parked && strings.Contains(es[0].LastError, "does not accept JPEG Lossless"), fmt.Sprintf("%+v", es)
	})
	if n, _ := p.count(); n != 1 {
		t.Fatalf("destination got %d instances, want only the uncompressed one", n)
	}
	// The study's line comes once the batch is done, a moment after the
	// parking.
	peers.Eventually(t, 30*time.Second, "the parking and the study's line in the events", func() (bool, string) {
		evs, err := b.client.Events(ctx, controlQuery("forward"))
		return err == nil && hasEvent(evs, "stays stored, unchanged") && hasEvent(evs, "parked at plain") &&
			hasEvent(evs, "delivered to plain but for 1 parked instance(s): 1 of 2"), fmt.Sprintf("%+v %v", evs, err)
	})
}

// TestBadDataSetsGetClearStatusesAndChangeNothing: a data set whose SOP
// Instance UID differs from the command's gets 0xA900; one that cannot be
// read gets 0xC000; neither is stored; both are logged.
func TestBadDataSetsGetClearStatusesAndChangeNothing(t *testing.T) {
	b := startBox(t, testConfig(peers.FreePort(t), nil, false), boxOptions{})
	a, err := modality(t, b.addr(), "CT1", dimse.Handlers{}, dcmgen.CTImageStorage)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	c := series(t, t.TempDir(), 1, 16, 1201, nil)
	_, ds, err := part10.ReadDataSet(c.files[0])
	if err != nil {
		t.Fatal(err)
	}
	store := func(uid string, data []byte) dimse.Status {
		st, err := a.Store(context.Background(), dimse.StoreParams{SOPClassUID: dcmgen.CTImageStorage, SOPInstanceUID: uid,
			TransferSyntaxUID: dimse.ExplicitVRLittleEndian}, bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := store("1.2.3.999", ds); st != dimse.StatusDataSetDoesNotMatchClass {
		t.Errorf("UID mismatch answered %v, want 0xA900", st)
	}
	if st := store("1.2.3.998", []byte("this is not a DICOM data set at all")); st != dimse.StatusCannotUnderstand {
		t.Errorf("garbage answered %v, want 0xC000", st)
	}
	if st := store(c.uids[0], ds); st != dimse.StatusSuccess {
		t.Errorf("good instance answered %v", st)
	}
	ctx := context.Background()
	st, _ := b.client.Status(ctx)
	if st.Stored.Instances != 1 {
		t.Fatalf("stored %d instances, want only the good one", st.Stored.Instances)
	}
	evs, _ := b.client.Events(ctx, controlQuery("store"))
	var msgs []string
	for _, e := range evs {
		msgs = append(msgs, e.Message)
	}
	all := strings.Join(msgs, "\n")
	if !strings.Contains(all, "differs from the command's") || !strings.Contains(all, "cannot be read") {
		t.Fatalf("events:\n%s", all)
	}
}

// TestLearningModeAcceptsAndRecordsNewCallers is the installation switch.
func TestLearningModeAcceptsAndRecordsNewCallers(t *testing.T) {
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Learning = true
	b := startBox(t, cfg, boxOptions{})
	a, err := modality(t, b.addr(), "NEWUS", dimse.Handlers{}, dcmgen.CTImageStorage)
	if err != nil {
		t.Fatalf("learning mode refused a new caller: %v", err)
	}
	a.Close()
	cs, _ := b.client.Callers(context.Background())
	if len(cs) != 1 || cs[0].AETitle != "NEWUS" || !cs[0].Learned {
		t.Fatalf("callers %+v", cs)
	}
}

// TestSameInstanceFromTwoSendersIsADuplicateNotAConflict: a modality and a
// PACS re-sending the same instance store it once.
func TestSameInstanceFromTwoSendersIsADuplicateNotAConflict(t *testing.T) {
	b := startBox(t, testConfig(peers.FreePort(t), nil, false), boxOptions{})
	c := series(t, t.TempDir(), 3, 32, 1301, nil)
	for _, ae := range []string{"CT1", "STORESCU"} {
		a, err := modality(t, b.addr(), ae, dimse.Handlers{}, dcmgen.CTImageStorage)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range c.files {
			if st, err := sendFile(a, f); err != nil || st != dimse.StatusSuccess {
				t.Fatal(st, err)
			}
		}
		a.Close()
	}
	st, _ := b.client.Status(context.Background())
	if st.Stored.Instances != 3 || st.Stored.Conflicts != 0 {
		t.Fatalf("stored %+v, want 3 instances and no conflict", st.Stored)
	}
}
