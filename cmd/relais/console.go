package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/relais/relais/appliance/consolekeys"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/tui"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// consoleArgs are the console's flags.
type consoleArgs struct {
	vt     int    // take over this virtual console; 0 runs in the current terminal
	kmsgVT int    // move kernel messages to this virtual console (with -vt)
	ssh    string // serve the console over SSH on this address
}

func consoleCommand(e *env) *cobra.Command {
	var a consoleArgs
	cmd := &cobra.Command{
		Use:   "console [-vt N [-kmsg-vt N]] [-ssh ADDR]",
		Short: "the console: this terminal, a virtual console, or over SSH",
		Args:  positional(),
		RunE: func(*cobra.Command, []string) error {
			if err := a.check(); err != nil {
				return usageError{err}
			}
			return console(e.data, a)
		},
	}
	a.flags(cmd.Flags())
	return cmd
}

func (a *consoleArgs) flags(fs *pflag.FlagSet) {
	fs.IntVar(&a.vt, "vt", 0, "take over Linux virtual console `N` (tty2 on gokrazy)")
	fs.IntVar(&a.kmsgVT, "kmsg-vt", 1, "with -vt, move kernel messages to virtual console `N` (0 leaves them)")
	fs.StringVar(&a.ssh, "ssh", "", "serve the console over SSH on `ADDR` to the keys in DATA/"+consolekeys.File+" (or, while there is none, "+consolekeys.ImageFile+")")
}

// check validates the flags before anything is touched.
func (a consoleArgs) check() error {
	if a.vt != 0 && a.ssh != "" {
		return fmt.Errorf("console: -vt and -ssh are two different consoles: run one of each")
	}
	if a.vt != 0 {
		if err := tui.CheckVT(a.vt); err != nil {
			return fmt.Errorf("console: %w", err)
		}
		if a.kmsgVT < 0 || a.kmsgVT > 63 {
			return fmt.Errorf("console: -kmsg-vt %d: want 0 to 63", a.kmsgVT)
		}
	}
	return nil
}

// console runs the console: in this terminal, on a virtual console, or
// over SSH.
func console(dataDir string, a consoleArgs) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := tui.Options{Socket: filepath.Join(dataDir, control.SocketName)}
	switch {
	case a.ssh != "":
		s := tui.SSH{DataDir: dataDir, ImageKeys: consolekeys.ImageFile}
		// Started by hand: say at once that nobody could log in.
		keys := consolekeys.In(dataDir, s.ImageKeys)
		if k, _, err := keys.Load(); err == nil && len(k) == 0 {
			return fmt.Errorf("console over SSH needs the allowed public keys in %s (the console's Setup, Console keys)", keys.Box)
		}
		ln, err := net.Listen("tcp", a.ssh)
		if err != nil {
			return fmt.Errorf("console over SSH: %w", err)
		}
		return tui.ServeSSH(ctx, ln, s, opts)
	case a.vt != 0:
		return tui.OnVT(ctx, a.vt, a.kmsgVT, opts)
	}
	return tui.Run(ctx, opts, os.Stdin, os.Stdout, os.Environ())
}
