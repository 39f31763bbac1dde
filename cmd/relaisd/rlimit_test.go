//go:build unix

package main

import (
	"bytes"
	"log/slog"
	"strings"
	"syscall"
	"testing"
)

func TestFileLimitIsRaisedToTheHardLimit(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max < 128 {
		t.Skipf("hard limit %d: nothing to lower and raise", lim.Max)
	}
	low := lim
	low.Cur = 64
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	raiseFileLimit(slog.New(slog.NewTextHandler(&out, nil)))
	var got syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &got)
	t.Logf("log: %s", strings.TrimSpace(out.String()))
	if got.Cur != lim.Max || !strings.Contains(out.String(), "open file limit raised") {
		t.Fatalf("soft limit %d after raising, hard %d; log %q", got.Cur, lim.Max, out.String())
	}
}
