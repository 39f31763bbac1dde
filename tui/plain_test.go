package tui

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/appliance/forward"
	"github.com/relais/relais/testdata/peers"
	"github.com/relais/relais/vpn"
)

// TestPlainSaysWhatToDoAndKeepsTheCause feeds plain the errors the console
// meets, made the way they are made (a real refused dial, a real missing
// control socket, Go's own parse errors; the daemon's explained text as it
// crosses the control API), and checks the sentence a technician reads and
// the technical cause kept apart.
func TestPlainSaysWhatToDoAndKeepsTheCause(t *testing.T) {
	port := peers.FreePort(t) // nothing listens there
	_, refused := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if !errors.Is(refused, syscall.ECONNREFUSED) {
		t.Fatalf("dial where nothing listens: %v", refused)
	}
	backup := config.Destination{AETitle: "BACKUP", Host: "127.0.0.1", Port: port}
	center := config.Destination{Name: "center", AETitle: "PACS", Host: "10.8.0.1", Port: 104}
	// What the daemon says over the control API: explained text.
	daemon := func(d config.Destination, err error) error {
		return errors.New(forward.Explain(d, "RELAIS", fmt.Errorf("associate with %s: %w", d.Addr(), err)))
	}
	down := control.NewClient(filepath.Join(t.TempDir(), "relais.sock"))
	_, noSocket := down.Status(t.Context())
	late, cancel := context.WithTimeout(t.Context(), 0)
	defer cancel()
	_, timedOut := control.NewClient(filepath.Join(t.TempDir(), "relais.sock")).Status(late)
	_, badPrefix := netip.ParsePrefix("")
	_, badAddr := netip.ParseAddr("10.8.0")
	_, badKey := vpn.ParseKey("abc")
	_, badNumber := strconv.Atoi("1O4")

	for _, c := range []struct {
		name     string
		err      error
		sentence string
		cause    string // a part of it; "" when there must be none
	}{
		{"connection refused", daemon(backup, refused),
			fmt.Sprintf("nothing answers at BACKUP at 127.0.0.1:%d: is the PACS running, is the port right?", port), "connection refused"},
		{"timeout", daemon(center, context.DeadlineExceeded),
			"no answer from center (PACS at 10.8.0.1:104) in time: is the address right, is the tunnel up?", "context deadline exceeded"},
		{"no route", daemon(center, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.EHOSTUNREACH}),
			"no route to center (PACS at 10.8.0.1:104): check the network and the tunnel", "no route to host"},
		{"DNS failure", daemon(config.Destination{Name: "center", AETitle: "PACS", Host: "pacs.center.invalid", Port: 104},
			&net.DNSError{Name: "pacs.center.invalid", Err: "no such host", IsNotFound: true}),
			"the name pacs.center.invalid cannot be resolved: check the host name and the box's DNS", "no such host"},
		{"called AE not recognised", daemon(center, dimse.RejectCalledAE),
			"center (PACS at 10.8.0.1:104) does not answer to the AE title PACS: check the AE title set for it here", "called AE title not recognized"},
		{"calling AE not recognised", daemon(center, dimse.RejectCallingAE),
			"center (PACS at 10.8.0.1:104) does not know this box: the center must register our AE title RELAIS (and our address)", "calling AE title not recognized"},
		{"echo aborted", daemon(center, &dimse.AbortError{Source: dimse.AbortSourceUser}),
			"center (PACS at 10.8.0.1:104) aborted the association: see its log", "peer aborted association"},
		{"daemon not running", noSocket,
			"relaisd is not running (its control socket is closed): the console retries on its own; restart the box if it stays", "no such file"},
		{"daemon too slow", timedOut,
			"relaisd did not answer in time (it may be busy): the console retries on its own", "deadline exceeded"},
		{"field errors kept", &control.Error{Message: "invalid configuration", Fields: []config.FieldError{{Field: "port", Msg: "0 is not a port"}}},
			"invalid configuration\n  port: 0 is not a port", ""},
		{"prefix", &control.Error{Message: "tunnel address: " + badPrefix.Error()},
			"tunnel address: an address with its network is needed, for example 10.8.0.2/24", `netip.ParsePrefix(""): no '/'`},
		{"address", errors.New("gateway: " + badAddr.Error()), "gateway: an IP address is needed, for example 192.168.1.20", "10.8.0"},
		{"key", &control.Error{Message: badKey.Error()}, "public key: a WireGuard key is needed: 44 characters of base64 ending in =", "base64"},
		{"number", badNumber, `"1O4" is not a number: a whole number is needed`, "invalid syntax"},
		{"already plain", errors.New("no destination \"backup\""), "no destination \"backup\"", ""},
	} {
		sentence, cause := plain(c.err)
		if sentence != c.sentence {
			t.Errorf("%s: sentence\n  %q\nwant\n  %q", c.name, sentence, c.sentence)
		}
		if c.cause == "" && cause != "" || !strings.Contains(cause, c.cause) {
			t.Errorf("%s: cause %q, want one with %q", c.name, cause, c.cause)
		}
	}
}
