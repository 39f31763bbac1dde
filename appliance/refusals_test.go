package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/store"
	"github.com/relais/relais/testdata/dcmgen"
	"github.com/relais/relais/testdata/peers"
)

// TestRefusalFloodIsBounded (issue 12, point 4): 20,000 real associations
// over loopback, each with its own made-up calling AE title, all refused.
// The box keeps a bounded list, logs a few lines (in the event log and in
// the process log, which gokrazy keeps 100 lines of), keeps its own
// history, and its status stays small and quick. Memory is the test process's
// (relaisd runs in it, with the senders), measured after a GC: its RSS,
// or under the race detector its Go heap in use.
func TestRefusalFloodIsBounded(t *testing.T) {
	const n = 20000
	logs := &syncBuffer{}
	b := startBox(t, testConfig(peers.FreePort(t), nil, false), boxOptions{log: logs})
	ctx := context.Background()

	// The box's own history first: a reception from CT1 and an approval.
	c := series(t, t.TempDir(), 2, 32, 1201, nil)
	as, err := modality(t, b.addr(), "CT1", dimse.Handlers{}, dcmgen.CTImageStorage)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range c.files {
		if st, err := sendFile(as, f); err != nil || st != dimse.StatusSuccess {
			t.Fatalf("CT1 store: %v %v", st, err)
		}
	}
	as.Close()
	if err := b.client.Approve(ctx, "MR7", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	received := func() bool {
		evs, _ := b.client.Events(ctx, control.EventQuery{Kinds: []string{string(store.KindStore)}})
		return slices.ContainsFunc(evs, func(e control.Event) bool {
			return strings.HasPrefix(e.Message, "received 2 instance(s)") && strings.Contains(e.Message, "from CT1")
		})
	}
	peers.Eventually(t, 10*time.Second, "CT1's reception in the event log", func() (bool, string) { return received(), "" })

	knock(t, b.addr(), 0, 500) // every path taken once before measuring
	before := measureMemory()
	mark := len(logs.String())
	start := time.Now()
	knock(t, b.addr(), 500, n)
	took := time.Since(start)
	after := measureMemory()
	t.Logf("%d refused associations in %v (%.0f/s)", n-500, took.Round(time.Millisecond), float64(n-500)/took.Seconds())
	lines := 0
	for l := range strings.Lines(logs.String()[mark:]) {
		if !strings.Contains(l, "level=DEBUG") {
			lines++
		}
	}
	windows := int(took/refusalWindow) + 1
	t.Logf("process log: %d lines at info level or above during the flood", lines)
	if lines > (refusalLines+2)*windows {
		t.Errorf("%d process log lines for %d refusals in %d minute(s), want at most %d a minute", lines, n-500, windows, refusalLines+2)
	}
	t.Logf("test process after GC: RSS %.1f → %.1f MB (+%.1f), heap in use %.1f → %.1f MB",
		before.rss/1e6, after.rss/1e6, (after.rss-before.rss)/1e6, before.heap/1e6, after.heap/1e6)
	growth, what := after.rss-before.rss, "RSS"
	if raceEnabled {
		growth, what = after.heap-before.heap, "heap in use (RSS is the race detector's)"
	}
	if growth > 32<<20 {
		t.Errorf("%s grew by %.1f MB under the flood; the bound is 32 MB", what, growth/1e6)
	}

	var slowest time.Duration
	var size int
	var st control.Status
	for range 5 {
		d, body := getStatus(t, b.dir)
		slowest, size = max(slowest, d), len(body)
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("/v1/status: slowest of 5 %v, %d bytes, %d callers listed, %d others, %d alarms",
		slowest.Round(time.Microsecond), size, len(st.Callers), st.OtherCallers, len(st.Alarms))
	if len(st.Callers) != maxCallers || st.OtherCallers != n-maxCallers || len(st.Alarms) > callerAlarms+2 {
		t.Errorf("status lists %d callers, %d others, %d alarms; want %d, %d, at most %d",
			len(st.Callers), st.OtherCallers, len(st.Alarms), maxCallers, n-maxCallers, callerAlarms+2)
	}
	if cs, _ := b.client.Callers(ctx); len(cs) != maxCallers || !strings.HasPrefix(cs[0].AETitle, "FLOOD") {
		t.Errorf("/v1/callers: %d, newest %+v", len(cs), cs[0])
	}

	counts := b.a.store.EventCounts()
	t.Logf("event log per kind: %v", counts)
	if counts[store.KindReject] > 100 {
		t.Errorf("%d reject events for %d refusals in %v: not aggregated", counts[store.KindReject], n, took)
	}
	if !received() {
		t.Error("CT1's reception is gone from the event log")
	}
	evs, _ := b.client.Events(ctx, control.EventQuery{Kinds: []string{string(store.KindConfig)}})
	if !slices.ContainsFunc(evs, func(e control.Event) bool { return strings.Contains(e.Message, "modality MR7 (127.0.0.1) approved") }) {
		t.Error("the approval of MR7 is gone from the event log")
	}
	// The senders are still a caller each: one of them approved now gets in.
	if err := b.client.Approve(ctx, fmt.Sprintf("FLOOD%06d", n-1), ""); err != nil {
		t.Fatal(err)
	}
	as, err = modality(t, b.addr(), fmt.Sprintf("FLOOD%06d", n-1), dimse.Handlers{}, dcmgen.CTImageStorage)
	if err != nil {
		t.Fatalf("approved caller after the flood: %v", err)
	}
	as.Close()

	// At shutdown the last window's summary is written: every refusal is
	// in exactly one line, its own or a summary.
	b.stop()
	s, err := store.Open(filepath.Join(b.dir, "store"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rejects, _ := s.Events(t.Context(), store.EventQuery{Kinds: []store.Kind{store.KindReject}})
	total := 0
	for _, e := range rejects {
		a, _ := strconv.Atoi(e.Attrs["attempts"])
		r, _ := strconv.Atoi(e.Attrs["requests"])
		total += a + r
	}
	t.Logf("%d reject lines; newest: %s", len(rejects), rejects[0].Message)
	if total != n {
		t.Errorf("the reject lines count %d refusals, want %d", total, n)
	}
}

// knock opens associations from calling AEs FLOOD<from> to FLOOD<to-1>,
// sixteen at a time, and expects each to be refused as unknown.
func knock(t *testing.T, addr string, from, to int) {
	t.Helper()
	ids := make(chan int)
	var wg sync.WaitGroup
	var unexpected atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				as, err := dimse.Dial(context.Background(), addr, dimse.DialParams{CallingAE: fmt.Sprintf("FLOOD%06d", i), CalledAE: "RELAIS",
					Proposals: []dimse.Proposal{dimse.VerificationProposal()}})
				var rj *dimse.Rejection
				if !errors.As(err, &rj) || *rj != *dimse.RejectCallingAE {
					if unexpected.Add(1) == 1 {
						t.Errorf("FLOOD%06d: want a refusal, got %v", i, err)
					}
					if as != nil {
						as.Abort()
					}
				}
			}
		}()
	}
	for i := from; i < to; i++ {
		ids <- i
	}
	close(ids)
	wg.Wait()
	if n := unexpected.Load(); n > 0 {
		t.Fatalf("%d of %d associations not refused as unknown", n, to-from)
	}
}

type memory struct{ rss, heap float64 }

// measureMemory returns the process's resident set and Go heap in use,
// after a collection that returns freed memory to the system.
func measureMemory() memory {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := memory{heap: float64(ms.HeapInuse)}
	b, _ := os.ReadFile("/proc/self/status")
	for l := range strings.Lines(string(b)) {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			m.rss = kb * 1024
		}
	}
	return m
}

// getStatus fetches /v1/status raw, for its latency and size.
func getStatus(t *testing.T, dir string) (time.Duration, []byte) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", SocketPath(dir))
	}}}
	defer hc.CloseIdleConnections()
	start := time.Now()
	resp, err := hc.Get("http://relaisd/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("status: %d %v", resp.StatusCode, err)
	}
	return time.Since(start), body
}
