package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkStore measures synced commits per second for small and CT-sized
// instances with 1 and 8 concurrent writers, each beside the raw ceiling on
// the same disk in the same run: one file written and fsynced per instance.
func BenchmarkStore(b *testing.B) {
	for _, size := range []int{512 << 10, 10 << 10} {
		for _, writers := range []int{1, 8} {
			name := fmt.Sprintf("size=%dKB/writers=%d", size>>10, writers)
			b.Run(name+"/store", func(b *testing.B) { benchCommits(b, benchOptions(), size, writers) })
			b.Run(name+"/raw", func(b *testing.B) { benchRaw(b, size, writers) })
		}
	}
}

// BenchmarkCommitSmall decides where small instances go (defaultInlineMax):
// inline, in the commit's own transaction (in the LSM tree, or in the value
// log: inline-vlog), or in a file of their own like the large ones; beside
// the raw ceiling, a file written and fsynced per instance.
func BenchmarkCommitSmall(b *testing.B) {
	for _, size := range []int{2 << 10, 4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10, 256 << 10} {
		for _, writers := range []int{1, 4} {
			name := fmt.Sprintf("size=%dKB/writers=%d", size>>10, writers)
			b.Run(name+"/inline", func(b *testing.B) {
				o := benchOptions()
				o.InlineMax, o.ValueThreshold = size, int64(size)+1
				benchCommits(b, o, size, writers)
			})
			b.Run(name+"/inline-vlog", func(b *testing.B) {
				o := benchOptions()
				o.InlineMax, o.ValueThreshold = size, 1<<10
				benchCommits(b, o, size, writers)
			})
			b.Run(name+"/file", func(b *testing.B) {
				o := benchOptions()
				o.InlineMax = -1
				benchCommits(b, o, size, writers)
			})
			b.Run(name+"/raw", func(b *testing.B) { benchRaw(b, size, writers) })
		}
	}
}

// BenchmarkCommitLarge measures large instances with and without syncing
// them while they arrive (syncAhead): commit-ms is what is
// left to sync once the last byte is in, the wait a sender sees; "paced"
// has the bytes arrive at 160 MB/s, as from a network, not from memory.
func BenchmarkCommitLarge(b *testing.B) {
	defer func(v int64) { syncAhead = v }(syncAhead)
	const size = 64 << 20
	for _, c := range []struct {
		name    string
		writers int
		pace    float64 // bytes per second, 0: as fast as they go
	}{{"writers=1/paced", 1, 160e6}, {"writers=1", 1, 0}, {"writers=4", 4, 0}} {
		for _, every := range []int64{0, 8 << 20, 32 << 20} {
			b.Run(fmt.Sprintf("size=%dMB/%s/syncahead=%dMB", size>>20, c.name, every>>20), func(b *testing.B) {
				syncAhead = every
				benchPaced(b, benchOptions(), size, c.writers, c.pace)
			})
		}
	}
	for _, writers := range []int{1, 4} {
		b.Run(fmt.Sprintf("size=%dMB/writers=%d/raw", size>>20, writers), func(b *testing.B) { benchRaw(b, size, writers) })
	}
}

func benchOptions() Options {
	o := DefaultOptions()
	o.Reserve = 1 << 20
	o.Logger = testOptions().Logger
	return o
}

// benchCommits commits b.N instances of size bytes from writers goroutines,
// written in 16 KiB fragments as the receiver does.
func benchCommits(b *testing.B, o Options, size, writers int) { benchPaced(b, o, size, writers, 0) }

// benchPaced is benchCommits with the bytes of each instance arriving at
// pace bytes per second (0: as fast as they go).
func benchPaced(b *testing.B, o Options, size, writers int, pace float64) {
	data := randomBytes(rand.New(rand.NewPCG(1, uint64(size))), size)
	s := openTest(b, b.TempDir(), o)
	txns, applied := s.changes.txns.Load(), s.changes.applied.Load()
	var committing atomic.Int64 // ns spent in Commit, the latency a sender sees after its last byte
	run(b, size, writers, func(g, i int) error {
		uid := fmt.Sprintf("%d.%d", g, i)
		w, err := s.NewWriter()
		if err != nil {
			return err
		}
		defer w.Abort()
		start := time.Now()
		for p := data; len(p) > 0; p = p[min(len(p), 16<<10):] {
			if _, err := w.Write(p[:min(len(p), 16<<10)]); err != nil {
				return err
			}
			if pace > 0 {
				due := time.Duration(float64(size-len(p)+min(len(p), 16<<10)) / pace * 1e9)
				time.Sleep(due - time.Since(start))
			}
		}
		begin := time.Now()
		_, err = w.Commit(context.Background(), meta(fmt.Sprint(g), fmt.Sprint(g, ".1"), uid, 1, i), []string{"pacs"})
		committing.Add(int64(time.Since(begin)))
		return err
	})
	if n := s.changes.txns.Load() - txns; n > 0 {
		b.ReportMetric(float64(s.changes.applied.Load()-applied)/float64(n), "changes/txn")
	}
	b.ReportMetric(float64(committing.Load())/float64(b.N)/1e6, "commit-ms")
}

// benchRaw is the ceiling: one file written and fsynced per instance.
func benchRaw(b *testing.B, size, writers int) {
	data := randomBytes(rand.New(rand.NewPCG(1, uint64(size))), size)
	dir := b.TempDir()
	run(b, size, writers, func(g, i int) error {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%d.%d", g, i)))
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		return f.Close()
	})
}

// run calls one(g, i) b.N times in total from writers goroutines.
func run(b *testing.B, size, writers int, one func(g, i int) error) {
	b.SetBytes(int64(size))
	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := one(g, int(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "inst/s")
}
