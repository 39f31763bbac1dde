package dimse

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

// runtimeMem samples heap in use.
type runtimeMem struct{ peak uint64 }

func (m *runtimeMem) read() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.peak = max(m.peak, ms.HeapInuse)
}

// sampleHeap records the peak heap in use until stop is called.
func sampleHeap() (stop func() uint64) {
	var m runtimeMem
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			m.read()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		m.read()
		return m.peak
	}
}

// TestReceivingLargeInstanceKeepsHeapBounded streams the 262 MB instance from
// our SCU to our SCP in this process: heap in use stays a few MB of buffers.
func TestReceivingLargeInstanceKeepsHeapBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("262 MB transfer: not in -short")
	}
	big := bigInstance(t)
	m, n, sum := dataSetHash(t, big)
	for _, cfg := range []Config{{MaxPDULength: 16384}, {Unlimited: true}} {
		rec := newRecorder(false)
		addr := startServer(t, &Server{Policy: &StaticPolicy{}, Handlers: Handlers{Store: rec.store}, Config: cfg})
		a, err := Dial(context.Background(), addr, DialParams{CallingAE: "MEM", CalledAE: "RELAIS",
			Proposals: storageProposals(m.MediaStorageSOPClassUID)})
		if err != nil {
			t.Fatal(err)
		}
		runtime.GC()
		var base runtimeMem
		base.read()
		stop := sampleHeap()
		if st := sendFile(t, a, big); st != StatusSuccess {
			t.Fatal(st)
		}
		peak := stop()
		a.Release(context.Background())
		got := rec.get(m.MediaStorageSOPInstanceUID)
		if got == nil || got.size != n || got.sum != sum {
			t.Fatal("instance not received intact")
		}
		grew := int64(peak) - int64(base.peak)
		t.Logf("max PDU %d: %d MB sent in %d fragments; heap in use %d KiB before, peak %d KiB (+%d KiB)",
			a.PeerMaxPDU(), n>>20, got.fragments, base.peak>>10, peak>>10, grew>>10)
		if grew > 16<<20 {
			t.Fatalf("heap grew by %d MiB while receiving a %d MiB instance", grew>>20, n>>20)
		}
	}
}
