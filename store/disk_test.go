package store

import (
	"errors"
	"testing"
)

// TestSpaceModelPurgesBeforeRefusingOnEveryDiskSize checks the rules of
// Space on the disks a box may have, with the default options and the
// default watermarks (85/75 %): the levels are ordered, the Margin is 5 %
// of the disk up to Reserve, and the high watermark, clamped where the disk
// is too small for it, is reached before stores are refused.
func TestSpaceModelPurgesBeforeRefusingOnEveryDiskSize(t *testing.T) {
	o := DefaultOptions().withDefaults()
	const mib = 1 << 20
	t.Logf("floor (Badger's headroom with the default options): %d MiB", o.badgerHeadroom()/mib)
	for _, c := range []struct {
		name    string
		total   uint64
		clamped bool
	}{
		{"600 MB", 600e6, true},
		{"2 GB", 2e9, false}, // with 16 MiB value-log files the floor is 80 MiB: 85 % fits
		{"32 GB", 32e9, false},
		{"1 TB", 1e12, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			sp := o.space(Disk{Total: c.total, Free: c.total})
			if !(sp.Floor < sp.Commit && sp.Commit < sp.Refuse && sp.Refuse < sp.Purge && sp.Purge < sp.Total) {
				t.Fatalf("levels out of order: %+v", sp)
			}
			if want := min(uint64(o.Reserve), c.total/20); sp.Margin != want {
				t.Errorf("margin %d, want %d (5 %% of the disk, at most Reserve)", sp.Margin, want)
			}
			p, clamped := sp.Clamp(Policy{HighWatermark: 0.85, LowWatermark: 0.75})
			if clamped != c.clamped {
				t.Errorf("clamped %v, want %v: %+v", clamped, c.clamped, p)
			}
			if clamped && (p.HighWatermark >= 0.85 || p.HighWatermark <= 0) {
				t.Errorf("high watermark %v: want lowered below 85 %%, above 0", p.HighWatermark)
			}
			if d := p.HighWatermark - p.LowWatermark; d < 0.0999 || d > 0.1001 {
				t.Errorf("watermarks %v/%v: want them 10 points apart as configured", p.HighWatermark, p.LowWatermark)
			}
			// At the high watermark more than the Purge point is free: the
			// purge starts a Margin or more before any store is refused.
			atHigh := uint64((1 - p.HighWatermark) * float64(c.total))
			if atHigh < sp.Purge {
				t.Errorf("at the high watermark %v, %d MiB free: below the purge point %d MiB", p.HighWatermark, atHigh/mib, sp.Purge/mib)
			}
			t.Logf("floor %d MiB, commit %d MiB, refuse %d MiB (%.1f %% used), purge point %d MiB; watermarks %.0f/%.0f %%",
				sp.Floor/mib, sp.Commit/mib, sp.Refuse/mib, 100*(1-float64(sp.Refuse)/float64(c.total)), sp.Purge/mib,
				100*p.HighWatermark, 100*p.LowWatermark)
		})
	}
}

func TestSpaceModelWithWatermarksOffStillPurgesBeforeRefusing(t *testing.T) {
	o := DefaultOptions().withDefaults()
	sp := o.space(Disk{Total: 600e6})
	sp.Free = sp.Refuse - 1 // stores are refused now
	p, clamped := sp.Clamp(Policy{})
	if clamped || p != (Policy{}) {
		t.Fatalf("watermarks off changed to %+v", p)
	}
	need := sp.toFree(p)
	if after := sp.Free + uint64(need); after < sp.Purge+sp.Margin {
		t.Fatalf("purge frees %d bytes: %d free after, want at least %d", need, after, sp.Purge+sp.Margin)
	}
	sp.Free = sp.Purge
	if need := sp.toFree(p); need != 0 {
		t.Fatalf("with the purge point free, %d bytes to free", need)
	}
}

func TestSpaceModelOnADiskSmallerThanTheStoreNeeds(t *testing.T) {
	o := DefaultOptions().withDefaults()
	sp := o.space(Disk{Total: 60e6, Free: 60e6})
	if !sp.Refusing() {
		t.Fatalf("a %d-byte disk with everything free is not refusing: %+v", sp.Total, sp)
	}
	p, clamped := sp.Clamp(Policy{HighWatermark: 0.85, LowWatermark: 0.75})
	if !clamped || p.HighWatermark != 0 || p.LowWatermark != 0 {
		t.Fatalf("watermarks %+v (clamped %v), want 0/0: the purge point alone rules", p, clamped)
	}
}

// TestRoomRanksWritesAndLetsRetentionMakeRoomFirst: between the levels of
// the model, new instance bytes are refused while a commit and an event
// still pass; a refusal of new bytes calls MakeRoom first, and when it
// freed enough the write goes through.
func TestRoomRanksWritesAndLetsRetentionMakeRoomFirst(t *testing.T) {
	o := testOptions()
	made := 0
	o.MakeRoom = func() { made++ }
	s := openTest(t, t.TempDir(), o)
	sp, err := s.Space()
	if err != nil {
		t.Fatal(err)
	}
	free := func(n uint64) {
		s.statfs = func(string) (Disk, error) { return Disk{Total: sp.Total, Free: n}, nil }
	}
	free(sp.Refuse - 1)
	if _, err := s.NewWriter(); !errors.Is(err, ErrFull) || made != 1 {
		t.Fatalf("new writer below the refuse level: %v, MakeRoom called %d times", err, made)
	}
	if _, err := s.room(0, forCommit); err != nil {
		t.Fatalf("commit above its level: %v", err)
	}
	free(sp.Commit - 1)
	if _, err := s.room(0, forCommit); !errors.Is(err, ErrFull) {
		t.Fatalf("commit below its level: %v", err)
	}
	if err := s.Log(Event{Kind: KindStore, Message: "still logged"}); err != nil {
		t.Fatalf("event above the floor: %v", err)
	}
	free(sp.Floor - 1)
	if err := s.Log(Event{Kind: KindStore, Message: "not logged"}); !errors.Is(err, ErrFull) {
		t.Fatalf("event below the floor: %v", err)
	}
	if made != 1 {
		t.Fatalf("MakeRoom called %d times for commits and events, want only for new bytes", made-1)
	}
	// A purge that frees enough lets the write through.
	free(sp.Refuse - 1)
	s.opts.MakeRoom = func() { made++; free(sp.Purge) }
	w, err := s.NewWriter()
	if err != nil {
		t.Fatalf("new writer after MakeRoom freed space: %v", err)
	}
	w.Abort()
}

// A disk whose free space cannot be read refuses new instances as a full
// one does (ErrFull: A700, the disk alarm), not with an error per instance.
func TestUnreadableFreeSpaceRefusesAsFull(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	s.statfs = func(string) (Disk, error) { return Disk{}, errors.New("input/output error") }
	if _, err := s.NewWriter(); !errors.Is(err, ErrFull) {
		t.Fatalf("new writer with statfs failing: %v, want ErrFull", err)
	}
}

// TestCommitSaysWhatItSawOfTheDisk: the appliance watches the disk with the
// commit's own look at it, not a statfs of its own per instance.
func TestCommitSaysWhatItSawOfTheDisk(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	res := put(t, s, meta("1", "1.1", "1.1.1", 1, 1), []byte("small"), "pacs")
	sp, err := s.Space()
	if err != nil {
		t.Fatal(err)
	}
	if res.Space.Total != sp.Total || res.Space.Refuse != sp.Refuse || res.Space.Free == 0 {
		t.Fatalf("commit saw %+v; the disk is %+v", res.Space, sp)
	}
}
