package appliance

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais/relais/store"
	"github.com/relais/relais/testdata/peers"
)

// TestShutdownEndsRunningRequests stops relaisd while control requests
// that read the whole store run, one after another, on four connections:
// Run returns, the store closed, and every request ends (answered or cut).
// Before, running scans were not cancelled and a SIGTERM waited for them:
// about 2 minutes at a million instances. How long a whole request takes
// and how long the stop took are logged, not asserted.
func TestShutdownEndsRunningRequests(t *testing.T) {
	n := 20_000
	if raceEnabled {
		n = 1_000 // the race detector makes each list ten times slower
	}
	dir := t.TempDir()
	s, err := store.Open(filepath.Join(dir, "store"), store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	fillStudies(t, s, n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b := startBox(t, testConfig(peers.FreePort(t), nil, false), boxOptions{dir: dir})

	begin := time.Now()
	if ss, err := b.client.Studies(t.Context(), n); err != nil || len(ss) != n {
		t.Fatalf("studies: %d, %v; want %d", len(ss), err, n)
	}
	whole := time.Since(begin)

	// Each reader asks again as soon as it has its answer. They start
	// together, so they end their lists about together; relaisd is stopped
	// half a round after the first answer, in the middle of the next lists.
	const readers = 4
	var wg sync.WaitGroup
	var answered atomic.Int64
	errs := make(chan error, readers)
	var once sync.Once
	first := make(chan struct{})
	begin = time.Now()
	for range readers {
		wg.Go(func() {
			for {
				if _, err := b.client.Studies(context.Background(), n); err != nil {
					errs <- err
					return
				}
				answered.Add(1)
				once.Do(func() { close(first) })
			}
		})
	}
	<-first
	round := time.Since(begin)
	time.Sleep(round / 2)
	begin = time.Now()
	b.cancel()
	b.cancel = nil // b.stop in the cleanup has nothing left to do
	if err := <-b.done; err != nil {
		t.Fatalf("relaisd stopped with: %v", err)
	}
	stopped := time.Since(begin)
	wg.Wait()
	close(errs)
	cancelled := 0
	for err := range errs {
		if strings.Contains(err.Error(), context.Canceled.Error()) {
			cancelled++ // relaisd's answer: the list stopped half-way
		}
	}
	t.Logf("%d studies: a list took %v alone, %v four at a time; relaisd stopped in %v with %d lists being read (%d answered before; %d of them stopped by their context, the others cut)",
		n, whole.Round(time.Millisecond), round.Round(time.Millisecond), stopped.Round(time.Millisecond), readers, answered.Load(), cancelled)
}

// fillStudies commits n small instances through the store's API, one study
// each, queued for "center", eight writers at a time.
func fillStudies(t *testing.T, s *store.Store, n int) {
	t.Helper()
	begin := time.Now()
	ids := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range ids {
				if err := putStudy(s, fmt.Sprintf("1.2.826.0.2.%d", i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for i := range n {
		ids <- i
	}
	close(ids)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("stored %d instances through the store's API: %v", n, time.Since(begin).Round(time.Millisecond))
}

// putStudy stores a study of one small instance.
func putStudy(s *store.Store, uid string) error {
	w, err := s.NewWriter()
	if err != nil {
		return err
	}
	defer w.Abort() // nothing once committed
	if _, err := fmt.Fprintf(w, "instance of study %s %0300d", uid, 0); err != nil {
		return err
	}
	_, err = w.Commit(context.Background(), store.Instance{SOPInstanceUID: uid + ".1.1", StudyInstanceUID: uid,
		SeriesInstanceUID: uid + ".1", PatientID: "P" + uid, CallingAE: "CT1"}, []string{"center"})
	return err
}
