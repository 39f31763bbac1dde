package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais/relais/testdata/powercut"
)

// The destinations of the power-cut test: "pacs" is served by a forwarder
// that delivers, commits and purges; "archive" is never served, so what is
// queued there is kept across every cut.
const (
	pcPACS    = "pacs"
	pcArchive = "archive"
)

// powerCutSeedEnv replays a run: the seed fixes every random choice (what
// is written, when the power goes), not the timing.
const powerCutSeedEnv = "RELAIS_POWERCUT_SEED"

// TestPowerCutLosesNoAcknowledgedInstance runs the store on a filesystem
// that loses every write not yet synced when the power is cut (strict
// POSIX: a file's data is durable after its fsync, a name after its
// directory's; but Badger's own files' names any sync makes durable, as
// ext4 does: see powercut.BadgerFiles), with writers committing instances
// and a forwarder leasing, delivering, committing and purging, and cuts
// the power at random moments while they work. After each reboot every acknowledged instance (Commit
// returned nil before the cut) reads back with the SHA-256 of what was
// written, unless it was committed and so could be purged; the store's
// invariants hold (every record readable, every queue entry and index row
// pointing at a record, counts right); each instance has one queue entry
// per destination, in a state the forwarder had asked for.
func TestPowerCutLosesNoAcknowledgedInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("power-cut test: about a minute of cuts; skipped with -short")
	}
	if raceEnabled {
		t.Skip("power-cut test: the race detector makes it ten times slower; make test runs it without")
	}
	pc, dir := mountPowerCut(t)

	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(powerCutSeedEnv); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("%s: %v", powerCutSeedEnv, err)
		}
	}
	t.Logf("seed %d (%s=%d replays the choices)", seed, powerCutSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	opts := testOptions()
	opts.MemTableSize = 1 << 20 // rotate memtables and value logs often
	opts.ValueLogFileSize = 4 << 20
	// Files of 1–3 MiB are synced ahead while they arrive, so cuts fall
	// between those syncs too.
	defer func(v int64) { syncAhead = v }(syncAhead)
	syncAhead = 512 << 10

	w := newPowerWorld()
	var s *Store
	t.Cleanup(func() {
		if s != nil {
			s.Close()
		}
	})
	start := time.Now()
	var inFlight, found, cut int
	var resent []pcSend
	var opening, checking, running, rebooting time.Duration // where the time goes
	lap := func(d *time.Duration, since time.Time) time.Time {
		now := time.Now()
		*d += now.Sub(since)
		return now
	}
	const cuts = 50
	for ; ; cut++ {
		when := fmt.Sprintf("seed %d, after %d cuts", seed, cut)
		t0 := time.Now()
		var err error
		if s, err = Open(dir, opts); err != nil {
			t.Fatalf("%s: open: %v", when, err)
		}
		t0 = lap(&opening, t0)
		found += w.check(t, s, rng, when)
		w.resend(t, s, resent, when)
		t0 = lap(&checking, t0)
		if t.Failed() || cut == cuts {
			break
		}
		if cut%10 == 0 && cut > 0 {
			t.Logf("%d cuts, %v: %d acknowledged instances held", cut, time.Since(start).Round(time.Millisecond), len(w.acked))
		}

		ld := startPowerLoad(t, s, w, cut, rng.Uint64())
		// Cut after a random number of acknowledged commits (0: while
		// the first ones are still arriving) and of forwarder rounds, and
		// a random pause.
		w.waitFor(rng.IntN(12), rng.IntN(12))
		time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
		inFlight += w.cut()
		pc.Cut()
		t0 = lap(&running, t0)
		ld.stop(w)
		s.Close() // on the cut mount: its writes go nowhere
		s = nil
		pc.Remount()
		resent = w.reboot()
		lap(&rebooting, t0)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d cuts in %v: %d instances acknowledged (%d MiB), %d commits cut in flight, %d acknowledged instances found after a reboot; forwarder: %d delivered, %d committed, %d purged (a cut may undo each); held at the end: %d instances",
		cut, time.Since(start).Round(time.Millisecond), w.ackedTotal, w.ackedBytes>>20, inFlight, found,
		len(w.delivered), len(w.committed), w.purges, st.Instances.Count)
	t.Logf("time: opening %v, checking %v, running until the cut %v, stopping and rebooting %v",
		opening.Round(time.Millisecond), checking.Round(time.Millisecond), running.Round(time.Millisecond), rebooting.Round(time.Millisecond))
}

// powerWorld is what the test knows: what was acknowledged before each
// cut, and what the forwarder asked of the store.
type powerWorld struct {
	mu         sync.Mutex
	cond       sync.Cond
	down       bool              // the power is cut: nothing from now on is acknowledged
	acks       int               // acknowledged since the last reboot
	rounds     int               // forwarder rounds since the last reboot
	stopped    int               // workers that stopped since the last reboot
	backlog    int               // acknowledged, not yet asked to be committed
	idle       bool              // the forwarder's last lease found nothing
	inFlight   map[string]pcSend // commits started and not acknowledged
	acked      map[string]pcInstance
	delivered  map[string]bool // Delivered was called for pacs
	committed  map[string]bool // Committed was called for pacs
	ackedTotal int
	ackedBytes int64
	purges     int // instances Purge reported removed (a cut may undo it)
}

func (w *powerWorld) purged(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.purges += n
}

type pcInstance struct {
	sum   string
	size  int64
	dests []string
	read  bool // its bytes were read back after a reboot
}

// pcSend is an instance being sent: what a modality sends again when the
// box went dark before answering.
type pcSend struct {
	meta  Instance
	data  []byte
	dests []string
}

func newPowerWorld() *powerWorld {
	w := &powerWorld{
		acked:     map[string]pcInstance{},
		inFlight:  map[string]pcSend{},
		delivered: map[string]bool{},
		committed: map[string]bool{},
	}
	w.cond.L = &w.mu
	return w
}

// ack records a commit that returned nil, unless the power was cut before
// it returned: then nothing says whether its syncs came before the cut.
func (w *powerWorld) ack(uid string, in pcInstance) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.down {
		return
	}
	delete(w.inFlight, uid)
	if _, ok := w.acked[uid]; !ok {
		w.ackedTotal++
		w.ackedBytes += in.size
		if !w.committed[uid] { // the forwarder may be quicker than the ack
			w.backlog++
		}
	}
	w.acked[uid] = in
	w.acks++
	w.cond.Broadcast()
}

func (w *powerWorld) begin(send pcSend) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.down {
		w.inFlight[send.meta.SOPInstanceUID] = send
	}
}

// abandon forgets a send that failed before the cut (the test fails).
func (w *powerWorld) abandon(uid string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.down {
		delete(w.inFlight, uid)
	}
}

// isDown says whether the power is cut: errors are expected from then on.
func (w *powerWorld) isDown() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.down
}

// askDelivered and askCommitted record that the forwarder is about to ask
// the store to mark uids delivered or committed: once asked, the entry may
// be in that state after a cut whether or not the call returned.
func (w *powerWorld) askDelivered(uid string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.delivered[uid] = true
}

func (w *powerWorld) askCommitted(uids ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, uid := range uids {
		if _, ok := w.acked[uid]; ok && !w.committed[uid] {
			w.backlog--
		}
		w.committed[uid] = true
	}
	w.cond.Broadcast()
}

// maxBacklog bounds the instances acknowledged and not yet committed:
// writers wait for the forwarder beyond it, so the store, and the reading
// of it at each reboot, stay small.
const maxBacklog = 24

// waitRoom waits until the backlog is under maxBacklog, the forwarder has
// nothing to do, or the load stops.
func (w *powerWorld) waitRoom(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.backlog >= maxBacklog && !w.idle && ctx.Err() == nil && w.stopped == 0 {
		w.cond.Wait()
	}
}

// wake wakes whoever waits, to see that the load is stopping.
func (w *powerWorld) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cond.Broadcast()
}

// waitFor waits for acks acknowledgements and rounds forwarder rounds
// since the reboot, or for the workers to stop (they do on an error, which
// fails the test).
func (w *powerWorld) waitFor(acks, rounds int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for (w.acks < acks || w.rounds < rounds) && w.stopped == 0 {
		w.cond.Wait()
	}
}

// forwarded counts a forwarder round, which leased n entries.
func (w *powerWorld) forwarded(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rounds++
	w.idle = n == 0
	w.cond.Broadcast()
}

func (w *powerWorld) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped++
	w.cond.Broadcast()
}

// cut marks the power cut and returns how many commits were in flight.
func (w *powerWorld) cut() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.down = true
	return len(w.inFlight)
}

// reboot brings the power back and returns the sends cut in flight.
func (w *powerWorld) reboot() []pcSend {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.down, w.acks, w.rounds, w.stopped, w.idle = false, 0, 0, 0, false
	w.backlog = 0
	for uid := range w.acked {
		if !w.committed[uid] {
			w.backlog++
		}
	}
	sends := slices.Collect(maps.Values(w.inFlight))
	clear(w.inFlight)
	slices.SortFunc(sends, func(a, b pcSend) int { return strings.Compare(a.meta.SOPInstanceUID, b.meta.SOPInstanceUID) })
	return sends
}

// resend sends again, as their modalities do, the instances whose commit
// the cut interrupted. Each is answered Success: stored now, or a
// duplicate of the copy that reached the disk.
func (w *powerWorld) resend(t *testing.T, s *Store, sends []pcSend, when string) {
	t.Helper()
	for _, in := range sends {
		uid := in.meta.SOPInstanceUID
		res, err := tryPut(s, in.meta, in.data, in.dests...)
		if err != nil {
			t.Errorf("%s: %s sent again: %v", when, uid, err)
			continue
		}
		raw := sha256.Sum256(in.data)
		sum := hex.EncodeToString(raw[:])
		w.ack(uid, pcInstance{sum: sum, size: int64(len(in.data)), dests: in.dests})
		if got := readSum(context.Background(), s, res.Instance); got != sum {
			t.Errorf("%s: %s sent again after the cut, answered Success (%v), reads back as %s, sent %d bytes %s",
				when, uid, res.Outcome, got, len(in.data), sum)
		}
	}
}

// check asserts, after a reboot, that every acknowledged instance is
// there and intact (or was committed, so may be purged), with its queue
// entries, and that the store's invariants hold. checkConsistent reads
// every record's bytes and compares them with the record's SHA-256, and
// each acknowledged record's SHA-256 is compared with what was written; the
// bytes are also read here, through the forwarder's path, once after their
// commit and then now and then (reading all of them twice at every reboot
// would cost more than the rest of the test). It returns how many
// acknowledged instances it found.
func (w *powerWorld) check(t *testing.T, s *Store, rng *rand.Rand, when string) int {
	t.Helper()
	checkConsistent(t, s)
	ctx := context.Background()
	n := 0
	for _, uid := range slices.Sorted(maps.Keys(w.acked)) {
		in := w.acked[uid]
		rec, err := s.Instance(uid)
		if errors.Is(err, ErrNotFound) {
			if slices.Equal(in.dests, []string{pcPACS}) && w.committed[uid] {
				delete(w.acked, uid) // committed, then purged: no longer needed here
				continue
			}
			t.Errorf("%s: acknowledged instance %s (%d bytes, to %v, delivered %v, committed %v) lost",
				when, uid, in.size, in.dests, w.delivered[uid], w.committed[uid])
			continue
		}
		if err != nil {
			t.Errorf("%s: acknowledged instance %s: %v", when, uid, err)
			continue
		}
		n++
		if rec.SHA256 != in.sum || rec.Size != in.size {
			t.Errorf("%s: acknowledged instance %s is recorded as %d bytes sha256 %s, written %d bytes %s",
				when, uid, rec.Size, rec.SHA256, in.size, in.sum)
		}
		if !in.read || rng.IntN(8) == 0 {
			if got := readSum(ctx, s, rec); got != in.sum {
				t.Errorf("%s: acknowledged instance %s reads back as %s, written %d bytes %s", when, uid, got, in.size, in.sum)
			}
			in.read = true
			w.acked[uid] = in
		}
		es, err := s.Entries(uid)
		if err != nil {
			t.Errorf("%s: entries of %s: %v", when, uid, err)
			continue
		}
		var dests []string
		for _, e := range es {
			dests = append(dests, e.Dest)
			switch {
			case e.State == Committed && !w.committed[uid]:
				t.Errorf("%s: %s is committed at %s, never asked", when, uid, e.Dest)
			case e.State == Delivered && !w.delivered[uid]:
				t.Errorf("%s: %s is delivered at %s, never asked", when, uid, e.Dest)
			}
		}
		slices.Sort(dests)
		if !slices.Equal(dests, in.dests) {
			t.Errorf("%s: %s is queued for %v, committed for %v", when, uid, dests, in.dests)
		}
	}
	return n
}

// mountPowerCut mounts a power-cut filesystem, journaled for Badger's
// files as ext4 is, and returns it with the store's folder on it. The
// folder exists before the store first opens, durably: the box's image
// makes it.
func mountPowerCut(t *testing.T) (*powercut.FS, string) {
	t.Helper()
	pc := powercut.MountJournaled(t, filepath.Join(t.TempDir(), "backing"), powercut.BadgerFiles)
	dir := filepath.Join(pc.Dir(), "store")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syncDir(pc.Dir()); err != nil {
		t.Fatal(err)
	}
	return pc, dir
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readSum reads a stored copy through the store and returns its SHA-256
// (or the error, which then differs from any sum).
func readSum(ctx context.Context, s *Store, rec Instance) string {
	r := s.OpenInstance(ctx, rec)
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return err.Error()
	}
	return hex.EncodeToString(h.Sum(nil))
}

// powerLoad is the work running when the power goes: writers and a
// forwarder.
type powerLoad struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (l *powerLoad) stop(w *powerWorld) {
	l.cancel()
	w.wake()
	l.wg.Wait()
}

// startPowerLoad starts three writers, committing instances of a few KiB
// to a few MiB (and now and then aborting one, or sending the last one
// again), and a forwarder serving pcPACS.
func startPowerLoad(t *testing.T, s *Store, w *powerWorld, cut int, seed uint64) *powerLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &powerLoad{cancel: cancel}
	for g := range 3 {
		l.wg.Go(func() {
			defer w.stop()
			powerWriter(ctx, t, s, w, cut, g, seed)
		})
	}
	l.wg.Go(func() {
		defer w.stop()
		powerForwarder(ctx, t, s, w, seed)
	})
	return l
}

func powerWriter(ctx context.Context, t *testing.T, s *Store, w *powerWorld, cut, g int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, uint64(g)+1))
	var fill [32]byte
	for i := range fill {
		fill[i] = byte(rng.Uint32())
	}
	random := rand.NewChaCha8(fill)
	var last Instance
	var lastData []byte
	for i := 0; ctx.Err() == nil; i++ {
		if w.waitRoom(ctx); ctx.Err() != nil {
			return
		}
		// Every fourth study also goes to the archive and stays; its
		// instances are small, so that what is kept stays quick to read.
		studyNo := i / 4
		study := fmt.Sprintf("2.25.%d.%d.%d", cut, g, studyNo)
		dests := []string{pcPACS}
		var size int
		switch r := rng.IntN(100); {
		case studyNo%4 == 3:
			dests = []string{pcArchive, pcPACS}
			size = 1<<10 + rng.IntN(63<<10)
		case r < 75:
			size = 2<<10 + rng.IntN(62<<10)
		case r < 95:
			size = 64<<10 + rng.IntN(448<<10)
		default:
			size = 1<<20 + rng.IntN(2<<20)
		}
		m := meta(study, study+".1", fmt.Sprintf("%s.%d", study, i), 1, i)
		data := make([]byte, size)
		random.Read(data)
		switch r := rng.IntN(20); {
		case r == 0 && lastData != nil: // the same instance again: a duplicate
			// (of an archived one: never purged, so stored once)
			m, data, dests = last, lastData, []string{pcArchive, pcPACS}
		case r == 1: // an association aborted mid-instance
			if wr, err := s.NewWriter(); err == nil {
				wr.Write(data[:len(data)/2])
				wr.Abort()
			}
			continue
		}
		sum := sha256.Sum256(data)
		w.begin(pcSend{meta: m, data: data, dests: dests})
		_, err := tryPut(s, m, data, dests...)
		if err != nil {
			w.abandon(m.SOPInstanceUID)
			if !w.isDown() {
				t.Errorf("writer %d: commit %s before the cut: %v", g, m.SOPInstanceUID, err)
			}
			return
		}
		w.ack(m.SOPInstanceUID, pcInstance{sum: hex.EncodeToString(sum[:]), size: int64(len(data)), dests: dests})
		if len(dests) == 2 {
			last, lastData = m, data
		}
	}
}

// powerForwarder serves pcPACS as the appliance's forwarder does: it
// leases entries, reads their bytes, marks them delivered (or failed, or
// releases them), asks for their commitment, and purges what is done.
func powerForwarder(ctx context.Context, t *testing.T, s *Store, w *powerWorld, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 100))
	fail := func(what string, err error) bool {
		if err != nil && !w.isDown() && ctx.Err() == nil {
			t.Errorf("forwarder: %s before the cut: %v", what, err)
		}
		return err != nil
	}
	for round := 0; ctx.Err() == nil; round++ {
		es, err := s.Lease(ctx, pcPACS, 16, time.Minute)
		if fail("lease", err) {
			return
		}
		var sent []string
		for _, e := range es {
			switch rng.IntN(10) {
			case 0:
				_, err = s.Failed(pcPACS, e.SOPInstanceUID, Failure{Reason: "association aborted", RetryAt: time.Now()})
			case 1:
				err = s.Release(pcPACS, e.SOPInstanceUID)
			default:
				var rec Instance
				rec, err = s.Instance(e.SOPInstanceUID)
				if err == nil {
					if sum := readSum(ctx, s, rec); sum != rec.SHA256 {
						err = fmt.Errorf("read %s: %s", e.SOPInstanceUID, sum)
					}
				}
				if err == nil {
					w.askDelivered(e.SOPInstanceUID)
					err = s.Delivered(pcPACS, e.SOPInstanceUID)
					sent = append(sent, e.SOPInstanceUID)
				}
			}
			if fail("entry "+e.SOPInstanceUID, err) {
				return
			}
		}
		if len(sent) > 0 {
			w.askCommitted(sent...)
			if fail("commit", s.Committed(pcPACS, sent...)) {
				return
			}
		}
		if round%8 == 0 { // first thing after a reboot too
			res, err := s.Purge(ctx, Policy{MaxAge: time.Nanosecond})
			if fail("purge", err) {
				return
			}
			w.purged(res.Instances)
		}
		w.forwarded(len(es))
		if len(es) == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
}
