package main

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sample is one measurement of one server.
type sample struct {
	Run       int     `json:"run"`
	Wall      float64 `json:"wall_seconds"`
	Bytes     int64   `json:"bytes,omitempty"`
	Instances int     `json:"instances,omitempty"`
	PeakRSS   int64   `json:"peak_rss_bytes,omitempty"`
	IdleRSS   int64   `json:"idle_rss_bytes,omitempty"` // started, before the measurement
	// PeakAnon is the peak of RssAnon (sampled every 20 ms): the server's
	// own memory, without the file pages it maps (Badger maps its files).
	PeakAnon int64   `json:"peak_anon_bytes,omitempty"`
	CPU      float64 `json:"cpu_seconds,omitempty"`
}

func (s sample) mbps() float64 {
	if s.Wall == 0 {
		return 0
	}
	return mb(s.Bytes) / s.Wall
}

func (s sample) perSecond() float64 {
	if s.Wall == 0 {
		return 0
	}
	return float64(s.Instances) / s.Wall
}

// stat is a median with its range over runs.
type stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

func statOf(xs []float64) stat {
	if len(xs) == 0 {
		return stat{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stat{Median: m, Min: s[0], Max: s[len(s)-1], N: len(s)}
}

// row is one server (or sender) in one case, over the runs.
type row struct {
	Scenario string   `json:"scenario"`
	Case     string   `json:"case"`
	Server   string   `json:"server"`
	Samples  []sample `json:"samples"`

	Seconds   stat `json:"seconds"`
	MBps      stat `json:"mb_per_second"`
	PerSecond stat `json:"instances_per_second"`
	PeakRSSMB stat `json:"peak_rss_mb"`
	IdleRSSMB stat `json:"idle_rss_mb"`
	AnonMB    stat `json:"peak_anon_mb"`
	CPU       stat `json:"cpu_seconds"`
	// Relaisd/this, run by run (servers of a run ran side by side, so
	// the machine's mood cancels): speed (>1: relaisd faster), peak RSS
	// and CPU (<1: relaisd lighter).
	Vs *ratios `json:"relaisd_over_this,omitempty"`
}

type ratios struct {
	Speed stat `json:"speed"`
	RSS   stat `json:"peak_rss"`
	CPU   stat `json:"cpu"`
}

// target is one of the issues' goals, measured.
type target struct {
	What string `json:"what"`
	Want string `json:"want"`
	Got  stat   `json:"got"`
	Unit string `json:"unit"`
	Met  bool   `json:"met"`
	// Bound is, run by run, the ratio the floors measured beside relaisd
	// add up to (see bench.targets); N 0 when the target has none.
	Bound stat `json:"bound_here"`
}

// results is everything a run found; it becomes results-DATE.json.
type results struct {
	Date       string            `json:"date"`
	Host       string            `json:"host"`
	CPUModel   string            `json:"cpu"`
	Cores      int               `json:"cores"`
	MemoryGB   float64           `json:"memory_gb"`
	Kernel     string            `json:"kernel"`
	Go         string            `json:"go"`
	DCMTK      string            `json:"dcmtk"`
	Orthanc    string            `json:"orthanc"`
	Runs       int               `json:"runs"`
	Quick      bool              `json:"quick"`
	PeerMaxPDU int               `json:"peer_max_pdu"`
	LoadBefore string            `json:"load_before"`
	LoadAfter  string            `json:"load_after"`
	Elapsed    string            `json:"elapsed"`
	Corpus     corpusSummary     `json:"corpus"`
	Durability map[string]string `json:"durability"`
	Rows       []*row            `json:"rows"`
	Scale      []*scaleRow       `json:"scale"`
	Targets    []target          `json:"targets"`
	Profiles   []profile         `json:"profiles"`

	started time.Time
}

func newResults(o options, start time.Time) *results {
	host, _ := os.Hostname()
	return &results{
		Date: start.Format(time.RFC3339), Host: host, CPUModel: cpuModel(), Cores: runtime.NumCPU(), MemoryGB: memoryGB(),
		Kernel: readTrim("/proc/sys/kernel/osrelease"), Go: runtime.Version(),
		DCMTK: dcmtkVersion(), Orthanc: firstLine("Orthanc", "--version"),
		Runs: o.runs, Quick: o.quick, PeerMaxPDU: o.peerPDU, LoadBefore: loadAverage(), Durability: durability, started: start,
	}
}

// stamp names this run's files.
func (r *results) stamp() string { return r.started.Format("20060102-150405") }

// add records a sample of server in a case.
func (r *results) add(scenario, cas, server string, run int, s sample) {
	s.Run = run
	for _, x := range r.Rows {
		if x.Scenario == scenario && x.Case == cas && x.Server == server {
			x.Samples = append(x.Samples, s)
			return
		}
	}
	r.Rows = append(r.Rows, &row{Scenario: scenario, Case: cas, Server: server, Samples: []sample{s}})
}

// find returns the row of server in a case, or nil.
func (r *results) find(scenario, cas, server string) *row {
	for _, x := range r.Rows {
		if x.Scenario == scenario && x.Case == cas && x.Server == server {
			return x
		}
	}
	return nil
}

// wall is server's wall time in run of an ingest-like case.
func (r *results) wall(scenario, cas, server string, run int) (float64, bool) {
	if x := r.find(scenario, cas, server); x != nil {
		for _, s := range x.Samples {
			if s.Run == run && s.Wall > 0 {
				return s.Wall, true
			}
		}
	}
	return 0, false
}

// bound is, run by run, peer's time over floor's: the ratio of a store
// that took the floor's time in that run.
func (r *results) bound(cas, peer string, floor func(run int) (float64, bool)) stat {
	x := r.find("Ingest", cas, peer)
	if x == nil {
		return stat{}
	}
	var out []float64
	for _, s := range x.Samples {
		if f, ok := floor(s.Run); ok && f > 0 && s.Wall > 0 {
			out = append(out, s.Wall/f)
		}
	}
	return statOf(out)
}

// summarize computes each row's statistics and its ratios to relaisd in
// the same case.
func (r *results) summarize() {
	for _, x := range r.Rows {
		x.Seconds = statOf(collect(x.Samples, func(s sample) float64 { return s.Wall }))
		x.MBps = statOf(collect(x.Samples, sample.mbps))
		x.PerSecond = statOf(collect(x.Samples, sample.perSecond))
		x.PeakRSSMB = statOf(collect(x.Samples, func(s sample) float64 { return mb(s.PeakRSS) }))
		x.IdleRSSMB = statOf(collect(x.Samples, func(s sample) float64 { return mb(s.IdleRSS) }))
		x.AnonMB = statOf(collect(x.Samples, func(s sample) float64 { return mb(s.PeakAnon) }))
		x.CPU = statOf(collect(x.Samples, func(s sample) float64 { return s.CPU }))
	}
	for _, x := range r.Rows {
		ref := r.find(x.Scenario, x.Case, nameRelaisd)
		if ref == nil || ref == x {
			continue
		}
		var speed, rss, cpu []float64
		for _, s := range x.Samples {
			for _, rs := range ref.Samples {
				if rs.Run != s.Run {
					continue
				}
				if rs.Wall > 0 && s.Wall > 0 {
					speed = append(speed, s.Wall/rs.Wall)
				}
				if rs.PeakRSS > 0 && s.PeakRSS > 0 {
					rss = append(rss, float64(rs.PeakRSS)/float64(s.PeakRSS))
				}
				if rs.CPU > 0 && s.CPU > 0 {
					cpu = append(cpu, rs.CPU/s.CPU)
				}
			}
		}
		x.Vs = &ratios{Speed: statOf(speed), RSS: statOf(rss), CPU: statOf(cpu)}
	}
}

func collect(ss []sample, f func(sample) float64) []float64 {
	var out []float64
	for _, s := range ss {
		if v := f(s); v != 0 {
			out = append(out, v)
		}
	}
	return out
}

// Machine facts for the table's header.

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func memoryGB() float64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / (1 << 20)
		}
	}
	return 0
}

func loadAverage() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func firstLine(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(l)
}

// dcmtkVersion turns "$dcmtk: storescp v3.6.7 2022-04-22 $" into "DCMTK 3.6.7".
func dcmtkVersion() string {
	for _, f := range strings.Fields(firstLine("storescp", "--version")) {
		if v, ok := strings.CutPrefix(f, "v"); ok {
			return "DCMTK " + v
		}
	}
	return "DCMTK ?"
}
