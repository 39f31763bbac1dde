package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"
)

// heapWatch records the largest growth of the heap, and of the resident
// memory (mapped files count there, not in the heap), over a baseline.
type heapWatch struct {
	base, peak       uint64
	rssBase, rssPeak uint64
}

func newHeapWatch() *heapWatch {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	rss := residentBytes()
	return &heapWatch{base: m.HeapInuse, peak: m.HeapInuse, rssBase: rss, rssPeak: rss}
}

func (h *heapWatch) sample() {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	h.peak = max(h.peak, m.HeapInuse)
	h.rssPeak = max(h.rssPeak, residentBytes())
}

func (h *heapWatch) growth() uint64    { return h.peak - h.base }
func (h *heapWatch) rssGrowth() uint64 { return h.rssPeak - h.rssBase }

// residentBytes is the process's resident memory (/proc/self/statm).
func residentBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident uint64
	fmt.Sscan(string(b), &size, &resident)
	return resident * uint64(os.Getpagesize())
}

// storeLarge streams size bytes of generated data as one instance, in
// network-sized fragments, sampling the heap every 16 MiB. It never holds
// the instance: it returns the SHA-256 it computed on the way.
func storeLarge(tb testing.TB, s *Store, uid string, size int64, h *heapWatch) string {
	tb.Helper()
	w, err := s.NewWriter()
	if err != nil {
		tb.Fatal(err)
	}
	defer w.Abort()
	rng := rand.New(rand.NewPCG(uint64(size), 5))
	frag := make([]byte, 16<<10+3) // odd size: fragments straddle write buffers
	sum := sha256.New()
	for n := int64(0); n < size; {
		p := frag[:min(int64(len(frag)), size-n)]
		for i := 0; i < len(p); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8 && i+j < len(p); j++ {
				p[i+j] = byte(v >> (8 * j))
			}
		}
		sum.Write(p)
		if _, err := w.Write(p); err != nil {
			tb.Fatal(err)
		}
		if n/(16<<20) != (n+int64(len(p)))/(16<<20) {
			h.sample()
		}
		n += int64(len(p))
	}
	if _, err := w.Commit(context.Background(), meta("L", "L.1", uid, 1, 1), []string{"pacs"}); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// sampler reads through and samples the heap every 16 MiB.
type sampler struct {
	r io.Reader
	h *heapWatch
	n int64
}

func (s *sampler) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if s.n/(16<<20) != (s.n+int64(n))/(16<<20) {
		s.h.sample()
	}
	s.n += int64(n)
	return n, err
}

func largeOptions() Options {
	o := DefaultOptions()
	o.Reserve = 1 << 20
	o.Logger = testOptions().Logger
	return o
}

func TestLargeInstanceHeapIsBounded(t *testing.T) {
	const size = 250 << 20
	s := openTest(t, t.TempDir(), largeOptions())
	h := newHeapWatch()
	sum := storeLarge(t, s, "big", size, h)
	t.Logf("growth while storing %d MiB: heap %.1f MiB, resident %.1f MiB", size>>20, float64(h.growth())/(1<<20), float64(h.rssGrowth())/(1<<20))
	if h.growth() > 64<<20 || h.rssGrowth() > 64<<20 {
		t.Fatalf("heap grew %d MiB, resident memory %d MiB while storing a %d MiB instance", h.growth()>>20, h.rssGrowth()>>20, size>>20)
	}
	r, err := s.Open(context.Background(), "big")
	if err != nil {
		t.Fatal(err)
	}
	h = newHeapWatch()
	got := sha256.New()
	n, err := io.Copy(got, &sampler{r: r, h: h})
	if err != nil || n != size {
		t.Fatalf("read back %d bytes: %v", n, err)
	}
	if hex.EncodeToString(got.Sum(nil)) != sum {
		t.Fatal("read back other bytes")
	}
	t.Logf("growth while reading it: heap %.1f MiB, resident %.1f MiB", float64(h.growth())/(1<<20), float64(h.rssGrowth())/(1<<20))
	if h.growth() > 64<<20 || h.rssGrowth() > 64<<20 {
		t.Fatalf("heap grew %d MiB, resident memory %d MiB while reading a %d MiB instance", h.growth()>>20, h.rssGrowth()>>20, size>>20)
	}
}

func BenchmarkLargeInstanceHeap(b *testing.B) {
	const size = 250 << 20
	s := openTest(b, b.TempDir(), largeOptions())
	b.SetBytes(size)
	var worst uint64
	for i := 0; b.Loop(); i++ {
		h := newHeapWatch()
		storeLarge(b, s, fmt.Sprint("big.", i), size, h)
		worst = max(worst, h.growth())
	}
	b.ReportMetric(float64(worst)/(1<<20), "heap-MiB")
}
