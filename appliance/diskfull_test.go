package appliance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/appliance/part10"
	"github.com/relais/relais/store"
	"github.com/relais/relais/testdata/dcmgen"
	"github.com/relais/relais/testdata/peers"
)

// mountExt4 makes an ext4 filesystem of size bytes in a file (mkfs.ext4's
// defaults, as on a box's data partition, 5 % reserved for root included),
// loop-mounts it for the test and unmounts it after. Register it before
// the box, so the box stops first.
func mountExt4(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to loop-mount a small ext4 data partition (CI runs as root)")
	}
	for _, tool := range []string{"mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s to make a small ext4 data partition: %v", tool, err)
		}
	}
	img := filepath.Join(t.TempDir(), "data.ext4")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount an ext4 image here: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
			exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// diskUse is the data partition's use now, for the log.
func diskUse(t *testing.T, b *box) store.Space {
	t.Helper()
	sp, err := b.a.Store().Space()
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// sendStudy C-STOREs n generated 2 MiB instances of study seed on one
// association and returns the files acknowledged and the first status
// that was not Success (0: all were).
func sendStudy(t *testing.T, b *box, seed uint64, n int) (acked []string, refused dimse.Status) {
	t.Helper()
	c := series(t, t.TempDir(), n, 1024, seed, nil)
	a, err := modality(t, b.addr(), "CT1", dimse.Handlers{}, dcmgen.CTImageStorage)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, f := range c.files {
		st, err := sendFile(a, f)
		if err != nil {
			t.Fatal(err)
		}
		if st != dimse.StatusSuccess {
			return acked, st
		}
		acked = append(acked, f)
	}
	return acked, 0
}

// committed waits until the destination has committed n instances since
// the box started.
func committed(t *testing.T, b *box, n int64) {
	t.Helper()
	peers.Eventually(t, 3*time.Minute, fmt.Sprintf("%d instances committed", n), func() (bool, string) {
		got := b.a.destCounters("center").Committed.Load()
		return got >= n, fmt.Sprintf("%d committed", got)
	})
}

func eventsMatching(t *testing.T, b *box, kind, substr string) []control.Event {
	t.Helper()
	evs, err := b.client.Events(context.Background(), control.EventQuery{Kinds: []string{kind}, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(evs, func(e control.Event) bool { return !strings.Contains(e.Message, substr) })
}

// TestSmallDiskPurgesCommittedStudiesBeforeRefusingAny: on a 600 MB ext4
// data partition with the default store options and watermarks (85/75 %,
// too high for it: the model lowers them and says so), twice the disk's
// size of studies arrives through DICOM, each committed by Orthanc before
// the next. Retention purges the oldest; no store is ever refused, and
// nothing eats into Badger's headroom. (On such a disk the old 256 MiB
// reserve answered A700 at 55 % used with nothing purged.)
func TestSmallDiskPurgesCommittedStudiesBeforeRefusingAny(t *testing.T) {
	skipUnderRace(t)
	peers.Require(t, "Orthanc")
	dir := mountExt4(t, 600e6)
	port := peers.FreePort(t)
	o := peers.StartOrthanc(t, peers.OrthancOptions{Modalities: map[string]int{"RELAIS": port}})
	cfg := testConfig(port, o, true)
	b := startBox(t, cfg, boxOptions{dir: dir})
	sp := diskUse(t, b)
	t.Logf("disk %d MiB, %d MiB free; floor %d, refuse below %d, purge point %d MiB free",
		sp.Total>>20, sp.Free>>20, sp.Floor>>20, sp.Refuse>>20, sp.Purge>>20)
	// Through the control API: it answers once Run has set the box up.
	st, err := b.client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(st.Alarms, func(a control.Alarm) bool { return strings.Contains(a.Message, "too high for this") }) {
		t.Errorf("no alarm says the watermarks 85/75 %% were lowered for this disk: %+v", st.Alarms)
	}
	t.Logf("watermarks in force %.0f/%.0f %%", st.Disk.HighWatermarkPercent, st.Disk.LowWatermarkPercent)

	const studies, perStudy = 30, 20 // 30 × 40 MiB: twice the disk
	start := time.Now()
	var last []string
	minFree := sp.Free
	for i := range studies {
		// The study before last is committed: what arrives is soon done,
		// while forwarding overlaps the next study's arrival.
		committed(t, b, int64(max(i-1, 0)*perStudy))
		acked, refused := sendStudy(t, b, uint64(9000+i), perStudy)
		if refused != 0 {
			sp := diskUse(t, b)
			t.Fatalf("study %d: instance %d refused (%v) with %d MiB free of %d: retention did not make room first",
				i, len(acked)+1, refused, sp.Free>>20, sp.Total>>20)
		}
		minFree = min(minFree, diskUse(t, b).Free)
		last = acked
	}
	committed(t, b, studies*perStudy)
	sp = diskUse(t, b)
	t.Logf("%d studies (%d MiB) in %.0f s; least free after a study %d MiB (refusal below %d MiB); now %.0f %% used",
		studies, studies*perStudy*2, time.Since(start).Seconds(), minFree>>20, sp.Refuse>>20, 100*sp.Used())
	if minFree < sp.Floor {
		t.Errorf("the disk went down to %d MiB free, into Badger's headroom (%d MiB)", minFree>>20, sp.Floor>>20)
	}
	purged := eventsMatching(t, b, string(store.KindPurge), "purged")
	if len(purged) == 0 {
		t.Fatal("no purge event: the disk held twice its size?")
	}
	t.Logf("%d purge(s), the last: %s", len(purged), purged[0].Message)
	if evs := eventsMatching(t, b, string(store.KindStore), "disk full"); len(evs) != 0 {
		t.Errorf("disk full events while retention could make room: %+v", evs)
	}
	// The newest study is still held, intact, and at Orthanc bit for bit.
	for _, f := range last {
		uid := sopUID(t, f)
		if _, err := b.a.Store().Instance(uid); err != nil {
			t.Fatalf("newest study's instance %s: %v", uid, err)
		}
	}
	sameAtOrthanc(t, o, sample(last, 4))
}

// sample is every nth of files, and the last.
func sample(files []string, n int) []string {
	var out []string
	for i := 0; i < len(files); i += n {
		out = append(out, files[i])
	}
	if len(files) > 0 && (len(files)-1)%n != 0 {
		out = append(out, files[len(files)-1])
	}
	return out
}

// TestFullDiskOfUndeliveredStudiesRefusesThenRecovers: on a 600 MB ext4
// data partition, with the destination down, studies arrive until the
// disk is full: the box answers A700 before the filesystem is, keeps every
// acknowledged instance intact, says "disk full" with the action in its
// health, records one event for all the refusals and counts them in the
// metrics. When the destination is back and has committed everything,
// retention makes room and stores are accepted again.
func TestFullDiskOfUndeliveredStudiesRefusesThenRecovers(t *testing.T) {
	skipUnderRace(t)
	peers.Require(t, "Orthanc")
	dir := mountExt4(t, 600e6)
	port := peers.FreePort(t)
	o := peers.StartOrthanc(t, peers.OrthancOptions{Modalities: map[string]int{"RELAIS": port}})
	o.Stop() // the reading center is down: nothing can be delivered
	cfg := testConfig(port, o, true)
	b := startBox(t, cfg, boxOptions{dir: dir})
	ctx := context.Background()

	var acked []string
	var refused dimse.Status
	for i := 0; refused == 0; i++ {
		if i == 30 {
			t.Fatal("1.2 GB of studies fitted on a 600 MB disk?")
		}
		var got []string
		sent := time.Now()
		got, refused = sendStudy(t, b, uint64(7000+i), 20)
		acked = append(acked, got...)
		t.Logf("study %d: %d stored in %.1f s, %.0f %% used", i, len(got), time.Since(sent).Seconds(), 100*diskUse(t, b).Used())
	}
	sp := diskUse(t, b)
	t.Logf("A700 after %d instances (%d MiB): %d MiB free of %d (%.0f %% used); refusal below %d MiB, floor %d MiB",
		len(acked), len(acked)*2, sp.Free>>20, sp.Total>>20, 100*sp.Used(), sp.Refuse>>20, sp.Floor>>20)
	if refused != dimse.StatusOutOfResources {
		t.Fatalf("refused with %v, want Out of Resources (A700)", refused)
	}
	if sp.Free < sp.Floor {
		t.Fatalf("refused only with %d MiB free, below the floor Badger needs (%d MiB)", sp.Free>>20, sp.Floor>>20)
	}
	// More refusals: counted, not one event each.
	for i := range 5 {
		if got, st := sendStudy(t, b, uint64(7100+i), 1); len(got) != 0 || st != dimse.StatusOutOfResources {
			t.Fatalf("store on a full disk: %d acked, status %v", len(got), st)
		}
	}
	if evs := eventsMatching(t, b, string(store.KindStore), "disk full: refusing new studies (A700)"); len(evs) != 1 || evs[0].Severity != "error" {
		t.Errorf("want one error event for the refusal, got %+v", evs)
	}
	st, err := b.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(st.Alarms, func(a control.Alarm) bool {
		return strings.HasPrefix(a.Message, "disk full: refusing new studies (A700)")
	})
	if st.Health.Disk != control.LevelAlarm || i < 0 || !strings.Contains(st.Alarms[i].Message, "action: check the tunnel") || st.Disk.Refused < 6 {
		t.Fatalf("health disk %s, refused %d, alarms %+v", st.Health.Disk, st.Disk.Refused, st.Alarms)
	}
	t.Logf("alarm: %s", st.Alarms[i].Message)
	if n := refusedMetric(t, b); n < 6 {
		t.Errorf("relais_refused_instances_total{reason=out_of_resources} = %v, want at least 6", n)
	}
	// Nothing acknowledged was purged or damaged.
	if r, err := b.client.Purge(ctx); err != nil || r.Studies != 0 {
		t.Fatalf("purge of undelivered studies: %+v %v", r, err)
	}
	for _, f := range acked {
		intact(t, b, sopUID(t, f))
	}

	// The center comes back: everything goes, is committed, and room is made.
	o.Start()
	back := time.Now()
	committed(t, b, int64(len(acked)))
	t.Logf("%d instances delivered and committed %.1f s after the center came back", len(acked), time.Since(back).Seconds())
	waitOrthanc(t, o, len(acked), time.Minute)
	sameAtOrthanc(t, o, sample(acked, 10)) // Orthanc hands a file back in about 0.5 s
	back = time.Now()
	got, st2 := sendStudy(t, b, 7200, 20)
	if st2 != 0 {
		sp := diskUse(t, b)
		t.Fatalf("after delivery: instance %d refused (%v), %d MiB free", len(got)+1, st2, sp.Free>>20)
	}
	if evs := eventsMatching(t, b, string(store.KindStore), "disk has room again"); len(evs) != 1 {
		t.Errorf("want one event saying the disk has room again, got %+v", evs)
	}
	if evs := eventsMatching(t, b, string(store.KindPurge), "purged"); len(evs) == 0 {
		t.Error("no purge event after the delivery")
	}
	if st, err = b.client.Status(ctx); err != nil {
		t.Fatal(err)
	}
	if !st.Disk.RefusingSince.IsZero() || slices.ContainsFunc(st.Alarms, func(a control.Alarm) bool { return strings.HasPrefix(a.Message, "disk full") }) {
		t.Errorf("still refusing after room was made: %+v %+v", st.Disk, st.Alarms)
	}
	t.Logf("a study of 20 instances stored in %.1f s after the delivery (purging first); then %.0f %% used", time.Since(back).Seconds(), st.Disk.UsedPercent)
}

// intact reads an instance back and checks it against its recorded hash.
func intact(t *testing.T, b *box, uid string) {
	t.Helper()
	rec, err := b.a.Store().Instance(uid)
	if err != nil {
		t.Fatalf("acknowledged instance %s: %v", uid, err)
	}
	rc, err := b.a.Store().Open(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatalf("read %s: %v", uid, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != rec.SHA256 {
		t.Fatalf("instance %s: bytes hash %s, recorded %s", uid, got, rec.SHA256)
	}
}

func sopUID(t *testing.T, path string) string {
	t.Helper()
	m, rc, err := part10.OpenDataSet(path)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	return m.MediaStorageSOPInstanceUID
}

// refusedMetric sums relais_refused_instances_total{reason="out_of_resources"}.
func refusedMetric(t *testing.T, b *box) float64 {
	t.Helper()
	mfs, err := b.a.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "relais_refused_instances_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == "out_of_resources" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

func controlQuery(kinds ...string) control.EventQuery {
	return control.EventQuery{Kinds: kinds, Limit: 5}
}
