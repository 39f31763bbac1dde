package appliance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/testdata/peers"
)

// metricValue is the value of the sample of family name whose labels
// include want, from the appliance's registry.
func metricValue(t testing.TB, a *Appliance, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := a.metrics.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, want) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue(), true
				case m.Gauge != nil:
					return m.Gauge.GetValue(), true
				}
			}
		}
	}
	return 0, false
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
			n++
		}
	}
	return n == len(want)
}

// sinkSCP is a destination that accepts every instance and keeps nothing.
func sinkSCP(t testing.TB) int { return storeSCP(t, discard{}) }

// storeSCP is a PACS called SINK that answers every C-STORE with sink.
func storeSCP(t testing.TB, sink dimse.StoreSink) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &dimse.Server{Policy: &dimse.StaticPolicy{CalledAETitles: []string{"SINK"}}, Handlers: dimse.Handlers{
		Store: func(context.Context, *dimse.Association, *dimse.StoreRequest) dimse.StoreSink { return sink }}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, ln)
	}()
	t.Cleanup(func() { cancel(); ln.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).Port
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) Abort(error)                 {}
func (discard) Close() dimse.Status         { return dimse.StatusSuccess }

// sendAs C-STOREs files as calling AE aet with our own SCU.
func sendAs(t testing.TB, b *box, aet string, files []string) {
	t.Helper()
	assoc, err := modality(t, b.addr(), aet, dimse.Handlers{}, "1.2.840.10008.5.1.4.1.1.2")
	if err != nil {
		t.Fatalf("associate as %s: %v", aet, err)
	}
	defer assoc.Close()
	for _, f := range files {
		if s, err := sendFile(assoc, f); err != nil || s != dimse.StatusSuccess {
			t.Fatalf("C-STORE %s as %s: %v %v", filepath.Base(f), aet, s, err)
		}
	}
}

// TestMetricsCountSinceStart: reception is counted per configured modality
// (anyone else as "other"); a destination's counters go on when a
// configuration change replaces its forwarder; no patient data shows.
func TestMetricsCountSinceStart(t *testing.T) {
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Learning = true // lets XRAY9, not a configured modality, in
	cfg.Destinations = []config.Destination{{Name: "sink", AETitle: "SINK", Host: "127.0.0.1", Port: sinkSCP(t)}}
	b := startBox(t, cfg, boxOptions{})
	c := series(t, t.TempDir(), 3, 16, 901, nil)
	sendAs(t, b, "CT1", c.files[:2])
	sendAs(t, b, "XRAY9", c.files[2:])
	delivered := func(n float64) {
		t.Helper()
		peers.Eventually(t, 30*time.Second, fmt.Sprintf("%v delivered", n), func() (bool, string) {
			v, _ := metricValue(t, b.a, "relais_delivered_instances_total", map[string]string{"destination": "sink"})
			return v == n, fmt.Sprint(v)
		})
	}
	delivered(3)
	for ae, want := range map[string]float64{"CT1": 2, "other": 1, "STORESCU": 0} {
		if v, ok := metricValue(t, b.a, "relais_received_instances_total", map[string]string{"calling_ae": ae}); !ok || v != want {
			t.Errorf("received from %s: %v (present %v), want %v", ae, v, ok, want)
		}
	}
	if _, ok := metricValue(t, b.a, "relais_received_instances_total", map[string]string{"calling_ae": "XRAY9"}); ok {
		t.Error("an unconfigured AE title has its own label")
	}

	// A change of the destination's settings replaces its forwarder.
	cfg.Destinations[0].ParkAfterAttempts = 7
	if err := b.a.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	d := series(t, t.TempDir(), 1, 16, 902, nil)
	sendAs(t, b, "CT1", d.files)
	delivered(4)
	if v, _ := metricValue(t, b.a, "relais_destination_state", map[string]string{"destination": "sink", "state": "retrying"}); v != 0 {
		t.Errorf("sink retrying: %v", v)
	}
	body := scrapeText(t, b.a)
	for _, secret := range []string{"Test^Patient", "RELAIS-TEST", "ACC"} {
		if strings.Contains(body, secret) {
			t.Errorf("metrics hold patient data %q", secret)
		}
	}
}

func scrapeText(t testing.TB, a *Appliance) string {
	t.Helper()
	rec := &strings.Builder{}
	w := &textWriter{h: http.Header{}, b: rec}
	a.metrics.handler().ServeHTTP(w, &http.Request{Method: "GET", URL: &url.URL{Path: "/metrics"}, Header: http.Header{}})
	return rec.String()
}

type textWriter struct {
	h http.Header
	b *strings.Builder
}

func (w *textWriter) Header() http.Header         { return w.h }
func (w *textWriter) Write(p []byte) (int, error) { return w.b.Write(p) }
func (w *textWriter) WriteHeader(int)             {}

// requireProgram skips a test when a program is missing, but fails it in CI
// (.ci/run installs it, and sets CI).
func requireProgram(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not installed in CI (.ci/run installs Debian's %s): %v", name, pkg, err)
	}
	t.Skipf("%s not installed (Debian: apt-get install --no-install-recommends %s; bash .ci/run does): %v", name, pkg, err)
	return ""
}

// TestPrometheusScrapesTheOldestWaitingStudy: the real Prometheus scrapes
// /metrics and answers a query of relais_oldest_waiting_seconds once a study
// waits for a destination that is down.
func TestPrometheusScrapesTheOldestWaitingStudy(t *testing.T) {
	prom := requireProgram(t, "prometheus", "prometheus")
	mport, pport := peers.FreePort(t), peers.FreePort(t)
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Destinations = []config.Destination{{Name: "center", AETitle: "CENTER", Host: "127.0.0.1", Port: peers.FreePort(t)}} // nothing listens
	b := startBox(t, cfg, boxOptions{metrics: fmt.Sprintf("127.0.0.1:%d", mport)})
	c := series(t, t.TempDir(), 2, 16, 903, nil)
	sendAs(t, b, "CT1", c.files)

	dir := t.TempDir()
	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: relais
    static_configs:
      - targets: ["127.0.0.1:%d"]
`, mport)), 0o600); err != nil {
		t.Fatal(err)
	}
	peers.Start(t, prom, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", pport))
	peers.WaitForPort(t, pport)

	query := func(q string) (float64, string) {
		rsp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/query?query=%s", pport, url.QueryEscape(q)))
		if err != nil {
			return 0, err.Error()
		}
		defer rsp.Body.Close()
		raw, _ := io.ReadAll(rsp.Body)
		var r struct {
			Status string
			Data   struct {
				Result []struct {
					Metric map[string]string
					Value  [2]any
				}
			}
		}
		if err := json.Unmarshal(raw, &r); err != nil || r.Status != "success" || len(r.Data.Result) != 1 {
			return 0, string(raw)
		}
		s, _ := r.Data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, string(raw)
		}
		return v, string(raw)
	}
	var waited float64
	peers.Eventually(t, time.Minute, "Prometheus answering relais_oldest_waiting_seconds > 0", func() (bool, string) {
		v, raw := query(`relais_oldest_waiting_seconds{job="relais",destination="center"}`)
		waited = v
		return v > 0, raw
	})
	for q, want := range map[string]float64{
		`up{job="relais"}`: 1,
		`relais_queue_instances{destination="center"}`:                              2,
		`relais_received_instances_total{calling_ae="CT1"}`:                         2,
		`relais_destination_state{destination="center",state="retrying"}`:           1,
		`count(relais_build_info{version="dev",image="none"})`:                      1,
		`relais_destination_instances{destination="center",state="delivered"}`:      0,
		`sum(relais_destination_state{destination="center"})`:                       1,
		`count(process_resident_memory_bytes) + count(go_goroutines{job="relais"})`: 2,
	} {
		if v, raw := query(q); v != want {
			t.Errorf("%s = %v, want %v: %s", q, v, want, raw)
		}
	}
	t.Logf("Prometheus: the oldest study has waited %.1f s for center", waited)
}

// TestMetricsOnTheTunnelAddressOnly: with -metrics tunnel:PORT the metrics
// answer on loopback and, for the reading center, on the box's tunnel
// address; not on another local address; and they follow the tunnel when
// its address changes.
func TestMetricsOnTheTunnelAddressOnly(t *testing.T) {
	dir := t.TempDir()
	rc, tunnel, _ := startNetstackCenter(t, dir)
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Tunnel = tunnel
	port := peers.FreePort(t)
	b := startBox(t, cfg, boxOptions{dir: dir, metrics: fmt.Sprintf("%s:%d", OnTunnel, port)})

	center := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: rc.tun.DialContext}}
	local := &http.Client{Timeout: 3 * time.Second}
	get := func(c *http.Client, host string) error {
		rsp, err := c.Get(fmt.Sprintf("http://%s/metrics", net.JoinHostPort(host, strconv.Itoa(port))))
		if err != nil {
			return err
		}
		defer rsp.Body.Close()
		body, _ := io.ReadAll(rsp.Body)
		if rsp.StatusCode != 200 || !strings.Contains(string(body), "relais_build_info") {
			return fmt.Errorf("%s: %s", rsp.Status, body)
		}
		return nil
	}
	reachable := func(c *http.Client, host string) {
		t.Helper()
		peers.Eventually(t, 30*time.Second, "metrics at "+host, func() (bool, string) {
			err := get(c, host)
			return err == nil, fmt.Sprint(err)
		})
	}
	reachable(center, "10.9.0.2")
	reachable(local, "127.0.0.1")
	if err := get(local, "127.0.0.2"); err == nil {
		t.Fatal("metrics answer on 127.0.0.2: the listener is not the tunnel's and loopback's only")
	}

	cfg.Tunnel.Address = "10.9.0.3/24"
	if err := b.a.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	reachable(center, "10.9.0.3")
	if err := get(center, "10.9.0.2"); err == nil {
		t.Fatal("metrics still answer on the tunnel's old address")
	}
	reachable(local, "127.0.0.1")
}
