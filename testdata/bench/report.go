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

// targets measures issue 8's goals from the rows.
func (b *bench) targets() []target {
	r := b.results
	cases := b.ingestCases()
	var out []target
	speed := func(what, scenario, cas, peer string, want float64) {
		x := r.find(scenario, cas, peer)
		if x == nil || x.Vs == nil || x.Vs.Speed.N == 0 {
			return
		}
		out = append(out, target{What: what, Want: fmt.Sprintf("≥ %.2g×", want), Got: x.Vs.Speed, Unit: "×", Met: x.Vs.Speed.Median >= want})
	}
	speed("CT ingest, storescu ×1: relaisd (synced) / storescp (no sync)", "Ingest", cases[caseCT1].label, nameStorescp, 1)
	speed("CT ingest, storescu ×1: relaisd / Orthanc", "Ingest", cases[caseCT1].label, nameOrthanc, 4)
	speed("small instances, storescu ×1: relaisd / Orthanc", "Ingest", cases[caseSmall1].label, nameOrthanc, 3)
	if x := r.find("Ingest", cases[caseBig].label, nameRelaisd); x != nil && x.PeakRSSMB.N > 0 {
		out = append(out, target{What: "relaisd peak RSS (VmHWM) receiving the multi-frame instance", Want: "≤ 64 MB", Got: x.PeakRSSMB, Unit: "MB", Met: x.PeakRSSMB.Max <= 64})
		out = append(out, target{What: "  of which anonymous memory (heap, stacks; sampled)", Want: "≤ 64 MB", Got: x.AnonMB, Unit: "MB", Met: x.AnonMB.Max <= 64})
	}
	speed("forwarding through netstack WireGuard: relaisd / raw TCP", "Tunnel", b.tunnelLabel(), rawName, 0.8)
	return out
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
	if len(r.Targets) > 0 {
		fmt.Fprintln(w, "\nTARGETS (ratios run by run, median (min–max))")
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
			fmt.Fprintf(tw, "%s\t%s\twant %s\t%s\n", t.What, got, t.Want, verdict)
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
