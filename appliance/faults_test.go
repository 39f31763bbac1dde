package appliance

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/store"
	"github.com/relais/relais/testdata/peers"
)

// Faults a hospital lives with, each injected with a real peer: what was
// acknowledged stays, one bad instance holds back nothing, and the health
// line says what is wrong and what to do.

// destStatus returns the status of one destination.
func destStatus(t testing.TB, b *box, name string) (control.DestinationStatus, control.Status) {
	t.Helper()
	st, err := b.client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range st.Destinations {
		if d.Name == name {
			return d, st
		}
	}
	return control.DestinationStatus{}, st
}

// alarmWith returns the first alarm whose message holds every part.
func alarmWith(st control.Status, parts ...string) (control.Alarm, bool) {
	for _, a := range st.Alarms {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(a.Message, p)
		}
		if ok {
			return a, true
		}
	}
	return control.Alarm{}, false
}

// storescp starts DCMTK's storescp as a destination with AE title aet,
// writing what it receives (bit-preserving) into dir.
func storescp(t testing.TB, aet, dir string, extra ...string) int {
	t.Helper()
	peers.Require(t, "storescp")
	port := peers.FreePort(t)
	args := append([]string{"-aet", aet, "+B", "-od", dir}, extra...)
	peers.Start(t, "storescp", append(args, strconv.Itoa(port))...)
	peers.WaitForPort(t, port)
	return port
}

func countFiles(dir string) int {
	es, _ := os.ReadDir(dir)
	return len(es)
}

// TestHeldAndUnroutedStudiesAreNeverPurged: with no destination, and with
// one whose filter takes nothing, purge, the retention loop, aged studies
// and a watermark that wants everything gone remove nothing.
func TestHeldAndUnroutedStudiesAreNeverPurged(t *testing.T) {
	peers.Require(t, "storescu")
	var offset atomic.Int64
	so := store.DefaultOptions()
	so.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Retention = config.Retention{MaxAgeDays: 1, HighWatermarkPercent: 1, LowWatermarkPercent: 0}
	b := startBox(t, cfg, boxOptions{store: &so})
	c := series(t, t.TempDir(), 3, 32, 4101, nil)
	if out, err := b.storescu("CT1", c.dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	offset.Store(int64(40 * 24 * time.Hour)) // the studies are now 40 days old
	ctx := context.Background()
	check := func(when string) {
		t.Helper()
		for _, uid := range c.uids {
			if _, err := b.a.Store().Instance(uid); err != nil {
				t.Fatalf("%s: instance %s gone: %v", when, uid, err)
			}
		}
	}
	if r, err := b.client.Purge(ctx); err != nil || r.Instances != 0 {
		t.Fatalf("purge with no destination: %+v, %v", r, err)
	}
	check("after relais purge with no destination")
	// What the retention loop runs (every 10 minutes, and when the disk
	// fills), with the configuration's policy: its result, not a sleep.
	c0 := b.a.Config()
	if r, err := b.a.Purge(ctx, purgePolicy(&c0)); err != nil || r.Instances != 0 || r.Kept != 1 {
		t.Fatalf("the retention loop's purge with no destination: %+v, %v", r, err)
	}
	check("after the retention loop")
	waitStudyState(t, b, control.StudyHeld)

	// A destination that takes only MR: the CT study is routed nowhere.
	p := startPACS(t, "MRONLY")
	cfg.Destinations = []config.Destination{{Name: "mr", AETitle: "MRONLY", Host: "127.0.0.1", Port: p.port, Only: config.Match{Modalities: []string{"MR"}}}}
	if err := b.client.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if r, err := b.client.Purge(ctx); err != nil || r.Instances != 0 {
		t.Fatalf("purge with an unrouted study: %+v, %v", r, err)
	}
	check("after relais purge with the study routed nowhere")
	waitStudyState(t, b, control.StudyNotRouted)
	evs, _ := b.client.Events(ctx, control.EventQuery{Kinds: []string{string(store.KindPurge)}})
	for _, e := range evs {
		if strings.Contains(e.Message, "purged") {
			t.Fatalf("purge event: %s", e.Message)
		}
	}
}

// TestPoisonInstanceIsParkedAndTheRestFlows: GDCM sends pydicom's deflated,
// odd-length image_dfl.dcm; storescp aborts on it. A CT study sent after it
// is delivered at once; the poison instance is retried on its own, then
// parked with a plain reason; retry and abandon act on it.
func TestPoisonInstanceIsParkedAndTheRestFlows(t *testing.T) {
	peers.Require(t, "gdcmscu", "storescu", "storescp")
	poison := "/usr/lib/python3/dist-packages/pydicom/data/test_files/image_dfl.dcm"
	if _, err := os.Stat(poison); err != nil {
		t.Skipf("pydicom's image_dfl.dcm not found (python3-pydicom): %v", err)
	}
	out := t.TempDir()
	port := storescp(t, "CENTER", out, "+xa") // +xa: it takes Deflate, then aborts on the odd PDV
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Modalities = append(cfg.Modalities, config.Modality{AETitle: "GDCM"})
	cfg.Destinations = []config.Destination{{Name: "center", AETitle: "CENTER", Host: "127.0.0.1", Port: port, ParkAfterAttempts: 4}}
	b := startBox(t, cfg, boxOptions{})
	ctx := context.Background()
	// gdcmscu always exits 134 (DESIGN.md): success is what the box stored.
	peers.DCMTK(t, "gdcmscu", "--store", "--aetitle", "GDCM", "--call", "RELAIS", "-i", poison, "127.0.0.1", strconv.Itoa(b.port))
	var poisonUID string
	peers.Eventually(t, 30*time.Second, "the deflated instance stored", func() (bool, string) {
		ss, _ := b.client.Studies(ctx, 10)
		for _, s := range ss {
			if _, insts, err := b.a.Store().Study(t.Context(), s.StudyInstanceUID); err == nil && len(insts) == 1 {
				poisonUID = insts[0].SOPInstanceUID
			}
		}
		return poisonUID != "", fmt.Sprint(len(ss))
	})
	ct := series(t, t.TempDir(), 5, 64, 4201, nil)
	if o, err := b.storescu("CT1", ct.dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, o)
	}
	start := time.Now()
	peers.Eventually(t, 30*time.Second, "the CT delivered past the poison instance", func() (bool, string) {
		n := 0
		for _, uid := range ct.uids {
			if es, _ := b.a.Store().Entries(uid); len(es) == 1 && es[0].State == store.Delivered {
				n++
			}
		}
		return n == 5, fmt.Sprintf("%d of 5 delivered", n)
	})
	t.Logf("CT delivered %v after it was stored, the poison instance still failing", time.Since(start).Round(time.Millisecond))
	var parked store.Entry
	peers.Eventually(t, time.Minute, "the poison instance parked", func() (bool, string) {
		es, _ := b.a.Store().Entries(poisonUID)
		if len(es) == 1 {
			parked = es[0]
		}
		return parked.State == store.Parked, fmt.Sprintf("%+v", parked)
	})
	if parked.Attempts != 4 || !strings.Contains(parked.LastError, "center") || parked.FirstFailure.IsZero() {
		t.Fatalf("parked entry %+v, want 4 attempts and a reason", parked)
	}
	t.Logf("parked after %d attempts: %s", parked.Attempts, parked.LastError)
	ps, err := b.client.Parked(ctx, 0)
	if err != nil || len(ps) != 1 || ps[0].SOPInstanceUID != poisonUID || ps[0].TransferSyntax != "Deflated Explicit VR Little Endian" || ps[0].Reason == "" {
		t.Fatalf("parked list %+v, %v", ps, err)
	}
	d, st := destStatus(t, b, "center")
	if d.Parked != 1 || st.Health.Forwarding != control.LevelAlarm {
		t.Fatalf("status with a parked instance: %+v, health %+v", d, st.Health)
	}
	if _, ok := alarmWith(st, "1 instance(s) parked at center", "relais parked"); !ok {
		t.Fatalf("no parked alarm: %+v", st.Alarms)
	}
	// Retry: it is tried again (and parks again: storescp still aborts).
	if n, err := b.client.RetryInstance(ctx, control.InstanceRequest{Destination: "center", SOPInstanceUID: poisonUID}); err != nil || n.Instances != 1 {
		t.Fatalf("retry: %+v, %v", n, err)
	}
	peers.Eventually(t, time.Minute, "the retried instance tried and parked again", func() (bool, string) {
		es, _ := b.a.Store().Entries(poisonUID)
		return es[0].State == store.Parked && es[0].Attempts == 4, fmt.Sprintf("%+v", es[0])
	})
	// Abandon: recorded, not parked any more, purgeable, alarm gone.
	if err := b.client.Abandon(ctx, control.InstanceRequest{Destination: "center", SOPInstanceUID: poisonUID, Reason: "the center cannot read Deflate", By: "test"}); err != nil {
		t.Fatal(err)
	}
	if es, _ := b.a.Store().Entries(poisonUID); es[0].State != store.Abandoned {
		t.Fatalf("after abandon: %+v", es[0])
	}
	_, st = destStatus(t, b, "center")
	if _, ok := alarmWith(st, "parked"); ok || st.Health.Forwarding != control.LevelOK {
		t.Fatalf("alarms after abandon: %+v %+v", st.Health, st.Alarms)
	}
	evs, _ := b.client.Events(ctx, control.EventQuery{Kinds: []string{string(store.KindForward)}})
	if !hasEvent(evs, "abandoned at center by test: the center cannot read Deflate") {
		t.Fatalf("no audit event for the abandon")
	}
	if countFiles(out) != 5 {
		t.Fatalf("storescp holds %d files, want the 5 CT slices", countFiles(out))
	}
}

func hasEvent(evs []control.Event, part string) bool {
	for _, e := range evs {
		if strings.Contains(e.Message, part) {
			return true
		}
	}
	return false
}

// TestStalledDestinationIsAnAlarmUntilReplaced: storescp sleeps 600 s in
// each store; the stall alarm comes after the configured time and clears
// when the destination is pointed at a healthy PACS, which gets the study.
func TestStalledDestinationIsAnAlarmUntilReplaced(t *testing.T) {
	peers.Require(t, "storescu", "storescp")
	stalled := storescp(t, "CENTER", t.TempDir(), "--sleep-during", "600")
	healthyDir := t.TempDir()
	healthy := storescp(t, "CENTER", healthyDir)
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Alarms.StallSeconds = 3
	cfg.Destinations = []config.Destination{{Name: "center", AETitle: "CENTER", Host: "127.0.0.1", Port: stalled}}
	b := startBox(t, cfg, boxOptions{})
	c := series(t, t.TempDir(), 2, 32, 4301, nil)
	if o, err := b.storescu("CT1", c.dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, o)
	}
	start := time.Now()
	peers.Eventually(t, time.Minute, "the stall alarm", func() (bool, string) {
		d, st := destStatus(t, b, "center")
		_, ok := alarmWith(st, "center accepted an association but nothing has moved")
		return ok && d.State == control.DestStalled && st.Health.Forwarding == control.LevelAlarm, fmt.Sprintf("%s %+v", d.State, st.Alarms)
	})
	t.Logf("stall alarm %v after the study arrived (threshold 3 s)", time.Since(start).Round(100*time.Millisecond))
	cfg.Destinations[0].Port = healthy
	if err := b.client.SetConfig(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	peers.Eventually(t, time.Minute, "the study at the healthy PACS, alarm cleared", func() (bool, string) {
		d, st := destStatus(t, b, "center")
		_, stalled := alarmWith(st, "nothing has moved")
		return countFiles(healthyDir) == 2 && !stalled && d.State != control.DestStalled, fmt.Sprintf("%d files, %s, %+v", countFiles(healthyDir), d.State, st.Alarms)
	})
}

// TestCommitmentRefusedSaysWhatToRegister: Orthanc does not know the box and
// aborts its commitment requests; the alarm names our AE title, address and
// port; once registered, the alarm clears and the study is committed.
func TestCommitmentRefusedSaysWhatToRegister(t *testing.T) {
	peers.Require(t, "storescu")
	o := peers.StartOrthanc(t, peers.OrthancOptions{})
	port := peers.FreePort(t)
	b := startBox(t, testConfig(port, o, true), boxOptions{})
	c := series(t, t.TempDir(), 3, 32, 4401, nil)
	if out, err := b.storescu("CT1", c.dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	waitOrthanc(t, o, 3, time.Minute)
	want := fmt.Sprintf("AE title RELAIS, address 127.0.0.1, port %d", port)
	peers.Eventually(t, time.Minute, "the commitment alarm", func() (bool, string) {
		d, st := destStatus(t, b, "center")
		_, ok := alarmWith(st, "Storage Commitment with center failing", "register this box", want)
		return ok && d.Commitment.Error != "", fmt.Sprintf("%+v", st.Alarms)
	})
	if err := o.RegisterModality("RELAIS", "", port); err != nil {
		t.Fatal(err)
	}
	peers.Eventually(t, time.Minute, "committed, alarm cleared", func() (bool, string) {
		d, st := destStatus(t, b, "center")
		_, ok := alarmWith(st, "Storage Commitment")
		return d.Committed == 3 && !ok, fmt.Sprintf("committed %d, %+v", d.Committed, st.Alarms)
	})
	waitStudyState(t, b, control.StudyCommitted)
}

// waitStudyState waits until the box's only study is in state want (a study
// shows "receiving" for 10 s after its last instance).
func waitStudyState(t testing.TB, b *box, want control.StudyState) {
	t.Helper()
	peers.Eventually(t, 30*time.Second, "the study "+string(want), func() (bool, string) {
		ss, _ := b.client.Studies(context.Background(), 10)
		return len(ss) == 1 && ss[0].State == want, fmt.Sprintf("%+v", ss)
	})
}

// TestCommitmentFollowsDeliveryAfterOutage: Orthanc is down for two minutes
// while three studies queue up; once it is back, every study is committed
// within the quiet period plus 30 s of the queue's drain.
func TestCommitmentFollowsDeliveryAfterOutage(t *testing.T) {
	peers.Require(t, "storescu")
	if testing.Short() {
		t.Skip("a two-minute outage: not in -short mode")
	}
	t.Parallel()
	port := peers.FreePort(t)
	o := peers.StartOrthanc(t, peers.OrthancOptions{Modalities: map[string]int{"RELAIS": port}})
	cfg := testConfig(port, o, true)
	cfg.Destinations[0].CommitAfterSeconds = 5
	b := startBox(t, cfg, boxOptions{})
	o.Stop()
	outage := time.Now()
	for i := range 3 {
		c := series(t, t.TempDir(), 3, 32, uint64(4501+i), nil)
		if out, err := b.storescu("CT1", c.dir); err != nil {
			t.Fatalf("storescu: %v\n%s", err, out)
		}
	}
	peers.Eventually(t, time.Minute, "the center shown unreachable", func() (bool, string) {
		d, _ := destStatus(t, b, "center")
		return d.State == control.DestRetrying && d.QueueDepth == 9, fmt.Sprintf("%+v", d)
	})
	time.Sleep(2*time.Minute - time.Since(outage))
	o.Start()
	back := time.Now()
	var drained time.Time
	peers.Eventually(t, 2*time.Minute, "the queue drained", func() (bool, string) {
		d, _ := destStatus(t, b, "center")
		if d.QueueDepth == 0 {
			drained = time.Now()
		}
		return d.QueueDepth == 0, fmt.Sprintf("%d waiting", d.QueueDepth)
	})
	bound := 5*time.Second + 30*time.Second
	peers.Eventually(t, bound, "every study committed within the quiet period + 30 s of the drain", func() (bool, string) {
		d, _ := destStatus(t, b, "center")
		return d.Committed == 9, fmt.Sprintf("%d of 9 committed", d.Committed)
	})
	t.Logf("center back → drained in %v → all committed %v after the drain (bound %v)",
		drained.Sub(back).Round(100*time.Millisecond), time.Since(drained).Round(100*time.Millisecond), bound)
}

// TestReconfigurationNeverFreezesTheBox: 40 configuration changes (the
// destination's parallel 1↔2, each replacing its forwarder) while studies
// flow to a real Orthanc with commitment: every change returns, status
// answers, and every instance reaches Orthanc.
func TestReconfigurationNeverFreezesTheBox(t *testing.T) {
	peers.Require(t, "storescu")
	port := peers.FreePort(t)
	o := peers.StartOrthanc(t, peers.OrthancOptions{Modalities: map[string]int{"RELAIS": port}})
	cfg := testConfig(port, o, true)
	b := startBox(t, cfg, boxOptions{})
	ctx := context.Background()
	const studies, slices = 8, 10
	sent := make(chan error, 1)
	go func() {
		for i := range studies {
			c := series(t, t.TempDir(), slices, 32, uint64(4601+i), nil)
			if out, err := b.storescu("CT1", c.dir); err != nil {
				sent <- fmt.Errorf("storescu: %v\n%s", err, out)
				return
			}
		}
		sent <- nil
	}()
	var slowest time.Duration
	for i := range 40 {
		cfg.Destinations[0].Parallel = 1 + i%2
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- b.client.SetConfig(ctx, cfg) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("change %d: %v", i, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("change %d did not return within 30 s: the box is frozen", i)
		}
		if _, err := b.client.Status(ctx); err != nil {
			t.Fatalf("status after change %d: %v", i, err)
		}
		slowest = max(slowest, time.Since(start))
		time.Sleep(50 * time.Millisecond)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	waitOrthanc(t, o, studies*slices, 2*time.Minute)
	peers.Eventually(t, 2*time.Minute, "every instance committed", func() (bool, string) {
		d, _ := destStatus(t, b, "center")
		return d.Committed == studies*slices, fmt.Sprintf("%d committed", d.Committed)
	})
	t.Logf("40 changes while %d instances flowed; slowest change with status %v", studies*slices, slowest.Round(time.Millisecond))
}

// TestUnreachableForCountsFromTheFirstFailureAcrossRestarts: the figures
// the technician reads ("unreachable for 3h, attempt 41") do not restart
// with relaisd.
func TestUnreachableForCountsFromTheFirstFailureAcrossRestarts(t *testing.T) {
	peers.Require(t, "storescu")
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Destinations = []config.Destination{{Name: "dead", AETitle: "DEAD", Host: "127.0.0.1", Port: peers.FreePort(t)}}
	dir := t.TempDir()
	b := startBox(t, cfg, boxOptions{dir: dir})
	c := series(t, t.TempDir(), 1, 32, 4701, nil)
	if out, err := b.storescu("CT1", c.dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	var before control.DestinationStatus
	peers.Eventually(t, time.Minute, "a few failed attempts", func() (bool, string) {
		before, _ = destStatus(t, b, "dead")
		return before.State == control.DestRetrying && before.Attempts >= 3, fmt.Sprintf("%+v", before)
	})
	b.stop()
	b = startBox(t, cfg, boxOptions{dir: dir})
	peers.Eventually(t, time.Minute, "attempts counted on after the restart", func() (bool, string) {
		d, st := destStatus(t, b, "dead")
		_, ok := alarmWith(st, "dead unreachable for")
		return ok && d.Attempts > before.Attempts && d.FailingSince.Equal(before.FailingSince), fmt.Sprintf("%+v (before: %d attempts since %v)", d, before.Attempts, before.FailingSince)
	})
}

// TestInstanceTheCenterLostIsSentAgain: Orthanc accepts two instances and
// then loses one (deleted through its REST API) before commitment is asked;
// its report fails that one, the box sends it again, and both end committed.
func TestInstanceTheCenterLostIsSentAgain(t *testing.T) {
	peers.Require(t, "storescu")
	port := peers.FreePort(t)
	o := peers.StartOrthanc(t, peers.OrthancOptions{Modalities: map[string]int{"RELAIS": port}})
	cfg := testConfig(port, o, true)
	// The center must lose it before the box asks: 20 s leaves time for
	// delivery and the delete on a loaded machine.
	cfg.Destinations[0].CommitAfterSeconds = 20
	b := startBox(t, cfg, boxOptions{})
	c := series(t, t.TempDir(), 2, 32, 4801, nil)
	if out, err := b.storescu("CT1", c.dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	waitOrthanc(t, o, 2, time.Minute)
	if err := o.Delete(c.uids[0]); err != nil {
		t.Fatal(err)
	}
	peers.Eventually(t, 3*time.Minute, "the lost instance sent again and both committed", func() (bool, string) {
		d, _ := destStatus(t, b, "center")
		n, _ := o.InstanceCount()
		return d.Committed == 2 && n == 2, fmt.Sprintf("committed %d, Orthanc holds %d", d.Committed, n)
	})
	evs, _ := b.client.Events(context.Background(), control.EventQuery{Kinds: []string{string(store.KindCommit)}})
	if !hasEvent(evs, "does not hold 1 instance(s)") {
		t.Fatalf("no event saying the center lost an instance")
	}
	// The commitment failure is a failed attempt for the fleet's metrics too.
	if v, _ := metricValue(t, b.a, "relais_failed_attempts_total", map[string]string{"destination": "center"}); v < 1 {
		t.Errorf("relais_failed_attempts_total{destination=center} = %v, want ≥ 1", v)
	}
}
