package main

import (
	"io"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// parseConsoleArgs reads console's flags as relais console does.
func parseConsoleArgs(args []string) (consoleArgs, error) {
	var a consoleArgs
	fs := pflag.NewFlagSet("console", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a.flags(fs)
	if err := fs.Parse(goStyleArgs(args)); err != nil {
		return a, err
	}
	if fs.NArg() > 0 {
		return a, usagef("console: unexpected argument %q", fs.Arg(0))
	}
	return a, a.check()
}

// TestConsoleArgs: -vt and -ssh are checked before anything is touched.
// Taking over a real virtual console (VT_ACTIVATE, setsid, TIOCLINUX) needs
// a Linux console and is not tested here.
func TestConsoleArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want consoleArgs
		err  string
	}{
		{args: nil, want: consoleArgs{kmsgVT: 1}},
		{args: []string{"--vt", "2"}, want: consoleArgs{vt: 2, kmsgVT: 1}},
		{args: []string{"-vt", "2", "-kmsg-vt", "0"}, want: consoleArgs{vt: 2}},
		{args: []string{"-ssh", ":2222"}, want: consoleArgs{kmsgVT: 1, ssh: ":2222"}},
		{args: []string{"--vt", "0"}, want: consoleArgs{kmsgVT: 1}},
		{args: []string{"--vt", "64"}, err: "want 1 to 63"},
		{args: []string{"--vt", "-1"}, err: "want 1 to 63"},
		{args: []string{"--vt", "tty2"}, err: "invalid argument"},
		{args: []string{"--vt", "2", "-kmsg-vt", "99"}, err: "want 0 to 63"},
		{args: []string{"--vt", "2", "-ssh", ":22"}, err: "two different consoles"},
		{args: []string{"extra"}, err: `unexpected argument "extra"`},
	} {
		got, err := parseConsoleArgs(tc.args)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one saying %q", tc.args, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.err == "" && got != tc.want:
			t.Errorf("%q: got %+v, want %+v", tc.args, got, tc.want)
		}
	}
}
