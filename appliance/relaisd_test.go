package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/testdata/dcmgen"
	"github.com/relais/relais/testdata/peers"
)

// Modality → Relais → Orthanc, with DCMTK's storescu as the modality and a
// real Orthanc as the reading center.

func TestUnknownCallerIsRejectedRecordedAndCanBeApproved(t *testing.T) {
	peers.Require(t, "storescu")
	b := startBox(t, testConfig(peers.FreePort(t), nil, false), boxOptions{})
	c := series(t, t.TempDir(), 2, 32, 1, nil)
	out, err := b.storescu("NEWCT", c.dir)
	if err == nil || !strings.Contains(string(out), "Calling AE Title Not Recognized") {
		t.Fatalf("unknown caller: err %v\n%s", err, out)
	}
	ctx := context.Background()
	evs, err := b.client.Events(ctx, control.EventQuery{Kinds: []string{"reject"}})
	if err != nil || len(evs) == 0 || !strings.Contains(evs[0].Message, "NEWCT") {
		t.Fatalf("no reject event: %v %+v", err, evs)
	}
	st, _ := b.client.Status(ctx)
	if len(st.Callers) != 1 || st.Callers[0].AETitle != "NEWCT" || !slices.ContainsFunc(st.Alarms, func(a control.Alarm) bool { return a.Key == "a" }) {
		t.Fatalf("caller not shown for approval: %+v %+v", st.Callers, st.Alarms)
	}
	if err := b.client.Approve(ctx, "NEWCT", st.Callers[0].Address); err != nil {
		t.Fatal(err)
	}
	if out, err := b.storescu("NEWCT", c.dir); err != nil {
		t.Fatalf("approved caller: %v\n%s", err, out)
	}
	if st, _ := b.client.Status(ctx); st.Stored.Instances != 2 || len(st.Callers) != 0 {
		t.Fatalf("after approval: %+v", st)
	}
	cfg, _ := b.client.Config(ctx)
	if !slices.ContainsFunc(cfg.Modalities, func(m config.Modality) bool { return m.AETitle == "NEWCT" }) {
		t.Fatal("approval not saved in the configuration")
	}
}

func TestBadConfigurationIsRefusedFieldByField(t *testing.T) {
	b := startBox(t, testConfig(peers.FreePort(t), nil, false), boxOptions{})
	ctx := context.Background()
	cfg, _ := b.client.Config(ctx)
	cfg.AETitle = "THIS AE TITLE IS FAR TOO LONG"
	cfg.Destinations = []config.Destination{{Name: "x", AETitle: "PACS", Host: "10.0.0.1", Port: 0}}
	err := b.client.SetConfig(ctx, cfg)
	var ce *control.Error
	if !errors.As(err, &ce) || len(ce.Fields) != 2 || ce.Fields[0].Field != "ae_title" || ce.Fields[1].Field != "destinations[0].port" {
		t.Fatalf("got %v %+v", err, ce)
	}
	if got, _ := b.client.Config(ctx); got.AETitle != "RELAIS" {
		t.Fatal("a refused configuration was applied")
	}
}

// TestStudiesReachOrthancBitExact: a 300-slice CT series, a thousand small
// instances and a 262 MB multi-frame, sent by storescu, forwarded to
// Orthanc; every file Orthanc stores equals its source.
func TestStudiesReachOrthancBitExact(t *testing.T) {
	if testing.Short() {
		t.Skip("sends ~420 MB: not in -short")
	}
	peers.Require(t, "storescu")
	dir := t.TempDir()
	ct := series(t, filepath.Join(dir, "ct"), 300, 512, 101, nil)
	small := series(t, filepath.Join(dir, "small"), 1000, 64, 102, func(in *dcmgen.Instance) { in.Modality = "CR" })
	big := series(t, filepath.Join(dir, "big"), 1, 512, 103, func(in *dcmgen.Instance) {
		in.Frames, in.SOPClassUID, in.Modality = 500, dcmgen.MultiFrameGrayscaleWordSC, "OT"
	})
	o := peers.StartOrthanc(t, peers.OrthancOptions{})
	b := startBox(t, testConfig(peers.FreePort(t), o, false), boxOptions{})
	for _, c := range []*corpus{ct, small, big} {
		if out, err := b.storescu("STORESCU", c.dir); err != nil {
			t.Fatalf("storescu: %v\n%s", err, out)
		}
	}
	all := slices.Concat(ct.files, small.files, big.files)
	waitOrthanc(t, o, len(all), 5*time.Minute)
	sameAtOrthanc(t, o, all)
	st, _ := b.client.Status(context.Background())
	if len(st.Destinations) != 1 || st.Destinations[0].QueueDepth != 0 || st.Destinations[0].Delivered != len(all) {
		t.Fatalf("status after delivery: %+v", st.Destinations)
	}
}

// TestOrthancStoppedMidForwardGetsEverythingOnceInOrder stops the reading
// center while a series is being forwarded and restarts it later.
func TestOrthancStoppedMidForwardGetsEverythingOnceInOrder(t *testing.T) {
	peers.Require(t, "storescu")
	c := series(t, t.TempDir(), 200, 256, 201, nil)
	o := peers.StartOrthanc(t, peers.OrthancOptions{})
	cfg := testConfig(peers.FreePort(t), o, false)
	cfg.Destinations[0].Paused = true
	b := startBox(t, cfg, boxOptions{})
	if out, err := b.storescu("STORESCU", c.dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	ctx := context.Background()
	if err := b.client.Resume(ctx, "center"); err != nil {
		t.Fatal(err)
	}
	peers.Eventually(t, time.Minute, "some instances forwarded", func() (bool, string) {
		n, _ := o.InstanceCount()
		return n >= 20, fmt.Sprint(n)
	})
	o.Stop()
	peers.Eventually(t, time.Minute, "the box notices", func() (bool, string) {
		st, _ := b.client.Status(ctx)
		return len(st.Destinations) == 1 && st.Destinations[0].State == "retrying", fmt.Sprintf("%+v", st.Destinations)
	})
	time.Sleep(2 * time.Second)
	o.Start()
	waitOrthanc(t, o, len(c.files), 2*time.Minute)
	arrived, err := o.Arrivals()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(arrived, c.uids) {
		t.Fatalf("Orthanc got %d instances in this order:\n%v\nwant %d in series order", len(arrived), arrived, len(c.uids))
	}
	sameAtOrthanc(t, o, c.files)
}

// TestUrgentStudyOvertakesTheBacklog: with a backlog queued for a stopped
// destination, an urgent study received later goes first when it comes back.
func TestUrgentStudyOvertakesTheBacklog(t *testing.T) {
	peers.Require(t, "storescu")
	dir := t.TempDir()
	backlog := series(t, filepath.Join(dir, "backlog"), 60, 64, 301, nil)
	urgent := series(t, filepath.Join(dir, "urgent"), 10, 64, 302, nil)
	o := peers.StartOrthanc(t, peers.OrthancOptions{})
	o.Stop()
	cfg := testConfig(peers.FreePort(t), o, false)
	cfg.Urgent = []config.UrgentRule{{CallingAETitle: "CT_URG"}}
	b := startBox(t, cfg, boxOptions{})
	if out, err := b.storescu("STORESCU", backlog.dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	if out, err := b.storescu("CT_URG", urgent.dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	o.Start()
	ctx := context.Background()
	b.client.Retry(ctx, "center")
	waitOrthanc(t, o, len(backlog.files)+len(urgent.files), 2*time.Minute)
	arrived, _ := o.Arrivals()
	if !slices.Equal(arrived[:len(urgent.uids)], urgent.uids) {
		t.Fatalf("first arrivals %v, want the urgent study %v", arrived[:len(urgent.uids)], urgent.uids)
	}
	ss, _ := b.client.Studies(ctx, 10)
	for _, s := range ss {
		if s.Urgent != (s.StudyInstanceUID == dcmgen.UID("study", uint64(302))) {
			t.Errorf("study %s urgent=%v", s.StudyInstanceUID, s.Urgent)
		}
	}
}

// TestStorageCommitmentBothWays: Orthanc commits a forwarded study, which
// turns committed in the box; a modality asking the box for commitment gets
// a correct report.
func TestStorageCommitmentBothWays(t *testing.T) {
	port := peers.FreePort(t)
	o := peers.StartOrthanc(t, peers.OrthancOptions{Modalities: map[string]int{"RELAIS": port}})
	b := startBox(t, testConfig(port, o, true), boxOptions{})
	c := series(t, t.TempDir(), 5, 64, 401, nil)

	reports := make(chan *dimse.CommitReport, 1)
	a, err := modality(t, b.addr(), "CT1", dimse.Handlers{CommitReport: func(_ context.Context, _ *dimse.Association, rep *dimse.CommitReport) dimse.Status {
		reports <- rep
		return dimse.StatusSuccess
	}}, dcmgen.CTImageStorage)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var refs []dimse.SOPRef
	for i, f := range c.files {
		if st, err := sendFile(a, f); err != nil || st != dimse.StatusSuccess {
			t.Fatalf("store: %v %v", st, err)
		}
		refs = append(refs, dimse.SOPRef{SOPClassUID: dcmgen.CTImageStorage, SOPInstanceUID: c.uids[i]})
	}
	unknown := dimse.SOPRef{SOPClassUID: dcmgen.CTImageStorage, SOPInstanceUID: "1.2.3.4.404"}
	st, err := a.RequestCommit(context.Background(), &dimse.CommitRequest{TransactionUID: "1.2.3.4.5", Refs: append(refs, unknown)})
	if err != nil || st != dimse.StatusSuccess {
		t.Fatalf("N-ACTION: %v %v", st, err)
	}
	select {
	case rep := <-reports:
		if len(rep.Committed) != len(refs) || len(rep.Failed) != 1 || rep.Failed[0].SOPInstanceUID != unknown.SOPInstanceUID ||
			rep.Failed[0].FailureReason != dimse.FailureNoSuchObject || rep.TransactionUID != "1.2.3.4.5" {
			t.Fatalf("report %+v", rep)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no commitment report from the box")
	}

	waitOrthanc(t, o, len(c.files), time.Minute)
	study := dcmgen.UID("study", uint64(401))
	peers.Eventually(t, time.Minute, "study committed at Orthanc", func() (bool, string) {
		s, _, err := b.client.Study(context.Background(), study)
		return err == nil && s.State == "committed", fmt.Sprintf("%+v %v", s, err)
	})
}

// TestParallelSendersAllStored has four storescu at once.
func TestParallelSendersAllStored(t *testing.T) {
	peers.Require(t, "storescu")
	b := startBox(t, testConfig(peers.FreePort(t), nil, false), boxOptions{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		c := series(t, t.TempDir(), 40, 128, uint64(500+i), nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := b.storescu("STORESCU", c.dir); err != nil {
				errs <- fmt.Errorf("%v\n%s", err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st, _ := b.client.Status(context.Background()); st.Stored.Instances != 160 || st.Stored.Studies != 4 {
		t.Fatalf("stored %+v", st.Stored)
	}
}

// TestMetricsOverTCPForTheRegionalTeam: with MetricsAddr set, Prometheus
// text is served over TCP, and nothing else of the control API is.
func TestMetricsOverTCPForTheRegionalTeam(t *testing.T) {
	port := peers.FreePort(t)
	dir := t.TempDir()
	cfg := testConfig(peers.FreePort(t), nil, false)
	if err := config.Save(filepath.Join(dir, "relais.json"), cfg); err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{DataDir: dir, Listen: fmt.Sprintf("127.0.0.1:%d", cfg.Port), MetricsAddr: fmt.Sprintf("127.0.0.1:%d", port)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	peers.WaitForPort(t, cfg.Port)
	rsp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rsp.Body)
	rsp.Body.Close()
	if !strings.Contains(string(b), `relais_received_instances_total{calling_ae="CT1"} 0`) || !strings.Contains(string(b), "# TYPE relais_build_info gauge") {
		t.Fatalf("metrics:\n%s", b)
	}
	if rsp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/status", port)); err != nil || rsp.StatusCode != 404 {
		t.Fatalf("control API reachable over TCP: %v %v", rsp.Status, err)
	}
}
