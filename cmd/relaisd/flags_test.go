package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets a test run relaisd's main in a child process, to see its
// exit code.
func TestMain(m *testing.M) {
	if os.Getenv("RELAISD_TEST_MAIN") == "1" {
		os.Args = append([]string{"relaisd"}, strings.Fields(os.Getenv("RELAISD_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestFlagsGetTheConfigurationsChecks: a flag that overrides the
// configuration is checked as the configuration's field is, at start.
func TestFlagsGetTheConfigurationsChecks(t *testing.T) {
	for _, tc := range []struct {
		args string
		err  string
	}{
		{"", ""},
		{"-ae CT_SCANNER_ROOM1 -port 104 -listen 192.168.1.20", ""},
		{"-listen ::1 -metrics :9104", ""},
		{"-ae ABCDEFGHIJKLMNOPQ", `-ae: "ABCDEFGHIJKLMNOPQ" is 17 characters long; an AE title has at most 16`},
		{"-port 99999", "-port: 99999 is not a port (1 to 65535)"},
		{"-port 0", "-port: 0 is not a port"},
		{"-listen 192.168.1.300", `-listen: "192.168.1.300" is not an IP address`},
		{"-listen 0.0.0.0:104", `-listen: "0.0.0.0:104" is not an IP address`},
		{"-metrics 9104", `-metrics: "9104" is not host:port`},
		{"-ssh-console tunnel:22=127.0.0.1:2222 -metrics tunnel:9104", ""},
		{"-ssh-console :22=127.0.0.1:2222", `-ssh-console: ":22": want tunnel:PORT`},
		{"-ssh-console tunnel:22", `-ssh-console: "tunnel:22": want tunnel:PORT=ADDR`},
		{"-ssh-console tunnel:22=192.168.1.20:2222", `"192.168.1.20:2222": want a loopback address`},
		{"-ssh-console tunnel:0=127.0.0.1:2222", `"tunnel:0": the port must be 1 to 65535`},
		{"-port 99999 -ae ''", "-ae: an AE title is required\n-port: 99999 is not a port (1 to 65535)"},
		{"-data ''", "-data: a data folder is required"},
		{"-bogus", "flag provided but not defined: -bogus"},
		{"start", `unexpected argument "start"`},
	} {
		args := strings.Fields(strings.ReplaceAll(tc.args, "''", "\x00"))
		for i := range args {
			args[i] = strings.ReplaceAll(args[i], "\x00", "")
		}
		_, err := parseFlags(args, io.Discard)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.args, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: got %v, want %q", tc.args, err, tc.err)
		}
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

// TestBadFlagsExitAtStartAndStayStopped: relaisd refuses a bad flag before
// it opens anything, with exit code 125 (gokrazy leaves it stopped: the
// same flags cannot work next time); -h exits 0.
func TestBadFlagsExitAtStartAndStayStopped(t *testing.T) {
	for _, tc := range []struct {
		args string
		code int
		say  string
	}{
		{"-port 99999", exitBadFlags, "relaisd: -port: 99999 is not a port"},
		{"-ae ABCDEFGHIJKLMNOPQ", exitBadFlags, "at most 16"},
		{"-h", exitStopped, "-listen ADDR"},
	} {
		data := filepath.Join(t.TempDir(), "data")
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "RELAISD_TEST_MAIN=1", "RELAISD_TEST_ARGS=-data "+data+" "+tc.args)
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if code != tc.code || !strings.Contains(string(out), tc.say) {
			t.Errorf("relaisd %s: exit %d, want %d; output %q, want it to say %q", tc.args, code, tc.code, out, tc.say)
		}
		if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("relaisd %s created its data folder before refusing", tc.args)
		}
	}
}
