package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/relais/relais/testdata/dcmgen"
	"github.com/spf13/cobra"
)

// genArgs say what synthetic study to write.
type genArgs struct {
	out        string
	ct, small  int
	multiframe bool
	seed       uint64
}

func genCommand(e *env) *cobra.Command {
	var a genArgs
	cmd := &cobra.Command{
		Use:   "gen [-out DIR] [-ct N] [-small N] [-multiframe]",
		Short: "write a synthetic study (for trying the box out)",
		Args:  positional(),
		RunE:  func(*cobra.Command, []string) error { return gen(e.out, a) },
	}
	f := cmd.Flags()
	f.StringVar(&a.out, "out", "relais-study", "folder to write into")
	f.IntVar(&a.ct, "ct", 20, "CT slices of 512×512×16 bits (~0.5 MB each)")
	f.IntVar(&a.small, "small", 0, "small instances (64×64, ~10 KB each)")
	f.BoolVar(&a.multiframe, "multiframe", false, "also write one ~262 MB multi-frame instance")
	f.Uint64Var(&a.seed, "seed", uint64(time.Now().UnixNano()), "seed: the same seed writes the same study")
	return cmd
}

// gen writes a synthetic, deterministic study: a CT series, small
// instances and optionally a ~262 MB multi-frame instance.
func gen(w io.Writer, a genArgs) error {
	if err := os.MkdirAll(a.out, 0o755); err != nil {
		return err
	}
	n := 0
	write := func(name string, in dcmgen.Instance) error {
		if _, err := in.WriteFile(filepath.Join(a.out, name)); err != nil {
			return err
		}
		n++
		return nil
	}
	for i := 1; i <= a.ct; i++ {
		if err := write(fmt.Sprintf("ct-%04d.dcm", i), dcmgen.Instance{InstanceNumber: i, Seed: a.seed}); err != nil {
			return err
		}
	}
	for i := 1; i <= a.small; i++ {
		in := dcmgen.Instance{Rows: 64, Columns: 64, SeriesNumber: 2, SeriesInstanceUID: dcmgen.UID("small", a.seed), InstanceNumber: i, Seed: a.seed}
		if err := write(fmt.Sprintf("small-%05d.dcm", i), in); err != nil {
			return err
		}
	}
	if a.multiframe {
		in := dcmgen.Instance{Frames: 500, SeriesNumber: 3, SeriesInstanceUID: dcmgen.UID("mf", a.seed), InstanceNumber: 1, Seed: a.seed,
			SOPClassUID: dcmgen.MultiFrameGrayscaleWordSC, Modality: "OT"}
		if err := write("multiframe.dcm", in); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "wrote %d instance(s) of one study into %s\n", n, a.out)
	return nil
}
