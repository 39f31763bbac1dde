package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/relais/relais/testdata/dcmgen"
)

// corpusSpec says what to generate; the same spec writes the same bytes.
type corpusSpec struct {
	CT            int // slices of 512×512×16 bits, Explicit VR LE, and again in Implicit VR LE
	Small         int // 64×64×16 bits instances
	Frames        int // frames of the one multi-frame instance
	LatencySlices int // slices of the study the latency scenario sends
}

// set is one group of files sent together.
type set struct {
	Name  string   `json:"name"`
	Files []string `json:"files"`
	Bytes int64    `json:"bytes"`
	// Study is the Study Instance UID (the latency scenario follows it).
	Study string `json:"study"`
	// TransferSyntax of every file.
	TransferSyntax string `json:"transfer_syntax"`
}

// corpus is the generated files, by set.
type corpus struct {
	Spec                                     corpusSpec `json:"spec"`
	CT, CTImplicit, Small, Big, LatencyStudy set
}

// corpusSummary is what the results say about the corpus.
type corpusSummary map[string]string

func (c *corpus) summary() corpusSummary {
	s := corpusSummary{}
	for _, x := range []set{c.CT, c.CTImplicit, c.Small, c.Big, c.LatencyStudy} {
		s[x.Name] = fmt.Sprintf("%d instance(s), %.1f MB", len(x.Files), mb(x.Bytes))
	}
	return s
}

const (
	corpusManifest = "corpus.json"
	seedCT         = 8001
	seedImplicit   = 8002
	seedSmall      = 8003
	seedBig        = 8004
	seedLatency    = 8005
)

// makeCorpus writes the corpus into dir, or reuses what a previous run wrote
// there from the same spec.
func makeCorpus(ctx context.Context, dir string, spec corpusSpec, log *slog.Logger) (*corpus, error) {
	if c, err := loadCorpus(dir, spec); err == nil {
		log.Info("reusing the corpus", "dir", dir)
		return c, nil
	}
	os.RemoveAll(dir)
	start := time.Now()
	log.Info("generating the corpus", "dir", dir, "ct", spec.CT, "small", spec.Small, "frames", spec.Frames)
	c := &corpus{Spec: spec}
	jobs := []struct {
		s  *set
		ts string
		in []dcmgen.Instance
	}{
		{&c.CT, dcmgen.ExplicitVRLittleEndian, series(spec.CT, 512, seedCT, "CT", dcmgen.CTImageStorage, 1)},
		{&c.CTImplicit, dcmgen.ImplicitVRLittleEndian, series(spec.CT, 512, seedImplicit, "CT", dcmgen.CTImageStorage, 1)},
		{&c.Small, dcmgen.ExplicitVRLittleEndian, series(spec.Small, 64, seedSmall, "CT", dcmgen.CTImageStorage, 1)},
		{&c.Big, dcmgen.ExplicitVRLittleEndian, series(1, 512, seedBig, "OT", dcmgen.MultiFrameGrayscaleWordSC, spec.Frames)},
		{&c.LatencyStudy, dcmgen.ExplicitVRLittleEndian, series(spec.LatencySlices, 512, seedLatency, "CT", dcmgen.CTImageStorage, 1)},
	}
	names := []string{"ct", "ct-implicit", "small", "multiframe", "latency-study"}
	for i, j := range jobs {
		for k := range j.in {
			j.in[k].TransferSyntax = j.ts
		}
		if err := writeSet(ctx, filepath.Join(dir, names[i]), names[i], j.in, j.s); err != nil {
			return nil, err
		}
	}
	b, err := json.MarshalIndent(c, "", " ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, corpusManifest), b, 0o644); err != nil {
		return nil, fmt.Errorf("write the corpus manifest: %w", err)
	}
	log.Info("corpus ready", "took", time.Since(start).Round(time.Millisecond))
	return c, nil
}

// series describes n instances of one study and series.
func series(n, size int, seed uint64, modality, sopClass string, frames int) []dcmgen.Instance {
	out := make([]dcmgen.Instance, n)
	for i := range out {
		out[i] = dcmgen.Instance{Rows: size, Columns: size, Frames: frames, InstanceNumber: i + 1, Seed: seed,
			Modality: modality, SOPClassUID: sopClass, StudyDescription: "relais bench"}.Defaults()
	}
	return out
}

// writeSet writes instances into dir on every core.
func writeSet(ctx context.Context, dir, name string, ins []dcmgen.Instance, s *set) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	*s = set{Name: name, Files: make([]string, len(ins)), TransferSyntax: ins[0].TransferSyntax, Study: ins[0].StudyInstanceUID}
	sizes := make([]int64, len(ins))
	errs := make([]error, len(ins))
	next := make(chan int)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				s.Files[i] = filepath.Join(dir, fmt.Sprintf("%05d.dcm", i+1))
				sizes[i], errs[i] = ins[i].WriteFile(s.Files[i])
			}
		}()
	}
	for i := range ins {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for i := range ins {
		if errs[i] != nil {
			return fmt.Errorf("generate %s: %w", name, errs[i])
		}
		s.Bytes += sizes[i]
	}
	return nil
}

// loadCorpus reads a previous run's manifest when its spec matches and
// every file is still there with its size.
func loadCorpus(dir string, spec corpusSpec) (*corpus, error) {
	b, err := os.ReadFile(filepath.Join(dir, corpusManifest))
	if err != nil {
		return nil, err
	}
	var c corpus
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	if c.Spec != spec {
		return nil, fmt.Errorf("corpus in %s was made for %+v", dir, c.Spec)
	}
	for _, s := range []set{c.CT, c.CTImplicit, c.Small, c.Big, c.LatencyStudy} {
		var total int64
		for _, f := range s.Files {
			fi, err := os.Stat(f)
			if err != nil {
				return nil, err
			}
			total += fi.Size()
		}
		if total != s.Bytes {
			return nil, fmt.Errorf("corpus set %s changed", s.Name)
		}
	}
	return &c, nil
}

func mb(n int64) float64 { return float64(n) / 1e6 }
