package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/relais/relais/testdata/dcmgen"
)

// gen writes a synthetic, deterministic study: a CT series, small
// instances and optionally a ~262 MB multi-frame instance.
func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	out := fs.String("out", "relais-study", "folder to write into")
	ct := fs.Int("ct", 20, "CT slices of 512×512×16 bits (~0.5 MB each)")
	small := fs.Int("small", 0, "small instances (64×64, ~10 KB each)")
	multiframe := fs.Bool("multiframe", false, "also write one ~262 MB multi-frame instance")
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()), "seed: the same seed writes the same study")
	fs.Parse(args)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	n := 0
	write := func(name string, in dcmgen.Instance) error {
		if _, err := in.WriteFile(filepath.Join(*out, name)); err != nil {
			return err
		}
		n++
		return nil
	}
	for i := 1; i <= *ct; i++ {
		if err := write(fmt.Sprintf("ct-%04d.dcm", i), dcmgen.Instance{InstanceNumber: i, Seed: *seed}); err != nil {
			return err
		}
	}
	for i := 1; i <= *small; i++ {
		in := dcmgen.Instance{Rows: 64, Columns: 64, SeriesNumber: 2, SeriesInstanceUID: dcmgen.UID("small", *seed), InstanceNumber: i, Seed: *seed}
		if err := write(fmt.Sprintf("small-%05d.dcm", i), in); err != nil {
			return err
		}
	}
	if *multiframe {
		in := dcmgen.Instance{Frames: 500, SeriesNumber: 3, SeriesInstanceUID: dcmgen.UID("mf", *seed), InstanceNumber: 1, Seed: *seed,
			SOPClassUID: dcmgen.MultiFrameGrayscaleWordSC, Modality: "OT"}
		if err := write("multiframe.dcm", in); err != nil {
			return err
		}
	}
	fmt.Printf("wrote %d instance(s) of one study into %s\n", n, *out)
	return nil
}
