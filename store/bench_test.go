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
		data := randomBytes(rand.New(rand.NewPCG(1, uint64(size))), size)
		for _, writers := range []int{1, 8} {
			name := fmt.Sprintf("size=%dKB/writers=%d", size>>10, writers)
			b.Run(name+"/store", func(b *testing.B) {
				o := DefaultOptions()
				o.Reserve = 1 << 20
				o.Logger = testOptions().Logger
				s := openTest(b, b.TempDir(), o)
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
			})
			b.Run(name+"/raw", func(b *testing.B) {
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
			})
		}
	}
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
