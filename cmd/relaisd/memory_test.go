package main

import (
	"context"
	"log/slog"
	"runtime"
	"testing"
	"time"
)

var sink [][]byte

// A burst of garbage leaves free heap behind; the loop returns it.
func TestFreedHeapIsReturnedToTheSystem(t *testing.T) {
	for range 256 {
		sink = append(sink, make([]byte, 1<<20))
	}
	sink = nil
	runtime.GC() // the burst is garbage now, its pages free but kept
	before := freeHeap()
	if before < 128<<20 {
		t.Skipf("the runtime returned the burst by itself (%d MiB free): nothing to show", before>>20)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		releaseMemory(ctx, 10*time.Millisecond, 64<<20, slog.New(slog.DiscardHandler))
	}()
	deadline := time.Now().Add(10 * time.Second)
	for freeHeap() > 64<<20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if after := freeHeap(); after > 64<<20 {
		t.Fatalf("free heap %d MiB before, %d MiB after: not returned", before>>20, after>>20)
	}
}
