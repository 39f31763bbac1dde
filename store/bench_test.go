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
// inline, in the commit's own transaction (in the value log, or in the LSM
// tree with a value threshold above them), or in a file of their own like
// the large ones; beside the raw ceiling, a file written and fsynced per
// instance.
func BenchmarkCommitSmall(b *testing.B) {
	for _, size := range []int{16 << 10, 64 << 10, 256 << 10} {
		for _, writers := range []int{1, 4} {
			name := fmt.Sprintf("size=%dKB/writers=%d", size>>10, writers)
			b.Run(name+"/inline", func(b *testing.B) {
				o := benchOptions()
				o.InlineMax = size
				benchCommits(b, o, size, writers)
			})
			b.Run(name+"/inline-lsm", func(b *testing.B) {
				o := benchOptions()
				o.InlineMax, o.ValueThreshold = size, 1<<20
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

// BenchmarkCommitLarge measures large instances with and without starting
// their writeback while they arrive (startWriteback).
func BenchmarkCommitLarge(b *testing.B) {
	defer func(v int64) { startWriteback = v }(startWriteback)
	for _, size := range []int{512 << 10, 64 << 20} {
		for _, writers := range []int{1, 4} {
			name := fmt.Sprintf("size=%dKB/writers=%d", size>>10, writers)
			for _, every := range []int64{0, 4 << 20, 8 << 20} {
				b.Run(fmt.Sprintf("%s/writeback=%dMB", name, every>>20), func(b *testing.B) {
					startWriteback = every
					benchCommits(b, benchOptions(), size, writers)
				})
			}
			b.Run(name+"/raw", func(b *testing.B) { benchRaw(b, size, writers) })
		}
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
func benchCommits(b *testing.B, o Options, size, writers int) {
	data := randomBytes(rand.New(rand.NewPCG(1, uint64(size))), size)
	s := openTest(b, b.TempDir(), o)
	txns, applied := s.changes.txns.Load(), s.changes.applied.Load()
	run(b, size, writers, func(g, i int) error {
		uid := fmt.Sprintf("%d.%d", g, i)
		w, err := s.NewWriter()
		if err != nil {
			return err
		}
		defer w.Abort()
		for p := data; len(p) > 0; p = p[min(len(p), 16<<10):] {
			if _, err := w.Write(p[:min(len(p), 16<<10)]); err != nil {
				return err
			}
		}
		_, err = w.Commit(context.Background(), meta(fmt.Sprint(g), fmt.Sprint(g, ".1"), uid, 1, i), []string{"pacs"})
		return err
	})
	if n := s.changes.txns.Load() - txns; n > 0 {
		b.ReportMetric(float64(s.changes.applied.Load()-applied)/float64(n), "changes/txn")
	}
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
