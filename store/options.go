package store

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	boptions "github.com/dgraph-io/badger/v4/options"
)

// Options tune the store. DefaultOptions suits a box with 1–2 GiB of memory
// and an SD card or small SSD; every field says what it costs.
type Options struct {
	// InlineMax: an instance of at most this many bytes is kept in the
	// database, in its record's transaction, instead of a file of its own.
	// A writer holds up to this much in memory. Negative: every instance
	// gets a file. Default: see defaultInlineMax.
	InlineMax int

	// Reserve is the free disk space, in bytes, that the store keeps. Instance
	// bytes are refused with ErrFull when writing them would leave less than Reserve free; a
	// commit is refused below Reserve/2 and small bookkeeping writes (queue,
	// events) below Reserve/4, so an accepted instance can nearly always commit
	// and the forwarder can always record progress. Badger writes through mmap
	// and would crash with SIGBUS, not fail, on a full disk, so Reserve must
	// cover what Badger may write between two checks: the value log file, two
	// memtables and the compactions after a purge. Default 256 MiB.
	Reserve int64

	// MemTableSize is the size of one Badger memtable (an arena on the Go heap).
	// Instance bytes go to files or the value log, so memtables hold only keys
	// and small records and fill slowly. Default 16 MiB (Badger's own default is 64 MiB).
	MemTableSize int64

	// NumMemtables is how many memtables may exist before writes stall.
	// Default 2 (Badger: 5): the worst case is NumMemtables×MemTableSize of heap.
	NumMemtables int

	// ValueLogFileSize is the size of one value log file. Space is reclaimed a
	// whole file at a time after purges, and the file being written is never
	// reclaimed, so smaller files free space sooner at the cost of more files.
	// It holds inline instances (see InlineMax) and the odd large record, so
	// it fills slowly. Default 32 MiB (Badger: 1 GiB).
	ValueLogFileSize int64

	// ValueThreshold: values at least this long go to the value log, shorter
	// ones stay in the LSM tree. Inline instances go to the value log; index
	// rows and queue entries stay in the tree. Default 1 KiB.
	ValueThreshold int64

	// BlockCacheSize caches LSM blocks (index rows, queue entries), not
	// instance bytes. Default 16 MiB (Badger: 256 MiB).
	BlockCacheSize int64

	// IndexCacheSize bounds the memory for table indexes and bloom filters
	// (Badger's 0 keeps them all, growing with the number of keys).
	// Default 8 MiB.
	IndexCacheSize int64

	// NumCompactors is the number of compaction goroutines (Badger: 4).
	// Default 2, one per core on a small ARM box.
	NumCompactors int

	// EventBudgets bounds the event log kind by kind: a kind keeps its
	// newest events up to its budget; after a write that passes it by a
	// sixteenth, that kind's oldest are deleted. Separate budgets keep the
	// box's own history (configuration and approvals, receptions,
	// deliveries, commitments, purges) however loud another kind gets
	// (refused callers, retries). A kind missing from the map takes its
	// default from DefaultEventBudgets (about 100,000 events in all, a few
	// tens of MiB), a kind missing from both takes OtherEventBudget.
	EventBudgets map[Kind]int

	// Logger receives Badger's warnings and errors and the store's own notes.
	// Default: slog.Default().
	Logger *slog.Logger

	// Now is the clock (tests replace it). Default time.Now.
	Now func() time.Time
}

// DefaultOptions returns the options documented on each field.
func DefaultOptions() Options {
	return Options{
		InlineMax:        defaultInlineMax,
		Reserve:          256 << 20,
		MemTableSize:     16 << 20,
		NumMemtables:     2,
		ValueLogFileSize: 32 << 20,
		ValueThreshold:   1 << 10,
		BlockCacheSize:   16 << 20,
		IndexCacheSize:   8 << 20,
		NumCompactors:    2,
		EventBudgets:     DefaultEventBudgets(),
	}
}

// OtherEventBudget is the budget of a kind no budget names.
const OtherEventBudget = 1000

// DefaultEventBudgets returns the default budget of each kind: room for
// years of a small hospital's configuration changes and months of its
// traffic, and a small share for what a stranger can cause.
func DefaultEventBudgets() map[Kind]int {
	return map[Kind]int{
		KindConfig:      10000, // a few a week: years of history
		KindStore:       30000, // one line per association and study received
		KindForward:     20000, // one line per study delivered
		KindCommit:      15000,
		KindRetry:       10000,
		KindPurge:       2000,
		KindReview:      2000,
		KindAssociation: 5000,
		KindReject:      5000, // refused callers, already aggregated by the appliance
	}
}

// eventBudget is kind k's budget.
func (o *Options) eventBudget(k Kind) int {
	if n, ok := o.EventBudgets[k]; ok && n > 0 {
		return n
	}
	return OtherEventBudget
}

// withDefaults fills zero fields from DefaultOptions.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.InlineMax == 0 {
		o.InlineMax = d.InlineMax
	}
	orDefault(&o.Reserve, d.Reserve)
	orDefault(&o.MemTableSize, d.MemTableSize)
	orDefault(&o.NumMemtables, d.NumMemtables)
	orDefault(&o.ValueLogFileSize, d.ValueLogFileSize)
	orDefault(&o.ValueThreshold, d.ValueThreshold)
	orDefault(&o.BlockCacheSize, d.BlockCacheSize)
	orDefault(&o.IndexCacheSize, d.IndexCacheSize)
	orDefault(&o.NumCompactors, d.NumCompactors)
	budgets := d.EventBudgets
	for k, n := range o.EventBudgets {
		if n > 0 {
			budgets[k] = n
		}
	}
	o.EventBudgets = budgets
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

func orDefault[T int | int64](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

func (o Options) badger(dir string) badger.Options {
	return badger.DefaultOptions(dir).
		// Every transaction is on disk when its commit returns; the store
		// groups its changes so that one sync serves many (see changes.go).
		WithSyncWrites(true).
		// Transactions are built one at a time (see tryBatch): Badger's
		// conflict tracking would only cost.
		WithDetectConflicts(false).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(o.NumMemtables).
		WithNumLevelZeroTables(o.NumMemtables + 1).
		WithNumLevelZeroTablesStall(2*o.NumMemtables + 4).
		WithValueLogFileSize(o.ValueLogFileSize).
		WithValueThreshold(o.ValueThreshold).
		WithBlockCacheSize(o.BlockCacheSize).
		WithIndexCacheSize(o.IndexCacheSize).
		WithNumCompactors(o.NumCompactors).
		WithNumGoroutines(2).
		WithBaseTableSize(2 << 20).
		WithBaseLevelSize(8 << 20).
		WithCompression(boptions.None). // small records; inline instances are pixel data, mostly incompressible
		WithMetricsEnabled(false).
		WithLogger(badgerLogger{o.Logger})
}

// badgerLogger passes Badger's warnings and errors to slog; its info and
// debug lines (one per compaction) would flood a small box's log.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error("badger", "msg", sprintf(f, a...)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn("badger", "msg", sprintf(f, a...)) }
func (b badgerLogger) Infof(string, ...any)        {}
func (b badgerLogger) Debugf(string, ...any)       {}

func sprintf(f string, a ...any) string { return strings.TrimSpace(fmt.Sprintf(f, a...)) }

// defaultInlineMax: instances up to 4 KiB stay in the database, larger ones
// get a file. Measured with BenchmarkCommitSmall (synced commits per second,
// 16 KiB writes; 3–5 interleaved runs, medians; 2 shared cores, ext4 on a
// virtual disk, 2026-12-01), inline (the bytes in the commit's transaction,
// in the value log) against file:
//
//	size     1 writer: inline  file   raw    4 writers: inline  file   raw
//	2 KiB              127     166    223               387     278    1128
//	4 KiB              153     155    220               310     350    1204
//	8 KiB              159     190    275               400     611    1564
//	16 KiB             273     174    333               414     474    1171
//	32 KiB             144     143    325               199     313    1080
//	64 KiB             144     228    276               190     308     451
//	256 KiB             82     120    292                60     313     929
//
// Per run, inline/file is 0.6–1.2 up to 4 KiB (noise), and files win from
// 8 KiB with 4 writers (1.5–2×, 5× at 256 KiB): an inline instance adds its
// bytes to the one transaction every commit waits for, while files sync in
// parallel. So files from 8 KiB on; below, neither is faster, and inline
// saves a file, an inode and a 4 KiB block for a few hundred bytes. (raw is
// one file written and fsynced per instance, the ceiling. Keeping them in
// the LSM tree instead of the value log was no faster from 64 KiB, and
// would have compactions rewrite instance bytes.)
const defaultInlineMax = 4 << 10
