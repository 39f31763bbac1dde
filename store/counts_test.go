package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// churn applies one random operation of those that change what the counts
// describe. Errors a caller may legitimately get (nothing to act on) are
// passed over; any other fails the test.
type churn struct {
	t   testing.TB
	s   *Store
	c   *clock
	rng *rand.Rand

	purged, resolved int // instances purged, conflicts resolved
}

var churnDests = [][]string{nil, {"pacs"}, {"archive"}, {"pacs", "archive"}}

func (ch *churn) dest() string { return []string{"pacs", "archive"}[ch.rng.IntN(2)] }

func (ch *churn) study() string { return fmt.Sprintf("S%d", ch.rng.IntN(20)) }

// step runs operation op (taken modulo the number of operations) and
// returns its name.
func (ch *churn) step(op int) string {
	s, rng, ctx := ch.s, ch.rng, context.Background()
	var err error
	var name string
	switch op % 13 {
	case 0, 1, 2: // new instance, duplicate or conflicting copy
		name = "commit"
		st := ch.study()
		uid := fmt.Sprintf("%s.%d", st, rng.IntN(6))
		variant := rng.IntN(4) / 3 // mostly the same bytes: duplicates
		data := []byte(fmt.Sprintf("%s bytes %d %s", uid, variant, strings.Repeat("x", rng.IntN(200))))
		if variant == 0 {
			data = []byte(uid + " bytes")
		}
		m := meta(st, st+".1", uid, 1, rng.IntN(6))
		m.Urgent = rng.IntN(5) == 0
		_, err = tryPut(s, m, data, churnDests[rng.IntN(len(churnDests))]...)
	case 3:
		name = "queue held"
		_, err = s.QueueHeld(ctx, ch.dest(), nil)
	case 4:
		name = "lease"
		_, err = s.Lease(ctx, ch.dest(), 1+rng.IntN(4), time.Minute)
	case 5:
		name = "deliver"
		dest := ch.dest()
		var es []Entry
		if es, err = s.Lease(ctx, dest, 1+rng.IntN(3), time.Minute); err == nil {
			for _, e := range es {
				if err = s.Delivered(dest, e.SOPInstanceUID); err != nil {
					break
				}
			}
		}
	case 6:
		name = "fail"
		dest := ch.dest()
		var es []Entry
		if es, err = s.Lease(ctx, dest, 2, time.Minute); err == nil {
			for _, e := range es {
				f := Failure{Reason: "refused", RetryAt: ch.c.t, ParkAfter: 2}
				if _, err = s.Failed(dest, e.SOPInstanceUID, f); err != nil {
					break
				}
			}
		}
	case 7:
		name = "commit report"
		dest := ch.dest()
		var es []Entry
		if es, err = s.AwaitingCommitment(ctx, dest); err == nil && len(es) > 0 {
			if e := es[rng.IntN(len(es))]; rng.IntN(4) == 0 {
				_, err = s.Failed(dest, e.SOPInstanceUID, Failure{Reason: "not held", Undelivers: true, ParkAfter: 2})
				break
			}
			var uids []string
			for _, e := range es {
				uids = append(uids, e.SOPInstanceUID)
			}
			err = s.Committed(dest, uids...)
		}
	case 8:
		name = "abandon or retry"
		dest := ch.dest()
		var es []Entry
		if es, err = s.Parked(ctx, dest, 0); err == nil && len(es) > 0 {
			if rng.IntN(2) == 0 {
				err = s.Abandon(dest, es[0].SOPInstanceUID, "gone")
			} else {
				_, err = s.RetryNow(ctx, dest)
			}
		}
	case 9:
		name = "resend or urgent"
		if rng.IntN(2) == 0 {
			_, err = s.Resend(ctx, ch.dest(), ch.study())
		} else {
			err = s.MarkUrgent(ctx, ch.study(), rng.IntN(2) == 0)
		}
	case 10:
		name = "release"
		dest := ch.dest()
		var es []Entry
		if es, err = s.Lease(ctx, dest, 3, time.Minute); err == nil && len(es) > 0 {
			err = s.Release(dest, es[0].SOPInstanceUID)
		}
	case 11:
		name = "purge"
		ch.c.t = ch.c.t.Add(time.Hour)
		var res PurgeResult
		res, err = s.Purge(ctx, Policy{MaxAge: 2 * time.Hour})
		ch.purged += res.Instances
	case 12:
		name = "resolve conflict"
		var cs []Conflicted
		if cs, err = s.ListConflicts(ctx, 5); err == nil && len(cs) > 0 {
			c := cs[rng.IntN(len(cs))]
			_, err = s.ResolveConflict(c.Copies[0].SOPInstanceUID, c.Copies[0].ID, []Action{Correct, Discard}[rng.IntN(2)])
			if err == nil {
				ch.resolved++
			}
		}
	}
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrNotParked) && !errors.Is(err, ErrInFlight) {
		ch.t.Fatalf("%s: %v", name, err)
	}
	return name
}

func TestCountsMatchRecountAfterRandomOperations(t *testing.T) {
	dir := t.TempDir()
	c := newClock()
	o := testOptions()
	o.Now = c.now
	s := openTest(t, dir, o)
	if _, err := s.UpdateDestination("archive", func(d *Destination) { d.NoCommitment = true }); err != nil {
		t.Fatal(err)
	}
	ch := &churn{t: t, s: s, c: c, rng: rand.New(rand.NewPCG(13, 13))}
	ops := map[string]int{}
	for i := range 600 {
		ops[ch.step(ch.rng.IntN(13))]++
		checkCounts(t, ch.s)
		if t.Failed() {
			t.Fatalf("after step %d (%v)", i, ops)
		}
		if i%100 == 99 { // the counts are in the store, not in memory
			ch.s = reopen(t, ch.s, dir, o)
			s = ch.s
		}
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if ch.purged == 0 || ch.resolved == 0 {
		t.Errorf("the operations purged %d instances and resolved %d conflicts: change the mix", ch.purged, ch.resolved)
	}
	t.Logf("operations %v; %d instances purged, %d conflicts resolved; at the end %d studies, %d instances, %d conflicts, states %v", ops, ch.purged, ch.resolved, st.Studies, st.Instances.Count, st.Conflicts.Count, st.States)
}

func TestCountsExactUnderConcurrentChanges(t *testing.T) {
	c := newClock()
	o := testOptions()
	var clockMu sync.Mutex
	o.Now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return c.t }
	dir := t.TempDir()
	s := openTest(t, dir, o)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			// Each goroutine has its own random source; the clock only moves
			// forward, under clockMu, in purge steps (op 11 is left out).
			ch := &churn{t: t, s: s, c: &clock{t: c.t}, rng: rand.New(rand.NewPCG(uint64(g), 5))}
			for range 150 {
				op := ch.rng.IntN(13)
				if op == 11 {
					clockMu.Lock()
					c.t = c.t.Add(time.Hour)
					clockMu.Unlock()
					_, err := s.Purge(context.Background(), Policy{MaxAge: 2 * time.Hour})
					if err != nil {
						t.Error(err)
					}
					continue
				}
				ch.step(op)
			}
		})
	}
	wg.Wait()
	checkCounts(t, s)
	checkConsistent(t, reopen(t, s, dir, o)) // Open released the leases
}

func TestCountsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOptions())
	put(t, s, meta("A", "A.1", "a1", 1, 1), []byte("one"), "pacs")
	put(t, s, meta("A", "A.1", "a2", 1, 2), []byte("two!"), "pacs", "archive")
	put(t, s, meta("B", "B.1", "b1", 1, 1), []byte("held"))
	put(t, s, meta("A", "A.1", "a1", 1, 1), []byte("other"), "pacs") // a conflict
	deliver(t, s, "pacs", "a1")
	before, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, dir, testOptions())
	after, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if after.Instances != (Tally{3, 11}) || after.Conflicts != (Tally{1, 5}) || after.Studies != 2 || after.Patients != 2 {
		t.Errorf("after reopen: %+v", after)
	}
	if q := after.Queues["pacs"]; q.Depth != 0 || q.States[Delivered] != (Tally{2, 7}) {
		t.Errorf("pacs after reopen: %+v", q)
	}
	if q := after.Queues["archive"]; q.Depth != 1 || !q.OldestWaiting.Equal(before.Queues["archive"].OldestWaiting) || q.OldestWaiting.IsZero() {
		t.Errorf("archive after reopen: %+v, before %+v", q, before.Queues["archive"])
	}
	checkConsistent(t, s)
}

// makeOldStore makes s look like a store of format 1: it removes the rows
// and counters that format did not have and the version key, and leaves a
// stale parked row of the kind format 1 could leave (see derivedTags).
func makeOldStore(t *testing.T, s *Store) {
	t.Helper()
	added := []byte{tagFormat, tagReader, tagTotal, tagTally, tagStudyTally, tagStudyError, tagWaitingSince, tagOldest, tagHeld, tagDelivered}
	if err := s.db.DropPrefix(prefixesOf(added)...); err != nil {
		t.Fatal(err)
	}
	if err := s.change(func(txn *badger.Txn) error { return txn.Set(parkedKey("pacs", "stale"), nil) }); err != nil {
		t.Fatal(err)
	}
	for _, tag := range added {
		if n := countKeys(t, s, tag); n != 0 {
			t.Fatalf("%d keys %q left", n, tag)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func prefixesOf(tags []byte) [][]byte {
	var out [][]byte
	for _, tag := range tags {
		out = append(out, []byte{tag})
	}
	return out
}

// reopen closes s and opens the store in dir again.
func reopen(t *testing.T, s *Store, dir string, o Options) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return openTest(t, dir, o)
}

// churned opens a store in dir and applies 300 random operations to it
// (seed picks them). It returns the store, the options it was opened with
// and its stats.
func churned(t *testing.T, dir string, seed uint64) (*Store, Options, Stats) {
	t.Helper()
	c := newClock()
	o := testOptions()
	o.Now = c.now
	ch := &churn{t: t, s: openTest(t, dir, o), c: c, rng: rand.New(rand.NewPCG(seed, seed))}
	for range 300 {
		ch.step(ch.rng.IntN(13))
	}
	st, err := ch.s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return ch.s, o, st
}

func TestUpgradeBuildsCountsOnceAtOpen(t *testing.T) {
	dir := t.TempDir()
	s, o, before := churned(t, dir, 3)
	if before.Instances.Count == 0 || len(before.Queues) == 0 {
		t.Fatalf("nothing to upgrade: %+v", before)
	}
	makeOldStore(t, s)

	for i, want := range []string{fmt.Sprintf("building counters: %d instances…", before.Instances.Count), ""} {
		log := openLogged(t, dir, o, func(s *Store) {
			after, err := s.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if after.Instances != before.Instances || after.Studies != before.Studies || len(after.Queues) != len(before.Queues) {
				t.Errorf("open %d: %+v, before the upgrade %+v", i, after, before)
			}
			checkConsistent(t, s)
		})
		built := strings.Contains(log, "building counters")
		if want != "" && !strings.Contains(log, want) || want == "" && built {
			t.Errorf("open %d logged %q, want %q", i, log, want)
		}
	}
}

// openLogged opens the store in dir, calls fn with it, closes it and
// returns what it logged. The log is read once the store is closed: Badger
// logs from its goroutines.
func openLogged(t *testing.T, dir string, o Options, fn func(s *Store)) string {
	t.Helper()
	var log bytes.Buffer
	o.Logger = slog.New(slog.NewTextHandler(&log, nil))
	s := openTest(t, dir, o)
	fn(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return log.String()
}

func TestNewerFormatIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOptions())
	put(t, s, meta("A", "A.1", "a1", 1, 1), []byte("one"), "pacs")
	setFormat(t, s, formatVersion+1, formatVersion+1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, testOptions())
	if !errors.Is(err, ErrNewerFormat) || !strings.Contains(err.Error(), fmt.Sprintf("format %d", formatVersion+1)) {
		t.Fatalf("open of a newer store: %v", err)
	}
	t.Logf("refused: %v", err)
}

// A rollback: the update guard switched a crash-looping update back to
// this version after the update had upgraded the store. A store of a newer
// format that says this version can read it opens, is said, and serves
// everything it holds; one that does not say so is refused, untouched.
func TestNewerFormatThisVersionReadsOpensAfterRollback(t *testing.T) {
	dir := t.TempDir()
	s, o, before := churned(t, dir, 11)
	// A row of the newer version's, under a tag this one does not know.
	if err := s.change(func(txn *badger.Txn) error { return txn.Set([]byte("~new"), []byte("its own")) }); err != nil {
		t.Fatal(err)
	}
	setFormat(t, s, formatVersion+1, formatVersion)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for open := range 2 {
		openLogged(t, dir, o, func(s *Store) {
			checkConsistent(t, s)
			after, err := s.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if after.Instances != before.Instances || len(after.Queues) != len(before.Queues) {
				t.Errorf("open %d: %+v, %d queues; want %+v, %d", open, after.Instances, len(after.Queues), before.Instances, len(before.Queues))
			}
			for dest, q := range before.Queues {
				if after.Queues[dest].Depth != q.Depth {
					t.Errorf("open %d: %s holds %d waiting, want %d", open, dest, after.Queues[dest].Depth, q.Depth)
				}
			}
			if v, err := s.readFormat(); err != nil || v != formatVersion {
				t.Errorf("open %d: format %d, %v; want this version's, so the newer one upgrades again", open, v, err)
			}
			evs, err := s.Events(t.Context(), EventQuery{Kinds: []Kind{KindStore}})
			if err != nil {
				t.Fatal(err)
			}
			said := 0
			for _, e := range evs {
				if strings.Contains(e.Message, "store opened by an older relaisd") {
					said++
					if e.Severity != Warning || !strings.Contains(e.Message, fmt.Sprintf("format %d", formatVersion+1)) {
						t.Errorf("open %d: event %+v", open, e)
					}
				}
			}
			if said != 1 {
				t.Errorf("open %d: %d rollback events in %+v, want 1 (said at the first open only)", open, said, evs)
			}
		})
	}

	// Newer than this version reads: refused, and left as it was.
	s = openTest(t, dir, o)
	setFormat(t, s, formatVersion+1, formatVersion+1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, o); !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("open of a store this version cannot read: %v", err)
	}
}

// The rule oldestReader states, for the format changes to come: the version
// before must open what this one wrote (see oldestReader).
func TestFormatStaysReadableByTheVersionBefore(t *testing.T) {
	if formatVersion > 4 && oldestReader >= formatVersion {
		t.Fatalf("format %d can be opened by format %d at the oldest: a rollback to the version before this one would leave the box refusing its own store; keep the change readable by format %d (new tags, rebuilt at upgrade), or gate the upgrade on the update guard's verdict", formatVersion, oldestReader, formatVersion-1)
	}
	if oldestReader > formatVersion {
		t.Fatalf("oldestReader %d is newer than the format %d", oldestReader, formatVersion)
	}
}

// An upgrade runs again over the rows an older version left stale: after a
// rollback, that version kept the records but not the newer version's
// additions. Here the study tallies of format 4 are left wrong by "format
// 3", and the next upgrade puts them right.
func TestUpgradeAgainRebuildsWhatTheVersionBeforeLeftStale(t *testing.T) {
	dir := t.TempDir()
	s, o, _ := churned(t, dir, 13)
	var stale [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		return scan(t.Context(), txn, []byte{tagStudyTally}, false, func(item *badger.Item) (bool, error) {
			stale = append(stale, item.KeyCopy(nil))
			return true, nil
		})
	})
	if err != nil || len(stale) == 0 {
		t.Fatalf("%d study tallies, %v", len(stale), err)
	}
	err = s.change(func(txn *badger.Txn) error {
		for _, k := range stale {
			if err := txn.Set(k, encodeTally(Tally{Count: 99, Bytes: 99})); err != nil {
				return err
			}
		}
		return txn.Set(studyTallyKey("no such study", "pacs", Failed), encodeTally(Tally{Count: 1}))
	})
	if err != nil {
		t.Fatal(err)
	}
	setFormat(t, s, 3, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	openLogged(t, dir, o, func(s *Store) {
		checkConsistent(t, s) // checkCounts: the tallies equal a recount
	})
}

// corrupt overwrites the value under k with bytes no decoder accepts, so a
// read of it fails: what a call does not read cannot make it fail.
func corrupt(t *testing.T, s *Store, k []byte) {
	t.Helper()
	if err := s.change(func(txn *badger.Txn) error { return txn.Set(k, []byte("{corrupt")) }); err != nil {
		t.Fatal(err)
	}
}

func TestQueueHeldAndAwaitingCommitmentReadOnlyTheirIndex(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	for i := range 40 {
		put(t, s, meta("A", "A.1", fmt.Sprintf("a%d", i), 1, i), []byte("queued"), "pacs")
	}
	for i := range 3 {
		put(t, s, meta("H", "H.1", fmt.Sprintf("h%d", i), 1, i), []byte("held"))
	}
	deliver(t, s, "pacs", "a0") // leases and delivers all 40
	if err := s.Committed("pacs", "a0", "a1"); err != nil {
		t.Fatal(err)
	}
	// Records and entries outside the indexes become unreadable.
	for i := range 40 {
		uid := fmt.Sprintf("a%d", i)
		corrupt(t, s, instanceKey(uid))
		if i < 2 {
			corrupt(t, s, queueKey("pacs", uid))
		}
	}
	es, err := s.AwaitingCommitment(t.Context(), "pacs")
	if err != nil || len(es) != 38 {
		t.Fatalf("awaiting commitment: %d entries, %v", len(es), err)
	}
	for i := 1; i < len(es); i++ {
		if es[i].ReceivedAt.Before(es[i-1].ReceivedAt) {
			t.Fatalf("awaiting commitment out of receive order at %d", i)
		}
	}
	n, err := s.QueueHeld(t.Context(), "archive", nil)
	if err != nil || n != 3 {
		t.Fatalf("queue held: %d, %v", n, err)
	}
	if n, err := s.QueueHeld(t.Context(), "archive", nil); err != nil || n != 0 {
		t.Fatalf("queue held again: %d, %v", n, err)
	}
}

func TestRecentStudiesNewestFirstReadsOnlyThose(t *testing.T) {
	s, c := openClocked(t)
	storeStudies(t, s, c, 10, 10, "pacs") // S0 oldest … S9 newest
	put(t, s, meta("S2", "S2.1", "S2.1.2", 1, 2), []byte("late"), "pacs")
	uids := func(sts []Study) (out []string) {
		for _, st := range sts {
			out = append(out, st.StudyInstanceUID)
		}
		return out
	}
	for limit, want := range map[int]string{1: "[S2]", 3: "[S2 S9 S8]", 11: "[S2 S9 S8 S7 S6 S5 S4 S3 S1 S0]"} {
		sts, err := s.RecentStudies(t.Context(), limit)
		if got := fmt.Sprint(uids(sts)); err != nil || got != want {
			t.Errorf("RecentStudies(%d) = %s, %v; want %s", limit, got, err, want)
		}
	}
	corrupt(t, s, studyKey("S0")) // the oldest: a walk of every study fails on it
	if _, err := s.Studies(t.Context(), ""); err == nil {
		t.Fatal("Studies read past a corrupt study record")
	}
	if sts, err := s.RecentStudies(t.Context(), 3); err != nil || len(sts) != 3 {
		t.Fatalf("RecentStudies(3) read more than 3 studies: %v, %v", uids(sts), err)
	}
}

func TestStudyProgressReadsOnlyItsTallies(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	for i := range 3 {
		put(t, s, meta("A", "A.1", fmt.Sprintf("a%d", i), 1, i), []byte(fmt.Sprintf("a%d", i)), "pacs", "archive")
	}
	put(t, s, meta("B", "B.1", "b0", 1, 0), []byte("b0"), "pacs")
	if got := leaseUIDs(t, s, "pacs", 10); len(got) != 4 {
		t.Fatalf("leased %v", got)
	}
	for _, f := range []struct {
		uid string
		f   Failure
	}{{"a0", Failure{Reason: "refused"}}, {"a1", Failure{Reason: "timed out", ParkAfter: 1}}, {"b0", Failure{Reason: "b's"}}} {
		if _, err := s.Failed("pacs", f.uid, f.f); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delivered("pacs", "a2"); err != nil {
		t.Fatal(err)
	}
	// What the records say cannot be read: only the tallies are.
	for i := range 3 {
		uid := fmt.Sprintf("a%d", i)
		corrupt(t, s, instanceKey(uid))
		corrupt(t, s, queueKey("pacs", uid))
	}
	got, err := s.StudyProgress(t.Context(), "A")
	if err != nil {
		t.Fatal(err)
	}
	want := []StudyAtDest{ // by name: "pacs" is the shorter, the first key
		{Dest: "archive", States: map[State]Tally{Pending: {3, 6}}},
		{Dest: "pacs", States: map[State]Tally{Failed: {1, 2}, Parked: {1, 2}, Delivered: {1, 2}}, LastError: "timed out"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("progress of A: %+v, want %+v", got, want)
	}
	if got, err := s.StudyProgress(t.Context(), "none"); err != nil || len(got) != 0 {
		t.Errorf("progress of no study: %+v, %v", got, err)
	}
}

func TestStudyErrorIsTheLastAndGoesWithTheFailures(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	for i := range 3 {
		put(t, s, meta("A", "A.1", fmt.Sprintf("a%d", i), 1, i), []byte(fmt.Sprintf("a%d", i)), "pacs")
	}
	lastError := func() string {
		t.Helper()
		ps, err := s.StudyProgress(t.Context(), "A")
		if err != nil || len(ps) != 1 {
			t.Fatalf("progress: %+v, %v", ps, err)
		}
		return ps[0].LastError
	}
	leaseUIDs(t, s, "pacs", 10)
	for _, f := range []struct{ uid, reason string }{{"a2", "first"}, {"a0", "second"}} {
		if _, err := s.Failed("pacs", f.uid, Failure{Reason: f.reason}); err != nil {
			t.Fatal(err)
		}
	}
	if got := lastError(); got != "second" {
		t.Errorf("after two failures: %q, want the later one", got)
	}
	if err := s.MarkUrgent(t.Context(), "A", true); err != nil { // changes the entries, fails none
		t.Fatal(err)
	}
	if got := lastError(); got != "second" {
		t.Errorf("after marking urgent: %q", got)
	}
	if _, err := s.RetryNow(t.Context(), "pacs", "a0"); err != nil {
		t.Fatal(err)
	}
	if got := lastError(); got != "second" {
		t.Errorf("with a2 still failing: %q, want the last one recorded", got)
	}
	if _, err := s.RetryNow(t.Context(), "pacs"); err != nil {
		t.Fatal(err)
	}
	if got := lastError(); got != "" {
		t.Errorf("with none failing: %q", got)
	}
	if n := countKeys(t, s, tagStudyError); n != 0 {
		t.Errorf("%d error rows left with none failing", n)
	}
}

// makeFormat3 makes s look like a store of format 3: without the study
// tallies and error rows, and with its version.
func makeFormat3(t *testing.T, s *Store) {
	t.Helper()
	if err := s.db.DropPrefix(prefixesOf(studyTags)...); err != nil {
		t.Fatal(err)
	}
	setFormat(t, s, 3, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// setFormat records format v in s, and r as its oldest reader unless r is
// 0 (formats before 4 record none).
func setFormat(t *testing.T, s *Store, v, r uint64) {
	t.Helper()
	err := s.change(func(txn *badger.Txn) error {
		if r == 0 {
			if err := txn.Delete(readerKey()); err != nil {
				return err
			}
		} else if err := txn.Set(readerKey(), binary.BigEndian.AppendUint64(nil, r)); err != nil {
			return err
		}
		return txn.Set(formatKey(), binary.BigEndian.AppendUint64(nil, v))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestUpgradeFromFormat3BuildsStudyTallies(t *testing.T) {
	dir := t.TempDir()
	s, o, before := churned(t, dir, 7)
	if before.States[Failed].Count+before.States[Parked].Count == 0 || countKeys(t, s, tagStudyTally) == 0 {
		t.Fatalf("nothing failing or tallied to upgrade: %+v", before)
	}
	makeFormat3(t, s)

	for open, want := range []string{fmt.Sprintf("building study tallies: %d instances…", before.Instances.Count), ""} {
		log := openLogged(t, dir, o, func(s *Store) {
			checkConsistent(t, s) // checkCounts: the tallies and error rows equal a recount
			if v, err := s.readFormat(); err != nil || v != formatVersion {
				t.Errorf("open %d: format %d, %v", open, v, err)
			}
			evs, err := s.Events(t.Context(), EventQuery{Kinds: []Kind{KindStore}})
			if err != nil {
				t.Fatal(err)
			}
			msg := fmt.Sprintf("store upgraded: study tallies built for %d instances (format 3 to %d)", before.Instances.Count+before.Conflicts.Count, formatVersion)
			if len(evs) != 1 || evs[0].Message != msg {
				t.Errorf("open %d: events %+v, want one %q", open, evs, msg)
			}
		})
		built := strings.Contains(log, "building")
		if want != "" && (!strings.Contains(log, want) || !strings.Contains(log, "study tallies built")) || want == "" && built {
			t.Errorf("open %d logged %q, want %q", open, log, want)
		}
	}
}
