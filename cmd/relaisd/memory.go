package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Memory freed after a burst (Badger's table builders hold hundreds of MiB
// while compacting a store of small instances) stays in the process until
// the runtime's scavenger, paced to a sliver of CPU and guided by the heap
// goal of the last collection, gives it back: minutes during which the box
// looks as big as at its peak. releaseMemory gives it back once the heap
// holds much more free memory than it uses.

const (
	releaseEvery = 30 * time.Second
	releaseAbove = 64 << 20 // free, not yet returned bytes worth a collection
)

// releaseMemory checks every period until ctx ends; at most one forced
// collection per period, and none while the free heap is small.
func releaseMemory(ctx context.Context, period time.Duration, above uint64, log *slog.Logger) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if free := freeHeap(); free > above {
			debug.FreeOSMemory()
			log.Debug("returned free heap to the system", "free_MiB", free>>20, "now_free_MiB", freeHeap()>>20)
		}
	}
}

// freeHeap is the heap memory free but not returned to the system.
func freeHeap() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
