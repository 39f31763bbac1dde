package appliance

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/store"
	"github.com/relais/relais/testdata/dcmgen"
	"github.com/relais/relais/testdata/peers"
	"golang.org/x/sys/unix"
)

// TestFullDiskAnswersA700AndRecoversAfterPurge fills a small real
// filesystem with undelivered studies: the modality gets Out of Resources
// (A700); once the studies are delivered and purged, sending works again,
// and nothing acknowledged was damaged.
func TestFullDiskAnswersA700AndRecoversAfterPurge(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a 96 MiB tmpfs as the data folder (CI runs as root)")
	}
	peers.Require(t, "Orthanc")
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=96m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	so := store.DefaultOptions()
	so.MemTableSize, so.ValueLogFileSize, so.Reserve = 2<<20, 4<<20, 12<<20
	o := peers.StartOrthanc(t, peers.OrthancOptions{})
	cfg := testConfig(peers.FreePort(t), o, false)
	cfg.Destinations[0].Paused = true // so everything stays undelivered
	cfg.Retention.HighWatermarkPercent, cfg.Retention.LowWatermarkPercent = 30, 10
	b := startBox(t, cfg, boxOptions{dir: dir, store: &so})

	c := series(t, t.TempDir(), 1000, 256, 701, nil)
	a, err := modality(t, b.addr(), "CT1", dimse.Handlers{}, dcmgen.CTImageStorage)
	if err != nil {
		t.Fatal(err)
	}
	var acked []string
	var files []string
	full := false
	for i, f := range c.files {
		st, err := sendFile(a, f)
		if err != nil {
			t.Fatal(err)
		}
		if st == dimse.StatusOutOfResources {
			full = true
			break
		}
		if st != dimse.StatusSuccess {
			t.Fatalf("status %v before the disk was full", st)
		}
		acked = append(acked, c.uids[i])
		files = append(files, f)
	}
	a.Close()
	if !full {
		t.Fatal("1000 instances (128 MB) fitted on a 96 MiB filesystem?")
	}
	t.Logf("A700 after %d instances", len(acked))
	ctx := context.Background()
	evs, _ := b.client.Events(ctx, controlQuery("store"))
	if !slices.ContainsFunc(evs, func(e control.Event) bool {
		return e.Severity == "error" && strings.Contains(e.Message, "disk is full")
	}) {
		t.Errorf("no event says the disk is full: %+v", evs)
	}
	// Nothing is purged while undelivered.
	if r, err := b.client.Purge(ctx); err != nil || r.Studies != 0 {
		t.Fatalf("purge of undelivered studies: %+v %v", r, err)
	}
	if err := b.client.Resume(ctx, "center"); err != nil {
		t.Fatal(err)
	}
	waitOrthanc(t, o, len(acked), 3*time.Minute)
	sameAtOrthanc(t, o, files)
	peers.Eventually(t, time.Minute, "delivered studies purged", func() (bool, string) {
		r, err := b.client.Purge(ctx)
		st, _ := b.client.Status(ctx)
		return err == nil && st.Stored.Instances == 0, fmt.Sprintf("%+v %+v %v", r, st.Stored, err)
	})
	a, err = modality(t, b.addr(), "CT1", dimse.Handlers{}, dcmgen.CTImageStorage)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, f := range c.files[len(acked) : len(acked)+20] {
		if st, err := sendFile(a, f); err != nil || st != dimse.StatusSuccess {
			t.Fatalf("after the purge: %v %v", st, err)
		}
	}
}

func controlQuery(kinds ...string) control.EventQuery {
	return control.EventQuery{Kinds: kinds, Limit: 5}
}
