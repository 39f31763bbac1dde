package dimse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relais/relais/testdata/peers"
)

// Floods: what the server holds for callers that connect and then hoard,
// trickle or crowd, and that the listener outlives its accept errors.

// dialFrom opens a raw connection to addr from a loopback source address
// (127.0.0.2, ...): a caller other than the test's tools on 127.0.0.1.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dialerFrom(src string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return d.DialContext
}

// echoscu runs DCMTK's echoscu against addr as aet and says how long it took.
func echoscu(t *testing.T, addr, aet string) (time.Duration, error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	start := time.Now()
	out, err := peers.DCMTK(t, "echoscu", "-aec", "RELAIS", "-aet", aet, host, port)
	if err != nil {
		return time.Since(start), fmt.Errorf("echoscu: %v\n%s", err, out)
	}
	return time.Since(start), nil
}

// flakyListener fails its first accepts with an error, as a listener out
// of file descriptors does.
type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
	err   error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.fails > 0 {
		l.fails--
		l.mu.Unlock()
		time.Sleep(time.Millisecond)
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: l.err}
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

func TestAcceptErrorsAreRetriedAndShownInHealth(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: ln, fails: 8, err: syscall.EMFILE}
	srv := &Server{Policy: &StaticPolicy{}, Config: Config{Logger: testLogger(t)}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, fl) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	peers.Eventually(t, 10*time.Second, "listener seen failing", func() (bool, string) {
		h := srv.Health()
		return h.Failing && h.OutOfFiles && h.Errors > 0, fmt.Sprintf("%+v", h)
	})
	// The errors end (descriptors freed): the next caller is served.
	a, err := Dial(context.Background(), ln.Addr().String(), DialParams{CallingAE: "A", CalledAE: "RELAIS", Proposals: storageProposals()})
	if err != nil {
		t.Fatalf("after accept errors: %v", err)
	}
	if st, err := a.Echo(context.Background()); err != nil || st != StatusSuccess {
		t.Fatal(st, err)
	}
	a.Release(context.Background())
	h := srv.Health()
	t.Logf("after the episode: %d accept errors, last %q, last accept %v ago", h.Errors, h.LastError, time.Since(h.LastAccept).Round(time.Millisecond))
	if h.Failing || h.Errors != 8 || h.LastAccept.IsZero() {
		t.Fatalf("health after recovery: %+v", h)
	}
}

func TestListenerClosedEndsServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Policy: &StaticPolicy{}}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), ln) }()
	ln.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve after close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running after its listener closed")
	}
}

// TestLargestRealRequestFits: 128 presentation contexts, each with every
// common transfer syntax, and a 4 KiB User Identity token (a JWT) fit in
// the A-ASSOCIATE-RQ limit, and are accepted.
func TestLargestRealRequestFits(t *testing.T) {
	syntaxes := []string{ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian,
		"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
		"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5"}
	var ps []Proposal
	for i := range 128 {
		ps = append(ps, Proposal{AbstractSyntax: fmt.Sprintf("1.2.840.10008.5.1.4.1.1.%d.%d", 100+i, i), TransferSyntaxes: syntaxes})
	}
	token := []byte(strings.Repeat("x", 4096))
	p := DialParams{CallingAE: "BIG", CalledAE: "RELAIS", Proposals: ps, UserIdentity: &UserIdentity{Type: 5, Primary: token}}
	rq := &Associate{CalledAE: p.CalledAE, CallingAE: p.CallingAE, ApplicationContext: ApplicationContext,
		UserInfo: UserInfo{MaxPDULength: 16384, ImplementationClassUID: ImplementationClassUID, ImplementationVersionName: ImplementationVersionName, UserIdentity: p.UserIdentity}}
	for i, pr := range ps {
		rq.Contexts = append(rq.Contexts, PresentationContext{ID: byte(2*i + 1), AbstractSyntax: pr.AbstractSyntax, TransferSyntaxes: pr.TransferSyntaxes})
	}
	size := len(encodeAssociate(pduAssociateRQ, rq))
	t.Logf("128 contexts × %d transfer syntaxes + %d-byte token: A-ASSOCIATE-RQ of %d bytes; limit %d", len(syntaxes), len(token), size, maxAssociatePDU)
	if size > maxAssociatePDU*7/8 {
		t.Fatalf("a real request of %d bytes is close to the %d limit", size, maxAssociatePDU)
	}
	h := newHostileServer(t, Config{})
	h.srv.Policy = &StaticPolicy{}
	a, err := Dial(context.Background(), h.addr, p)
	if err != nil {
		t.Fatal(err)
	}
	a.Release(context.Background())
}

// partialRQ sends the header of an A-ASSOCIATE-RQ declaring n bytes and
// all but the last of them, then goes silent.
func partialRQ(c net.Conn, n int) error {
	b := make([]byte, 6+n-1)
	b[0] = pduAssociateRQ
	b[2], b[3], b[4], b[5] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	_, err := c.Write(b)
	return err
}

// TestPartialRequestsAreBoundedByTheBudget: callers from one address that
// send most of a large A-ASSOCIATE-RQ and stall hold at most half of the
// budget; beyond, they are refused at once (A-ASSOCIATE-RJ transient), and
// a caller from elsewhere is served meanwhile.
func TestPartialRequestsAreBoundedByTheBudget(t *testing.T) {
	peers.Require(t, "echoscu")
	const budget = 2 << 20
	h := newHostileServer(t, Config{ARTIM: 20 * time.Second}, func(s *Server) { s.PendingBudget = budget })
	h.srv.Policy = &StaticPolicy{}
	var refused int
	for i := range 40 {
		c := dialFrom(t, "127.0.0.2", h.addr)
		partialRQ(c, 60<<10)
		if i < 10 {
			continue // well within the budget: nothing to read yet
		}
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		var hdr [10]byte
		if n, _ := io.ReadFull(c, hdr[:]); n == 10 && hdr[0] == pduAssociateRJ {
			if rj := decodeReject(hdr[6:]); *rj != *RejectTemporaryCongestion {
				t.Fatalf("refusal %v, want temporary congestion", rj)
			}
			refused++
		}
	}
	held := h.srv.Health()
	t.Logf("40 × 60 KiB partial requests from one address, budget %d KiB: %d held (%d KiB), %d refused at once",
		budget>>10, held.Pending, held.PendingBytes>>10, refused)
	if held.PendingBytes > budget/2 || refused == 0 {
		t.Fatalf("budget not enforced: %+v, %d refused", held, refused)
	}
	took, err := echoscu(t, h.addr, "OTHER")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("echoscu from another address meanwhile: %v", took.Round(time.Millisecond))
}

func TestDeclaredLargeRequestIsAbortedAtItsHeader(t *testing.T) {
	h := newHostileServer(t, Config{})
	c := dialRaw(t, h.addr)
	partialRQ(c, 1<<20)
	expectAbort(t, c, AbortInvalidParameterValue)
}

// TestConnectionsBeyondTheCapAreClosedAtOnce: with the slots and margin
// taken by silent connections, one more is closed at once; one address
// alone cannot take more than half.
func TestConnectionsBeyondTheCapAreClosedAtOnce(t *testing.T) {
	h := newHostileServer(t, Config{ARTIM: 20 * time.Second}, func(s *Server) {
		s.SetMaxAssociations(4)
		s.PendingMargin = 4
	})
	for i := range 4 {
		dialFrom(t, "127.0.0.2", h.addr)
		dialFrom(t, fmt.Sprintf("127.0.0.%d", 3+i), h.addr)
	}
	peers.Eventually(t, 10*time.Second, "8 connections held", func() (bool, string) {
		return h.srv.Health().Open == 8, fmt.Sprintf("%+v", h.srv.Health())
	})
	for _, src := range []string{"127.0.0.2", "127.0.0.9"} {
		c := dialFrom(t, src, h.addr)
		start := time.Now()
		expectClosed(t, c)
		t.Logf("connection from %s beyond the cap closed after %v", src, time.Since(start).Round(time.Millisecond))
	}
	if h := h.srv.Health(); h.Closed != 2 {
		t.Fatalf("closed at once: %d, want 2", h.Closed)
	}
}

// TestOneCallerCannotTakeEverySlot: a caller that opens associations and
// leaves them idle gets its share; beyond, A-ASSOCIATE-RJ transient (local
// limit), and another caller's echoscu is answered at once.
func TestOneCallerCannotTakeEverySlot(t *testing.T) {
	peers.Require(t, "echoscu")
	for _, tc := range []struct {
		name  string
		limit int
		aet   func(i int) string // the hoarder's calling AE titles
		want  int
	}{
		{"default limit, one AE", 0, func(int) string { return "HOARD" }, 40},
		{"32 slots, one AE", 32, func(int) string { return "HOARD" }, 16},
		{"32 slots, one address, many AEs", 32, func(i int) string { return fmt.Sprintf("HOARD%d", i) }, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostileServer(t, Config{ARTIM: 20 * time.Second, IdleTimeout: time.Minute}, func(s *Server) {
				s.SetMaxAssociations(tc.limit)
			})
			h.srv.Policy = &StaticPolicy{}
			var got, refused int
			for i := range 40 {
				a, err := Dial(context.Background(), h.addr, DialParams{CallingAE: tc.aet(i), CalledAE: "RELAIS",
					Proposals: storageProposals(), Dial: dialerFrom("127.0.0.2")})
				var rj *Rejection
				switch {
				case err == nil:
					got++
					defer a.Abort()
				case errors.As(err, &rj) && *rj == *RejectLocalLimit:
					refused++
				default:
					t.Fatal(err)
				}
			}
			took, err := echoscu(t, h.addr, "OTHER")
			t.Logf("limit %d: hoarder holds %d idle associations, %d refused (2,3,2); another caller's echoscu: %v",
				h.srv.MaxAssociations(), got, refused, took.Round(time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("hoarder got %d associations, want %d", got, tc.want)
			}
		})
	}
}
