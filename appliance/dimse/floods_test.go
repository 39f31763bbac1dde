package dimse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relais/relais/testdata/peers"
)

// Floods: the listener outlives its accept errors.

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
