package forward

import (
	"context"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
)

func TestBackoffGrowsToItsCapWithJitter(t *testing.T) {
	f := &Forwarder{deps: Deps{RetryMin: time.Second, RetryMax: time.Minute}}
	for n := 1; n <= 10; n++ {
		d := min(time.Second<<(n-1), time.Minute)
		for range 100 {
			if got := f.backoff(n); got < d/2 || got > d {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, got, d/2, d)
			}
		}
	}
}

func TestCommitmentWaitsForQuietOnTheClockAsItIsNow(t *testing.T) {
	tr := newTracker(&Forwarder{dest: config.Destination{CommitAfterSeconds: 30}})
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		last time.Time
		want time.Time
	}{
		{"received 10 s ago", now.Add(-10 * time.Second), now.Add(20 * time.Second)},
		{"received long ago", now.Add(-time.Hour), now},
		{"received an instant ahead (another goroutine's clock)", now.Add(100 * time.Millisecond), now.Add(30*time.Second + 100*time.Millisecond)},
		{"received before the clock was set back 2 h", now.Add(2 * time.Hour), now},
	} {
		if got := tr.quietAt(c.last, now); !got.Equal(c.want) {
			t.Errorf("%s: quiet at %v, want %v", c.name, got, c.want)
		}
	}
}

func TestExplainSaysWhatToDo(t *testing.T) {
	d := config.Destination{Name: "center", AETitle: "PACS", Host: "10.8.0.1", Port: 104}
	for _, c := range []struct {
		dest config.Destination
		err  error
		want string
	}{
		{d, &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, "nothing answers at center (PACS at 10.8.0.1:104): is the PACS running, is the port right?"},
		{d, fmt.Errorf("associate: %w", dimse.RejectCalledAE), "center (PACS at 10.8.0.1:104) does not answer to the AE title PACS: check the AE title set for it here"},
		{d, fmt.Errorf("associate: %w", dimse.RejectCallingAE), "does not know this box: the center must register our AE title RELAIS"},
		{d, fmt.Errorf("associate: %w", dimse.RejectTemporaryCongestion), "is busy"},
		{d, &dimse.AbortError{Source: dimse.AbortSourceUser}, "center (PACS at 10.8.0.1:104) aborted the association"},
		{d, fmt.Errorf("associate: %w", dimse.ErrNoContextAccepted), "accepts none of what was proposed"},
		{d, &net.DNSError{Name: "pacs.example", Err: "no such host"}, "the name 10.8.0.1 cannot be resolved"},
		{d, &net.OpError{Op: "dial", Err: syscall.EHOSTUNREACH}, "no route to center"},
		{d, fmt.Errorf("associate: %w", context.DeadlineExceeded), "no answer from center (PACS at 10.8.0.1:104) in time"},
		// An echo of any address: no destination name.
		{config.Destination{AETitle: "BACKUP", Host: "127.0.0.1", Port: 46999}, &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED},
			"nothing answers at BACKUP at 127.0.0.1:46999: is the PACS running, is the port right?"},
	} {
		got := Explain(c.dest, "RELAIS", c.err)
		sentence, cause := control.SplitCause(got)
		if !strings.Contains(sentence, c.want) || cause != c.err.Error() {
			t.Errorf("Explain(%v) = %q, want it to say %q and keep the cause", c.err, got, c.want)
		}
	}
}
