package forward

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relais/relais/appliance/config"
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

func TestExplainSaysWhatToDo(t *testing.T) {
	d := config.Destination{Name: "center", AETitle: "PACS", Host: "10.8.0.1", Port: 104}
	for _, c := range []struct {
		err  error
		want string
	}{
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, "nothing answers at center (PACS at 10.8.0.1:104): is the PACS running, is the port right?"},
		{fmt.Errorf("associate: %w", dimse.RejectCalledAE), "refuses the called AE title PACS"},
		{fmt.Errorf("associate: %w", dimse.RejectCallingAE), "does not know this box: register our AE title there"},
		{&net.DNSError{Name: "pacs.example", Err: "no such host"}, "the name 10.8.0.1 cannot be resolved"},
	} {
		if got := Explain(d, c.err); !strings.Contains(got, c.want) || !strings.Contains(got, c.err.Error()) {
			t.Errorf("Explain(%v) = %q, want it to say %q and keep the cause", c.err, got, c.want)
		}
	}
}
