// relais is the command line of the Relais box: it talks to relaisd through
// the control socket in the data folder. `relais --help` lists the
// commands, `relais COMMAND --help` explains one (and never runs it).
//
// The commands are built with github.com/spf13/cobra: per-command flags and
// help, shell completion (`relais completion bash|zsh|fish`), suggestions
// for a mistyped command. Flags take one dash or two (-dest D, --dest D), as
// DCMTK's tools and Go's flag package do; -data goes anywhere.
//
// Exit codes: 0 done, 1 failed (relaisd said no, or is not answering), 2 a
// mistake on the command line (unknown command or flag, missing argument).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// requestTimeout bounds each command's requests to relaisd.
const requestTimeout = 30 * time.Second

func main() {
	e := &env{in: os.Stdin, out: os.Stdout, errOut: os.Stderr, terminal: term.IsTerminal(int(os.Stdin.Fd()))}
	os.Exit(run(context.Background(), e, os.Args[1:]))
}

// env is what the commands run with; there is no global state, so tests
// run the whole command line in-process.
type env struct {
	data     string // relaisd's data folder (-data): holds the control socket
	in       io.Reader
	out      io.Writer
	errOut   io.Writer
	terminal bool // in is a terminal: destructive actions ask there
}

// client talks to the relaisd of the data folder.
func (e *env) client() *control.Client {
	return control.NewClient(filepath.Join(e.data, control.SocketName))
}

// run runs the command line args and returns the exit code.
func run(ctx context.Context, e *env, args []string) int {
	root := newRoot(e)
	root.SetArgs(goStyleArgs(args))
	root.SetIn(e.in)
	root.SetOut(e.out)
	root.SetErr(e.errOut)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(e.errOut, "relais: %v\n", err)
	printFields(e.errOut, err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.errOut, "(%s --help says how)\n", cmd.CommandPath())
		return exitUsage
	}
	return exitFailed
}

// printFields lists a configuration's problems one a line, when there are
// several (the message has them all on one line).
func printFields(w io.Writer, err error) {
	var fields []config.FieldError
	var ce *control.Error
	var ve config.ValidationError
	switch {
	case errors.As(err, &ce):
		fields = ce.Fields
	case errors.As(err, &ve):
		fields = ve
	}
	if len(fields) < 2 {
		return
	}
	for _, f := range fields {
		fmt.Fprintf(w, "  %s: %s\n", f.Field, f.Msg)
	}
}

// usageError is a mistake on the command line: exit code 2.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// newRoot builds the command tree.
func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "relais",
		Short: "the command line of the Relais box",
		Long: `relais talks to relaisd, the daemon of the Relais box, through the control
socket in its data folder. Flags take one dash or two (-dest D is --dest D).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(e.errOut)
			cmd.Usage()
			return usagef("which command?")
		},
		SilenceErrors: true,
		SilenceUsage:  true,
		// Suggest commands two edits away (stauts: status).
		SuggestionsMinimumDistance: 2,
	}
	root.PersistentFlags().StringVar(&e.data, "data", defaultDataDir, "relaisd's data folder (holds the control socket)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddGroup(&cobra.Group{ID: "box", Title: "The box:"}, &cobra.Group{ID: "queue", Title: "Forwarding:"},
		&cobra.Group{ID: "setup", Title: "Setting up:"})
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("box", consoleCommand(e), statusCommand(e), studiesCommand(e), eventsCommand(e), echoCommand(e), callersCommand(e))
	add("queue", retryCommand(e), parkedCommand(e), resendCommand(e), abandonCommand(e), pauseCommand(e, true),
		pauseCommand(e, false), urgentCommand(e), purgeCommand(e), conflictsCommand(e))
	add("setup", configCommand(e), approveCommand(e), denyCommand(e), keysCommand(e), tunnelCommand(e), genCommand(e))
	return root
}

// unknownCommand is the error for a command that does not exist, with the
// ones it may have meant.
func unknownCommand(cmd *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, cmd.CommandPath())
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError{errors.New(msg)}
}

// subcommands is the Args of a command that runs itself without arguments
// and has subcommands: anything else is an unknown command.
func subcommands(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return unknownCommand(cmd, args[0])
	}
	return nil
}

// positional takes the named arguments, the last optional ones in [].
func positional(names ...string) cobra.PositionalArgs {
	required := 0
	for _, n := range names {
		if !strings.HasPrefix(n, "[") {
			required++
		}
	}
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < required:
			return usagef("%s: missing %s", cmd.CommandPath(), strings.Join(names[len(args):required], " and "))
		case len(args) > len(names):
			return usagef("%s: unexpected argument %q", cmd.CommandPath(), args[len(names)])
		}
		return nil
	}
}

// api makes a command's action: fn gets a client of relaisd and a context
// that bounds its requests.
func (e *env) api(fn func(ctx context.Context, c *control.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
		defer cancel()
		return fn(ctx, e.client(), args)
	}
}

// goStyleFlag is a flag with one dash and a name of two or more letters
// (-dest, -aec), as Go's flag package and DCMTK's tools write them.
var goStyleFlag = regexp.MustCompile(`^-[A-Za-z][A-Za-z0-9-]+(=.*)?$`)

// goStyleArgs doubles the dash of such flags for cobra, which reads -abc
// as -a -b -c; single letters (-n, -y, -h) and everything after -- stay.
func goStyleArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
		if goStyleFlag.MatchString(a) {
			a = "-" + a
		}
		out[i] = a
	}
	return out
}

// operator names who acts, for audit events: the login user.
func operator() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return fmt.Sprintf("uid %d", os.Getuid())
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }
