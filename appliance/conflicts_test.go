package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/header"
	"github.com/relais/relais/appliance/part10"
	"github.com/relais/relais/store"
	"github.com/relais/relais/testdata/dcmgen"
	"github.com/relais/relais/testdata/peers"
)

// orthancHeader reads the header of the instance Orthanc holds for uid.
func orthancHeader(o *peers.Orthanc, uid string) (*header.Header, error) {
	rc, err := o.File(uid)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	m, _, br, err := part10.ReadHeader(rc)
	if err != nil {
		return nil, err
	}
	ds, err := io.ReadAll(br)
	if err != nil {
		return nil, err
	}
	return header.Parse(m.TransferSyntaxUID, ds)
}

// TestConflictReviewCorrectsAtOrthancAndDiscardedNeverLeaves: two instances
// reach a real Orthanc (set to overwrite an instance it receives again);
// the modality sends both again with other headers (one changed by
// dcmodify, one generated). Both copies are held and listed with the
// differing element; "correct" sends the first again and Orthanc then holds
// the new bytes; "discard" removes the second, which never reaches Orthanc
// (Orthanc still holds the first bytes of it, though it would overwrite).
func TestConflictReviewCorrectsAtOrthancAndDiscardedNeverLeaves(t *testing.T) {
	peers.Require(t, "storescu", "dcmodify")
	o := peers.StartOrthanc(t, peers.OrthancOptions{OverwriteInstances: true})
	b := startBox(t, testConfig(peers.FreePort(t), o, false), boxOptions{})
	ctx := context.Background()
	orig := series(t, filepath.Join(t.TempDir(), "orig"), 2, 32, 4242, nil)
	if out, err := b.storescu("CT1", orig.dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	waitOrthanc(t, o, 2, time.Minute)

	again := t.TempDir()
	fixed := filepath.Join(again, "fixed.dcm")
	data, err := os.ReadFile(orig.files[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fixed, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := peers.DCMTK(t, "dcmodify", "-nb", "-m", "(0010,0010)=Roe^Jane", fixed); err != nil {
		t.Fatalf("dcmodify: %v\n%s", err, out)
	}
	wrong := filepath.Join(again, "wrong.dcm")
	if _, err := (dcmgen.Instance{Rows: 32, Columns: 32, InstanceNumber: 2, Seed: 4242, StudyDescription: "CT wrong study"}).WriteFile(wrong); err != nil {
		t.Fatal(err)
	}
	if out, err := b.storescu("STORESCU", fixed, wrong); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}

	list, err := b.client.Conflicts(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("conflicts: %+v, %v", list, err)
	}
	ids := map[string]uint64{}
	for _, c := range list {
		if c.Held == nil || c.Held.CallingAE != "CT1" || len(c.Copies) != 1 || c.Copies[0].CallingAE != "STORESCU" || c.Copies[0].Size == 0 || c.Copies[0].ReceivedAt.IsZero() {
			t.Fatalf("conflict listed as %+v", c)
		}
		ids[c.SOPInstanceUID] = c.Copies[0].ID
	}
	showChange(t, b, orig.uids[0], control.HeaderChange{Tag: "(0010,0010)", Name: "PatientName", Old: "Test^Patient", New: "Roe^Jane"})
	showChange(t, b, orig.uids[1], control.HeaderChange{Tag: "(0008,1030)", Name: "StudyDescription", Old: "CT generated", New: "CT wrong study"})
	if h, err := orthancHeader(o, orig.uids[0]); err != nil || h.PatientName != "Test^Patient" {
		t.Fatalf("a flagged copy reached Orthanc before review: %+v, %v", h, err)
	}
	if st, _ := b.client.Status(ctx); st.Stored.Conflicts != 2 || st.Stored.Instances != 2 {
		t.Fatalf("status with two conflicts: %+v", st.Stored)
	}

	_, err = b.client.ResolveConflict(ctx, control.ConflictRequest{SOPInstanceUID: orig.uids[0], ConflictID: ids[orig.uids[0]], Action: "correct"})
	if err == nil || !strings.Contains(err.Error(), "reason") {
		t.Fatalf("correction without a reason: %v", err)
	}
	res, err := b.client.ResolveConflict(ctx, control.ConflictRequest{SOPInstanceUID: orig.uids[0], ConflictID: ids[orig.uids[0]],
		Action: "correct", Reason: "patient name corrected at the modality", By: "dr test"})
	if err != nil || !strings.Contains(res.Message, "queued again for center") {
		t.Fatalf("correct: %+v, %v", res, err)
	}
	peers.Eventually(t, time.Minute, "the corrected copy at Orthanc", func() (bool, string) {
		h, err := orthancHeader(o, orig.uids[0])
		return err == nil && h.PatientName == "Roe^Jane", fmt.Sprintf("%+v, %v", h, err)
	})
	sameAtOrthanc(t, o, []string{fixed})

	discarded, err := b.a.store.Conflicts(t.Context(), orig.uids[1])
	if err != nil || len(discarded) != 1 {
		t.Fatalf("flagged copy of the second: %+v, %v", discarded, err)
	}
	if _, err := b.client.ResolveConflict(ctx, control.ConflictRequest{SOPInstanceUID: orig.uids[1], ConflictID: ids[orig.uids[1]],
		Action: "discard", Reason: "sent to the wrong study"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Conflict(ctx, orig.uids[1]); err == nil {
		t.Fatal("a discarded copy is still shown")
	}
	if list, err := b.client.Conflicts(ctx); err != nil || len(list) != 0 {
		t.Fatalf("conflicts after review: %+v, %v", list, err)
	}
	if _, err := b.client.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(b.a.store.OpenInstance(ctx, discarded[0])); err == nil {
		t.Fatal("the discarded copy's bytes are still in the store after a purge")
	}
	// Orthanc overwrites: had the discarded copy been sent, it would hold it.
	time.Sleep(2 * time.Second) // a forwarder that would send it has had its chance
	if h, err := orthancHeader(o, orig.uids[1]); err != nil || h.StudyDescription != "CT generated" {
		t.Fatalf("second instance at Orthanc: %+v, %v", h, err)
	}
	sameAtOrthanc(t, o, []string{fixed, orig.files[1]})
	if n, err := o.InstanceCount(); err != nil || n != 2 {
		t.Fatalf("Orthanc holds %d instances, %v", n, err)
	}
	if st, _ := b.client.Status(ctx); st.Stored.Conflicts != 0 || st.Stored.Instances != 2 {
		t.Fatalf("status after review: %+v", st.Stored)
	}

	evs, err := b.client.Events(ctx, control.EventQuery{Kinds: []string{string(store.KindReview)}})
	if err != nil || len(evs) != 2 {
		t.Fatalf("review events: %+v, %v", evs, err)
	}
	fix, drop := evs[1], evs[0] // newest first
	if fix.Attrs["action"] != "correct" || !strings.HasPrefix(fix.Attrs["by"], "dr test (console/cli as uid ") || fix.Attrs["reason"] != "patient name corrected at the modality" ||
		drop.Attrs["action"] != "discard" || !strings.HasPrefix(drop.Attrs["by"], "console/cli as uid ") || drop.Attrs["sop_instance_uid"] != orig.uids[1] {
		t.Fatalf("review events:\n%+v\n%+v", fix, drop)
	}
}

// showChange asserts the diff of uid's flagged copy lists want.
func showChange(t *testing.T, b *box, uid string, want control.HeaderChange) {
	t.Helper()
	c, err := b.client.Conflict(context.Background(), uid)
	if err != nil || len(c.Copies) != 1 {
		t.Fatalf("conflict %s: %+v, %v", uid, c, err)
	}
	if !slices.Contains(c.Copies[0].Changes, want) {
		t.Fatalf("diff of %s: %+v (%s), want %+v among them", uid, c.Copies[0].Changes, c.Copies[0].Note, want)
	}
}

func TestConflictResolutionOfUnknownCopyIsNotFound(t *testing.T) {
	b := startBox(t, testConfig(peers.FreePort(t), nil, false), boxOptions{})
	_, err := b.client.ResolveConflict(context.Background(), control.ConflictRequest{SOPInstanceUID: "1.2.3", ConflictID: 7, Action: "discard", Reason: "test"})
	var ce *control.Error
	if !errors.As(err, &ce) || !strings.Contains(ce.Message, "not found") {
		t.Fatalf("unknown copy: %v", err)
	}
}
