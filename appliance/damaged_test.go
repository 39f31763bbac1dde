package appliance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/store"
	"github.com/relais/relais/testdata/peers"
)

// copyFile is where the store keeps the bytes of a copy that is not inline
// (store/files.go: files/<id/4096>/<id>, in hex). A test-only lookup: the
// store exports no path, and nothing outside it should need one.
func copyFile(b *box, rec store.Instance) string {
	return filepath.Join(b.dir, "store", "files", strconv.FormatUint(rec.ID>>12, 16), strconv.FormatUint(rec.ID, 16))
}

// TestDamagedOrMissingCopyIsParkedSaidAndBlocksNothing: three stored copies
// of a six-instance study are damaged on disk while the destination is
// paused (a byte flipped, a file cut short, a file deleted). Once resumed,
// the three intact instances reach Orthanc bit for bit, none of the damaged
// ones does (not even in part), they stay held and parked after one try,
// the queue drains otherwise, the status carries an alarm saying what
// happened and what to do, and the event log names each damaged copy. When
// the modality sends the study again, the good copies replace the damaged
// ones and are forwarded; the intact ones are not sent twice.
func TestDamagedOrMissingCopyIsParkedSaidAndBlocksNothing(t *testing.T) {
	peers.Require(t, "storescu")
	o := peers.StartOrthanc(t, peers.OrthancOptions{})
	cfg := testConfig(peers.FreePort(t), o, false)
	cfg.Destinations[0].Paused = true
	b := startBox(t, cfg, boxOptions{})
	c := series(t, t.TempDir(), 6, 128, 5101, nil) // 32 KiB each: files, not inline
	if out, err := b.storescu("STORESCU", c.dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	st := b.a.Store()
	recs := map[string]store.Instance{}
	for _, uid := range c.uids {
		rec, err := st.Instance(uid)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Inline {
			t.Fatalf("%s is inline (%d bytes): the test needs files", uid, rec.Size)
		}
		recs[uid] = rec
	}
	study := recs[c.uids[0]].StudyInstanceUID
	flipped, cut, deleted := c.uids[1], c.uids[3], c.uids[5]
	damaged := []string{flipped, cut, deleted}
	intact := []string{c.files[0], c.files[2], c.files[4]}

	p := copyFile(b, recs[flipped])
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(copyFile(b, recs[cut]), recs[cut].Size/2); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(copyFile(b, recs[deleted])); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	start := time.Now()
	if err := b.client.Resume(ctx, "center"); err != nil {
		t.Fatal(err)
	}
	peers.Eventually(t, time.Minute, "the intact instances delivered, the damaged ones parked", func() (bool, string) {
		d, _ := destStatus(t, b, "center")
		return d.QueueDepth == 0 && d.Delivered == 3 && d.Parked == 3, fmt.Sprintf("%+v", d)
	})
	t.Logf("queue drained %v after resuming", time.Since(start).Round(time.Millisecond))
	waitOrthanc(t, o, 3, time.Minute)
	sameAtOrthanc(t, o, intact)
	for _, uid := range damaged {
		if id, err := o.Lookup(uid); err != nil || id != "" {
			t.Fatalf("Orthanc holds damaged instance %s (%q, %v)", uid, id, err)
		}
		es, err := st.Entries(uid)
		if err != nil || len(es) != 1 || es[0].State != store.Parked || es[0].Attempts != 1 || !strings.Contains(es[0].LastError, "damaged") {
			t.Fatalf("entry of damaged %s: %+v, %v", uid, es, err)
		}
	}
	// Held, not purged: nothing undelivered is.
	if res, err := st.Purge(ctx, store.Policy{MaxAge: time.Nanosecond}); err != nil || res.Instances != 0 {
		t.Fatalf("purge removed %+v, %v", res, err)
	}
	for _, uid := range damaged {
		if _, err := st.Instance(uid); err != nil {
			t.Fatalf("damaged %s not held: %v", uid, err)
		}
	}

	status, err := b.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	alarm, ok := alarmWith(status, "3 stored copies", "damaged", study, "STORESCU", "send", "again")
	if !ok || alarm.Level != control.LevelAlarm {
		t.Fatalf("no damaged-copy alarm: %+v", status.Alarms)
	}
	t.Logf("alarm: %s", alarm.Message)
	if status.Stored.Damaged != 3 {
		t.Fatalf("status counts %d damaged copies, want 3", status.Stored.Damaged)
	}
	evs, err := b.client.Events(ctx, control.EventQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, uid := range damaged {
		n := 0
		for _, e := range evs {
			if e.Kind == string(store.KindStore) && e.Attrs["sop_instance_uid"] == uid && strings.Contains(e.Message, uid) && strings.Contains(e.Message, "send") {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d store events name damaged %s, want 1: %+v", n, uid, evs)
		}
	}
	// An intact instance is never charged for a damaged one's abort.
	if hasEvent(evs, "drops the connection") {
		t.Fatalf("an intact instance was charged for a damaged one: %+v", evs)
	}

	// The modality sends the study again: the good copies replace the
	// damaged ones and go out; the intact ones are duplicates, not resent.
	if out, err := b.storescu("STORESCU", c.dir); err != nil {
		t.Fatalf("storescu again: %v\n%s", err, out)
	}
	waitOrthanc(t, o, 6, time.Minute)
	sameAtOrthanc(t, o, c.files)
	peers.Eventually(t, time.Minute, "everything delivered, the alarm gone", func() (bool, string) {
		d, st := destStatus(t, b, "center")
		_, alarmed := alarmWith(st, "damaged")
		return d.Delivered == 6 && d.Parked == 0 && !alarmed && st.Stored.Damaged == 0 && st.Stored.Instances == 6,
			fmt.Sprintf("%+v, %d damaged, %+v", d, st.Stored.Damaged, st.Alarms)
	})
	arrived, err := o.Arrivals()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Sort(arrived); !slices.Equal(arrived, slices.Sorted(slices.Values(c.uids))) {
		t.Fatalf("Orthanc got %v, want each of %v once", arrived, c.uids)
	}
	if _, err := st.Purge(ctx, store.Policy{MaxAge: time.Hour}); err != nil { // removes the files of replaced copies
		t.Fatal(err)
	}
	for _, uid := range damaged {
		rec, err := st.Instance(uid)
		if err != nil || rec.ID == recs[uid].ID || rec.SHA256 != recs[uid].SHA256 {
			t.Fatalf("%s after the new copy: %+v, %v", uid, rec, err)
		}
		if _, err := os.Stat(copyFile(b, recs[uid])); !os.IsNotExist(err) {
			t.Fatalf("the damaged file of %s is still there: %v", uid, err)
		}
	}
	evs, _ = b.client.Events(ctx, control.EventQuery{Kinds: []string{string(store.KindStore)}, Limit: 100})
	for _, uid := range damaged {
		found := false
		for _, e := range evs {
			found = found || (e.Attrs["sop_instance_uid"] == uid && strings.Contains(e.Message, "replaced"))
		}
		if !found {
			t.Fatalf("no event says the damaged copy of %s was replaced: %+v", uid, evs)
		}
	}
}
