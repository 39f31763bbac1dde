package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
)

// report computes the statistics and targets, writes results-DATE.json and
// results-DATE.txt, and prints the table.
func (b *bench) report() error {
	r := b.results
	r.summarize()
	r.Targets = b.targets()
	if err := os.MkdirAll(b.opts.out, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	base := filepath.Join(b.opts.out, "results-"+r.stamp())
	if err := os.WriteFile(base+".json", append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	var table strings.Builder
	writeTable(&table, r)
	if err := os.WriteFile(base+".txt", []byte(table.String()), 0o644); err != nil {
		return fmt.Errorf("write the table: %w", err)
	}
	fmt.Print(table.String())
	fmt.Printf("\nresults: %s.json, %s.txt\n", base, base)
	return nil
}

// targets measures issue 13's targets (and issue 8's tunnel goal, which
// no later one replaced) from the rows.
func (b *bench) targets() []target {
	r := b.results
	cases := b.ingestCases()
	var out []target
	speed := func(what, scenario, cas, peer string, want float64, bound stat) {
		x := r.find(scenario, cas, peer)
		if x == nil || x.Vs == nil || x.Vs.Speed.N == 0 {
			return
		}
		out = append(out, target{What: what, Want: fmt.Sprintf("≥ %.2g×", want), Got: x.Vs.Speed, Unit: "×", Met: x.Vs.Speed.Median >= want, Bound: bound})
	}
	ct1, ct4, small1, big := cases[caseCT1].label, cases[caseCT4].label, cases[caseSmall1].label, cases[caseBig].label
	// One sender waits for each answer, and a store that syncs answers
	// after the sync: a store receiving as storescp does here (no sync),
	// plus one ceiling's file and fsync after each instance's last byte.
	// Not a law (another store could receive faster than storescp), but
	// what the two floors measured beside relaisd add up to.
	storescpPlusCeiling := func(cas string) func(run int) (float64, bool) {
		return func(run int) (float64, bool) {
			a, ok1 := r.wall("Ingest", cas, nameStorescp, run)
			b, ok2 := r.wall("Ingest", cas, diskName, run)
			return a + b, ok1 && ok2
		}
	}
	speed("CT ingest, storescu ×1: relaisd / disk ceiling (file + fsync each)", "Ingest", ct1, diskName, 0.8, r.bound(ct1, diskName, storescpPlusCeiling(ct1)))
	speed("CT ingest, storescu ×1: relaisd / Orthanc", "Ingest", ct1, nameOrthanc, 4, r.bound(ct1, nameOrthanc, storescpPlusCeiling(ct1)))
	speed("CT ingest, storescu ×4: relaisd / Orthanc", "Ingest", ct4, nameOrthanc, 3, stat{})
	speed("small instances, storescu ×1: relaisd / disk ceiling", "Ingest", small1, diskName, 0.8, r.bound(small1, diskName, storescpPlusCeiling(small1)))
	speed("small instances, storescu ×1: relaisd / Orthanc", "Ingest", small1, nameOrthanc, 3, r.bound(small1, nameOrthanc, storescpPlusCeiling(small1)))
	if x := r.find("Ingest", big, nameRelaisd); x != nil {
		if over := statOf(collect(x.Samples, func(s sample) float64 { return mb(s.PeakRSS - s.IdleRSS) })); over.N > 0 {
			out = append(out, target{What: "multi-frame instance: relaisd peak RSS (VmHWM) over idle", Want: "≤ 16 MB, every run", Got: over, Unit: "MB", Met: over.Max <= 16})
		}
	}
	speed("multi-frame instance: relaisd / disk ceiling (one file + fsync)", "Ingest", big, diskName, 0.8, stat{})
	speed("forwarding CT to Orthanc: relaisd / storescu from files", "Forward", b.forwardLabel(), "storescu", 1, stat{})
	speed("forwarding through netstack WireGuard: relaisd / raw TCP", "Tunnel", b.tunnelLabel(), rawName, 0.8, stat{})
	return append(out, scaleTargets(r.Scale)...)
}

// scaleTargets: status at every size; at the largest, start to C-ECHO,
// idle CPU and the console's polling.
func scaleTargets(rows []*scaleRow) []target {
	if len(rows) == 0 {
		return nil
	}
	var out []target
	for _, x := range rows {
		out = append(out, target{What: fmt.Sprintf("scale: GET /v1/status at %d instances, median (min–max) of %d", x.Instances, scaleCalls),
			Want: "≤ 20 ms", Got: x.StatusMS, Unit: "ms", Met: x.StatusMS.Median <= 20})
	}
	top := rows[len(rows)-1]
	one := func(v float64) stat { return statOf([]float64{v}) }
	return append(out,
		target{What: fmt.Sprintf("scale: process start → first C-ECHO answered at %d instances", top.Instances),
			Want: "≤ 2 s", Got: top.StartToEcho, Unit: "s", Met: top.StartToEcho.Median <= 2},
		target{What: fmt.Sprintf("scale: idle CPU at %d instances", top.Instances),
			Want: "≤ 1 %", Got: one(top.IdleCPU), Unit: "% of a core", Met: top.IdleCPU <= 1},
		target{What: fmt.Sprintf("scale: console polling every second at %d instances, over idle", top.Instances),
			Want: "≤ 2 %", Got: one(top.PollingCPU), Unit: "% of a core", Met: top.PollingCPU <= 2})
}

// writeScale prints the scale section.
func writeScale(w io.Writer, rows []*scaleRow) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\nSCALE (relaisd started on a store of small instances queued for a paused destination; status and metrics: %d calls in a row on the control socket; "+
		"first studies: the first list of 50 built; busy: Badger compacting after the start, waited for (under %d %% over 5 s, at most %v); "+
		"then %d turns of %v with nothing happening (idle: their mean) and %v of a console polling status, studies (50) and metrics every second "+
		"(polling: the median of the turns' differences); CPU in %% of one core)\n",
		scaleCalls, scaleSettled, scaleSettleMax, scaleTurns, scaleTurn, scaleTurn)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "instances\tfilled through\tfill s\tstart → C-ECHO s\tstatus ms\tmetrics ms\tfirst studies ms\tbusy s\tidle CPU %\tconsole polling CPU %\tidle RSS MB\tof which anon MB")
	for _, x := range rows {
		fill := "–"
		if x.FillSeconds > 0 {
			fill = num(x.FillSeconds)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Instances, x.Filled, fill, fmtStat(x.StartToEcho),
			fmtStat(x.StatusMS), fmtStat(x.MetricsMS), fmtStat(x.StudiesFirstMS), num(x.SettleSeconds), num(x.IdleCPU), num(x.PollingCPU),
			num(x.IdleRSSMB), num(x.IdleAnonMB))
	}
	tw.Flush()
}

// writeTable prints the results as the README shows them.
func writeTable(w io.Writer, r *results) {
	fmt.Fprintf(w, "Relais benchmark, %s on %s: %s, %d cores, %.0f GB, Linux %s, %s\n", r.Date[:10], r.Host, r.CPUModel, r.Cores, r.MemoryGB, r.Kernel, r.Go)
	fmt.Fprintf(w, "peers: %s; %s; loopback; load average %s before, %s after; %d run(s) each, median (min–max); took %s\n",
		r.DCMTK, r.Orthanc, r.LoadBefore, r.LoadAfter, r.Runs, r.Elapsed)
	fmt.Fprintf(w, "max PDU: relaisd 262144, storescp and Orthanc %d; shared machine: absolute figures are noisy, ratios less so\n", r.PeerMaxPDU)
	fmt.Fprintln(w, "durability:")
	for _, n := range []string{nameRelaisd, nameStorescp, nameOrthanc} {
		fmt.Fprintf(w, "  %-9s %s\n", n, r.Durability[n])
	}
	notes := map[string]string{
		"Ingest":  "wall time from the first sender's start to the last one's exit; CPU, peak RSS (VmHWM, mapped files included) and peak anonymous memory of the server",
		"Forward": "relaisd: from Resume to the last instance acknowledged (CPU and peak RSS of relaisd); storescu: reading the files (its own CPU)",
		"Tunnel":  "relaisd → a netstack reading center in the bench process, SCP dropping the bytes; raw TCP: the same byte count through a netstack pair, both ends in the bench",
		"Latency": "from storescu's exit after the last response, polled every 5 ms; the commitment figure includes the quiet period relaisd waits by design",
	}
	for _, sc := range []string{"Ingest", "Forward", "Tunnel", "Latency"} {
		var rows []*row
		for _, x := range r.Rows {
			if x.Scenario == sc {
				rows = append(rows, x)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s (%s)\n", strings.ToUpper(sc), notes[sc])
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "case\tserver\tseconds\tMB/s\tinstances/s\tidle RSS MB\tpeak RSS MB\tpeak anon MB\tCPU s\trelaisd/this: speed\tRSS\tCPU")
		last := ""
		for _, x := range rows {
			cas := x.Case
			if cas == last {
				cas = ""
			}
			last = x.Case
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", cas, x.Server, fmtStat(x.Seconds), fmtStat(x.MBps), fmtStat(x.PerSecond),
				fmtStat(x.IdleRSSMB), fmtStat(x.PeakRSSMB), fmtStat(x.AnonMB), fmtStat(x.CPU))
			if x.Vs != nil {
				fmt.Fprintf(tw, "\t%s\t%s\t%s", fmtRatio(x.Vs.Speed), fmtRatio(x.Vs.RSS), fmtRatio(x.Vs.CPU))
			} else {
				fmt.Fprint(tw, "\t\t\t")
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
	writeScale(w, r.Scale)
	if len(r.Targets) > 0 {
		fmt.Fprintln(w, "\nTARGETS (ratios run by run, median (min–max); storescp + ceiling: the ratio of a store that received as storescp does here, without syncing, then paid one disk-ceiling file and fsync per instance after its last byte, in the same runs)")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, t := range r.Targets {
			verdict := "met"
			if !t.Met {
				verdict = "NOT MET"
			}
			got := fmtStat(t.Got)
			if t.Unit == "×" {
				got = fmtRatio(t.Got)
			} else {
				got += " " + t.Unit
			}
			bound := ""
			if t.Bound.N > 0 {
				bound = "storescp + ceiling: " + fmtRatio(t.Bound)
			}
			fmt.Fprintf(tw, "%s\t%s\twant %s\t%s\t%s\n", t.What, got, t.Want, verdict, bound)
		}
		tw.Flush()
	}
	for _, p := range r.Profiles {
		fmt.Fprintf(w, "\nrelaisd CPU profile %s (go tool pprof -top -cum, relais and Badger functions):\n", p.File)
		shown := 0
		for i, l := range p.Top {
			if i < 2 || (shown < 18 && (strings.Contains(l, "relais/relais") || strings.Contains(l, "badger") || strings.Contains(l, "flat%"))) {
				fmt.Fprintf(w, "  %s\n", l)
				shown++
			}
		}
	}
}

// fmtStat shows a median and, over several runs, its range.
func fmtStat(s stat) string {
	if s.N == 0 {
		return "–"
	}
	if s.N == 1 || s.Min == s.Max {
		return num(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", num(s.Median), num(s.Min), num(s.Max))
}

func fmtRatio(s stat) string {
	if s.N == 0 {
		return "–"
	}
	if s.N == 1 {
		return fmt.Sprintf("%.2f×", s.Median)
	}
	return fmt.Sprintf("%.2f× (%.2f–%.2f)", s.Median, s.Min, s.Max)
}

// num rounds to about three significant digits.
func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}
