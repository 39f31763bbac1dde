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

	// Reserve caps the Margin of the store's model of its disk (see Space):
	// the Margin is 5 % of the filesystem, at most Reserve. Above Badger's
	// own headroom (Space.Floor), half a Margin is kept for the bookkeeping,
	// a whole one before new instances are refused (A700), and one more
	// before that retention is purging. Default 256 MiB: a large disk keeps
	// about Floor + 256 MiB free, a 600 MB one Floor + 29 MiB.
	Reserve int64

	// MakeRoom, when set, is called on the writer's goroutine when new
	// instance bytes are about to be refused for space; it may purge (the
	// appliance runs its retention), and the write is checked again after it
	// returns, so a store is refused only when purging could not make room.
	// Concurrent writers may call it together.
	MakeRoom func()

	// MemTableSize is the size of one Badger memtable (an arena on the Go heap).
	// Instance bytes go to files but for small ones (InlineMax), so memtables
	// hold keys, records and small instances. Default 16 MiB (Badger: 64 MiB).
	MemTableSize int64

	// NumMemtables is how many memtables may exist before writes stall.
	// Default 2 (Badger: 5): the worst case is NumMemtables×MemTableSize of heap.
	NumMemtables int

	// ValueLogFileSize is the size of one value log file. Space is reclaimed a
	// whole file at a time after purges, and the file being written is never
	// reclaimed, so smaller files free space sooner at the cost of more files.
	// It holds only values above ValueThreshold, which the store hardly
	// writes. Default 16 MiB (Badger: 1 GiB).
	ValueLogFileSize int64

	// ValueThreshold: values at least this long go to the value log, shorter
	// ones stay in the LSM tree. It is above InlineMax, so that inline
	// instances stay in the tree with the records (one sync per commit, not
	// two: see defaultInlineMax). Default 32 KiB.
	ValueThreshold int64

	// BlockSize is the size of one block of an LSM table. A table builder
	// holds a block buffer per entry it cannot fit and copies it as it
	// grows, so blocks smaller than an inline instance (Badger's 4 KiB)
	// make compactions of a store of small instances allocate several times
	// their size. Default: the smallest power of two that holds InlineMax
	// and a record beside it (32 KiB for the default InlineMax).
	BlockSize int

	// BlockCacheSize caches LSM blocks (index rows, queue entries, small
	// instances). Default 16 MiB (Badger: 256 MiB).
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

	floor uint64 // Space.Floor for these options, derived once by withDefaults
}

// DefaultOptions returns the options documented on each field.
func DefaultOptions() Options {
	return Options{
		InlineMax:        defaultInlineMax,
		Reserve:          256 << 20,
		MemTableSize:     16 << 20,
		NumMemtables:     2,
		ValueLogFileSize: 16 << 20,
		ValueThreshold:   32 << 10,
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
	// Inline bytes stay in the LSM tree: in the value log, a purge's
	// tombstone can be undone by value-log GC rewriting the old version
	// (Badger v4.9.6), and bytes of a deleted copy would come back. And
	// Badger v4.9.6 only logs a failed sync of the value log (valueLog.write
	// syncs in a defer), so a commit of a value there could succeed without
	// it on disk; a failed sync of its log (the WAL) fails the commit, which
	// ErrWriteFailed handles. Records and rows are far below the threshold.
	o.ValueThreshold = max(o.ValueThreshold, int64(o.InlineMax)+1)
	orDefault(&o.BlockSize, blockSizeFor(o.InlineMax))
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
	o.floor = o.badgerHeadroom()
	return o
}

// blockSizeFor is the default BlockSize: a power of two, at least Badger's
// 4 KiB, above inlineMax bytes and 1 KiB of key and record.
func blockSizeFor(inlineMax int) int {
	b := 4 << 10
	for b < inlineMax+1<<10 {
		b <<= 1
	}
	return b
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
		WithBlockSize(o.BlockSize).
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

// defaultInlineMax: instances up to 16 KiB stay in the database, in the
// LSM tree (ValueThreshold is above them); larger ones get a file. Measured
// with BenchmarkCommitSmall (synced commits per second, 16 KiB writes,
// medians of 3 interleaved runs; 2 shared cores, ext4 on a virtual disk,
// 2026-12-01): inline in the tree, inline in the value log, a file each, and
// the raw ceiling (one file written and fsynced per instance):
//
//	size     1 writer: inline  vlog  file   raw   4 writers: inline  vlog  file   raw
//	2 KiB              370   218   178   439                673   435   357  1169
//	4 KiB              310   243   171   304                471   349   328  1107
//	8 KiB              330   240   262   515                472   365   274   829
//	16 KiB             221   127    85   203                188   115   151   562
//	32 KiB             161    89    96   270                148   190   324   609
//	64 KiB             234   152   354   435                156   253   404   956
//	256 KiB             85   172   311   711                133   181   615  1877
//
// Inline in the tree costs one sync (Badger's log), a file two in a row (the
// file, then the record); the value log adds its own. Beyond 16 KiB files
// win with 4 writers, as files sync in parallel while inline bytes weigh on
// the one transaction every commit waits for, and compactions would rewrite
// ever more instance bytes. (An earlier run, 4 each: inline over file 1.4×,
// 2.4×, 1.9× at 4, 8, 16 KiB with one writer; 1.3×, 1.6×, 1.4× with 4.)
const defaultInlineMax = 16 << 10
