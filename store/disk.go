package store

import (
	"errors"
	"fmt"
	"math"

	"golang.org/x/sys/unix"
)

// ErrFull is returned (wrapped) when a write would eat into the free space
// the store keeps (see Space). The write changed nothing; the store stays
// usable, and writes succeed again once a purge or the operator frees
// space. The SCP answers it with Out of Resources (A700).
var ErrFull = errors.New("store: disk full")

// Disk is the space of the filesystem holding the store.
type Disk struct {
	Total uint64 // bytes
	Free  uint64 // bytes available to the store (statfs f_bavail)
}

// Used is the fraction of the filesystem in use, 0 to 1.
func (d Disk) Used() float64 {
	if d.Total == 0 {
		return 0
	}
	return float64(d.Total-min(d.Free, d.Total)) / float64(d.Total)
}

func statfs(dir string) (Disk, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Disk{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return Disk{Total: st.Blocks * uint64(st.Bsize), Free: st.Bavail * uint64(st.Bsize)}, nil
}

// Space is the store's one model of its filesystem: the free space, in
// bytes, below which each kind of write is refused, and the point where
// retention must already be purging. From the bottom up:
//
//   - Floor: what Badger may write on its own, at any time, with no check
//     of ours: a memtable being flushed next to its log, an L0→L1
//     compaction (its inputs are rewritten before they are deleted) and a
//     value-log GC rewrite (see badgerHeadroom). Badger writes through mmap
//     and dies with SIGBUS, not an error, when the disk is full, so nothing
//     of ours goes below it. Events are refused below the Floor; queue
//     changes and purges are tiny and are what frees space, so they are
//     never refused.
//   - Commit = Floor + Margin/2: the record of an instance whose bytes are
//     in is refused below it. The half margin under it is left to the
//     bookkeeping, so the queue keeps moving on a full disk.
//   - Refuse = Floor + Margin: new instance bytes are refused below it
//     (A700), so an instance accepted can nearly always commit.
//   - Purge = Refuse + Margin: retention's high watermark is never above
//     this point (Clamp), and below it Purge removes done studies even with
//     the watermarks off: purging always starts a Margin before stores are
//     refused.
//
// Margin is 5 % of the filesystem, at most Options.Reserve (256 MiB): a
// large disk keeps a fixed amount, a small one a share it can afford.
type Space struct {
	Disk
	Margin                       uint64
	Floor, Commit, Refuse, Purge uint64
}

// use names the kinds of write that Space ranks.
type use int

const (
	forData        use = iota // new instance bytes: down to Refuse
	forCommit                 // an instance's record: down to Commit
	forBookkeeping            // events: down to Floor
)

func (sp Space) level(u use) uint64 {
	switch u {
	case forData:
		return sp.Refuse
	case forCommit:
		return sp.Commit
	}
	return sp.Floor
}

// Refusing tells whether new instances are refused now.
func (sp Space) Refusing() bool { return sp.Free < sp.Refuse }

// space is the model for the disk d under these options.
func (o *Options) space(d Disk) Space {
	sp := Space{Disk: d, Floor: o.floor}
	sp.Margin = min(uint64(max(o.Reserve, 0)), d.Total/20)
	sp.Commit = sp.Floor + sp.Margin/2
	sp.Refuse = sp.Floor + sp.Margin
	sp.Purge = sp.Refuse + sp.Margin
	return sp
}

// badgerHeadroom is the Floor: what Badger may write on its own between two
// of our checks. Derived from the Badger options in force, so a change of
// tuning changes the floor with it; once, by withDefaults (Space is on
// every write's path).
func (o *Options) badgerHeadroom() uint64 {
	bo := o.badger("")
	flush := bo.MemTableSize                                                      // a flushed table next to its memtable's log
	compaction := int64(bo.NumLevelZeroTables)*bo.MemTableSize + bo.BaseLevelSize // L0 tables and L1, rewritten
	gc := int64(float64(bo.ValueLogFileSize) * (1 - gcDiscardRatio))              // live entries of a value-log file, copied
	return uint64(flush + compaction + gc)
}

// Space returns the model of the store's filesystem now (a statfs).
func (s *Store) Space() (Space, error) {
	d, err := s.statfs(s.dir)
	if err != nil {
		return Space{}, err
	}
	return s.opts.space(d), nil
}

// Clamp fits the watermarks of p to this disk: the high watermark at most
// the Purge point, in whole percents; the low one as far below it as it was
// configured. Watermarks off (High 0) stay off: Purge still keeps the Purge
// point. It tells whether anything was lowered.
func (sp Space) Clamp(p Policy) (Policy, bool) {
	if p.HighWatermark <= 0 || sp.Total == 0 {
		return p, false
	}
	most := math.Floor(100*(1-float64(sp.Purge)/float64(sp.Total))) / 100
	if p.HighWatermark <= most {
		return p, false
	}
	gap := max(p.HighWatermark-p.LowWatermark, 0)
	p.HighWatermark = max(most, 0)
	p.LowWatermark = max(p.HighWatermark-gap, 0)
	if p.HighWatermark == 0 { // the disk is smaller than the store needs: the Purge point alone rules
		p.LowWatermark = 0
	}
	return p, true
}

// room returns ErrFull unless n bytes of kind u can be written now, and the
// disk as it saw it. Before refusing new instance bytes it lets
// Options.MakeRoom purge, and checks again: retention makes room before a
// store is refused.
func (s *Store) room(n int64, u use) (Space, error) {
	sp, err := s.Space()
	if err != nil {
		// Not knowing the free space is refusing for space: one refusal
		// (A700) with the disk alarm, not a failure per instance.
		return sp, fmt.Errorf("%w: the free space cannot be read: %v", ErrFull, err)
	}
	if sp.enough(n, u) {
		return sp, nil
	}
	if u == forData && s.opts.MakeRoom != nil {
		s.opts.MakeRoom()
		if sp, err = s.Space(); err != nil {
			return sp, err
		}
		if sp.enough(n, u) {
			return sp, nil
		}
	}
	return sp, fmt.Errorf("%w: %d bytes free of %d, %d needed and %d kept", ErrFull, sp.Free, sp.Total, n, sp.level(u))
}

func (sp Space) enough(n int64, u use) bool {
	return sp.Free >= uint64(max(n, 0))+sp.level(u)
}

// Purging tells whether retention must purge now under p (clamped to this
// disk): past the high watermark, or less free than the Purge point.
func (sp Space) Purging(p Policy) bool {
	p, _ = sp.Clamp(p)
	return sp.toFree(p) > 0
}

// toFree is how many bytes a purge under p must remove now: down to the
// low watermark once the high one is reached, and in any case back to a
// Margin above the Purge point once below it.
func (sp Space) toFree(p Policy) int64 {
	var need int64
	if used := sp.Used(); p.HighWatermark > 0 && used >= p.HighWatermark {
		need = int64((used - p.LowWatermark) * float64(sp.Total))
	}
	if sp.Free < sp.Purge {
		need = max(need, int64(sp.Purge+sp.Margin-sp.Free))
	}
	return need
}
