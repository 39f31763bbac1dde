package appliance

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/store"
	"github.com/relais/relais/testdata/dcmgen"
	"github.com/relais/relais/testdata/peers"
	"github.com/relais/relais/testdata/powercut"
)

// TestDiskFailingToSaveIsRefusedAlarmedAndSaid: the disk under the store
// fails a sync (EIO, from the power-cut filesystem the store runs on). The
// instance is refused with Processing Failure, never acknowledged; the
// event says which and why; the disk alarm says so, with the action, until
// an instance is saved again, which is said too. A file's failed sync ends
// with the next instance saved. A directory's, or one of Badger's log
// (whose records are then visible but not known to be on disk), makes the
// store write nothing more until the box reboots, and the alarm says "the
// disk failed a write" and to restart. Every instance acknowledged reaches
// Orthanc bit for bit.
func TestDiskFailingToSaveIsRefusedAlarmedAndSaid(t *testing.T) {
	peers.Require(t, "Orthanc")
	pc := powercut.MountJournaled(t, filepath.Join(t.TempDir(), "backing"), powercut.BadgerFiles)
	dir := t.TempDir()
	if err := os.Symlink(pc.Dir(), filepath.Join(dir, "store")); err != nil {
		t.Fatal(err)
	}
	port := peers.FreePort(t)
	o := peers.StartOrthanc(t, peers.OrthancOptions{Modalities: map[string]int{"RELAIS": port}})
	cfg := testConfig(port, o, false)
	b := startBox(t, cfg, boxOptions{dir: dir})
	files := series(t, t.TempDir(), 6, 512, 4242, nil).files // 512 KiB each: in files, not inline

	send := func(f string) dimse.Status {
		t.Helper()
		a, err := modality(t, b.addr(), "CT1", dimse.Handlers{}, dcmgen.CTImageStorage)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		st, err := sendFile(a, f)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	status := func() control.Status {
		t.Helper()
		st, err := b.client.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	saveAlarm := func(st control.Status) string {
		i := slices.IndexFunc(st.Alarms, func(a control.Alarm) bool { return strings.Contains(a.Message, "the disk failed") })
		if i < 0 {
			return ""
		}
		return st.Alarms[i].Message
	}
	failOne := func(names string, f string) {
		t.Helper()
		pc.FailSyncs(regexp.MustCompile(names), 1)
		st := send(f)
		pc.FailSyncs(nil, 0)
		if st != dimse.StatusProcessingFailure {
			t.Fatalf("%s sent while a sync of %s fails: %v, want Processing Failure", filepath.Base(f), names, st)
		}
	}

	if st := send(files[0]); st != dimse.StatusSuccess {
		t.Fatalf("first instance: %v", st)
	}
	if a := saveAlarm(status()); a != "" {
		t.Fatalf("a save alarm before any failure: %s", a)
	}

	// An instance file's sync fails: that instance is refused, said, and
	// the next one is saved.
	failOne(`^[0-9a-f]+$`, files[1])
	st := status()
	alarm := saveAlarm(st)
	t.Logf("alarm: %s", alarm)
	if !strings.Contains(alarm, "failed to save 1 instance(s)") || !strings.Contains(alarm, "input/output error") || !strings.Contains(alarm, "restart the box") ||
		st.Health.Disk != control.LevelAlarm || st.Disk.SaveFailed != 1 {
		t.Fatalf("after a failed sync: disk %q, %+v, alarm %q", st.Health.Disk, st.Disk, alarm)
	}
	uid := sopUID(t, files[1])
	evs := eventsMatching(t, b, string(store.KindStore), "the disk failed to save it")
	if len(evs) != 1 || !strings.Contains(evs[0].Message, uid) || evs[0].Severity != string(store.Error) {
		t.Fatalf("events of the refusal: %+v, want one error naming %s", evs, uid)
	}
	if _, err := b.a.Store().Instance(uid); err == nil {
		t.Fatalf("the refused instance %s is in the store", uid)
	}
	if st := send(files[1]); st != dimse.StatusSuccess {
		t.Fatalf("the refused instance sent again once the disk works: %v", st)
	}
	if a := saveAlarm(status()); a != "" {
		t.Errorf("the save alarm stays after an instance was saved: %s", a)
	}
	if evs := eventsMatching(t, b, string(store.KindStore), "the disk saves instances again (1 instance(s) refused"); len(evs) != 1 {
		t.Errorf("events saying the disk saves again: %+v, want one", evs)
	}

	// A directory's sync fails: the store refuses until relaisd restarts.
	failOne(`^[0-9a-f]+/$`, files[2])
	if st := send(files[3]); st != dimse.StatusProcessingFailure {
		t.Fatalf("after a directory's failed sync: %v, want Processing Failure until relaisd restarts", st)
	}
	if st := status(); st.Disk.SaveFailed != 2 || !strings.Contains(saveAlarm(st), "the disk failed a write") || !strings.Contains(saveAlarm(st), "(2 so far), and nothing is forwarded") {
		t.Fatalf("after two refused: %+v, alarm %q", st.Disk, saveAlarm(st))
	} else if st.Health.Forwarding != control.LevelAlarm {
		t.Errorf("forwarding %q while the store writes nothing (nothing can be leased), want alarm", st.Health.Forwarding)
	}
	restart := func(reboot bool) {
		t.Helper()
		b.stop()
		if reboot {
			pc.Remount()
		}
		b = startBox(t, cfg, boxOptions{dir: dir})
	}
	restart(true)
	for _, f := range files[2:4] {
		if st := send(f); st != dimse.StatusSuccess {
			t.Fatalf("%s after the reboot: %v", filepath.Base(f), st)
		}
	}
	if st := status(); saveAlarm(st) != "" || st.Health.Disk == control.LevelAlarm {
		t.Errorf("after the reboot: disk %q, alarms %+v", st.Health.Disk, st.Alarms)
	}

	// A sync of Badger's log fails (the instance's record, or the
	// forwarder's change before it): the store writes nothing more.
	waitOrthanc(t, o, 4, 2*time.Minute)
	failOne(`\.mem$`, files[4])
	if st := send(files[5]); st != dimse.StatusProcessingFailure {
		t.Fatalf("after a failed write of Badger's: %v, want Processing Failure until the box restarts", st)
	}
	st = status()
	alarm = saveAlarm(st)
	t.Logf("alarm: %s", alarm)
	if !strings.Contains(alarm, "the disk failed a write") || !strings.Contains(alarm, "stores nothing more until it restarts") || st.Disk.SaveFailed != 2 {
		t.Fatalf("after a failed write of Badger's: %+v, alarm %q", st.Disk, alarm)
	}
	restart(true)
	// The refusal of files[5], said while the store wrote nothing, was kept
	// aside and is in the event log after the reboot (as files[3]'s after
	// the first).
	if evs := eventsMatching(t, b, string(store.KindStore), "the disk failed to save it"); !slices.ContainsFunc(evs, func(e control.Event) bool {
		return strings.Contains(e.Message, sopUID(t, files[5]))
	}) {
		t.Errorf("after the reboot, no event of %s refused while the store wrote nothing: %+v", sopUID(t, files[5]), evs)
	}
	if evs := eventsMatching(t, b, string(store.KindStore), "recorded while the store could not write, were added"); len(evs) != 2 {
		t.Errorf("after the reboot, events saying the events kept aside were added: %+v, want one for each reboot", evs)
	}
	for _, f := range files[4:] {
		if st := send(f); st != dimse.StatusSuccess {
			t.Fatalf("%s after the reboot: %v", filepath.Base(f), st)
		}
	}
	if st := status(); saveAlarm(st) != "" {
		t.Errorf("after the reboot: alarm %q", saveAlarm(st))
	}
	waitOrthanc(t, o, len(files), 2*time.Minute)
	sameAtOrthanc(t, o, files)
}
