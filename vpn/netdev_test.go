package vpn

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

// countingDev records the largest batch our netDev handed to wireguard-go.
type countingDev struct {
	*netDev
	maxRead, maxWrite atomic.Int64
}

func (c *countingDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := c.netDev.Read(bufs, sizes, offset)
	raise(&c.maxRead, n)
	return n, err
}

func (c *countingDev) Write(bufs [][]byte, offset int) (int, error) {
	raise(&c.maxWrite, len(bufs))
	return c.netDev.Write(bufs, offset)
}

func raise(v *atomic.Int64, n int) {
	for cur := v.Load(); int64(n) > cur && !v.CompareAndSwap(cur, int64(n)); cur = v.Load() {
	}
}

// wgEnd is one end of a test tunnel: our netDev under wireguard-go, its UDP
// socket on loopback.
type wgEnd struct {
	dev *countingDev
	wg  *device.Device
}

func newWGEnd(t *testing.T, cfg Config, key SecretKey, endpoint *net.UDPAddr) *wgEnd {
	t.Helper()
	cfg = cfg.withDefaults()
	nd, err := newNetDev(cfg.Address.Addr(), cfg.MTU)
	if err != nil {
		t.Fatal(err)
	}
	e := &wgEnd{dev: &countingDev{netDev: nd}}
	e.wg = device.NewDevice(e.dev, conn.NewDefaultBind(), wgLogger(slog.New(slog.DiscardHandler)))
	if err := e.wg.IpcSet(uapiConfig(cfg.wgConfig(key, endpoint))); err != nil {
		e.wg.Close()
		t.Fatal(err)
	}
	if err := e.wg.Up(); err != nil {
		e.wg.Close()
		t.Fatal(err)
	}
	return e
}

func (e *wgEnd) port(t *testing.T) int {
	t.Helper()
	text, err := e.wg.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseUAPIStats(text, Key{})
	if err != nil {
		t.Fatal(err)
	}
	return st.ListenPort
}

// newWGPair connects A (the box) to B over loopback UDP.
func newWGPair(t *testing.T) (a, b *wgEnd) {
	t.Helper()
	keyA, keyB := mustKey(t), mustKey(t)
	cfgA, cfgB := pairConfigs(ModeNetstack, keyA, keyB, nil, "")
	b = newWGEnd(t, cfgB, keyB, nil)
	a = newWGEnd(t, cfgA, keyA, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: b.port(t)})
	return a, b
}

// pattern is n bytes that are not all alike, so a misplaced packet shows.
func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i>>10)
	}
	return p
}

// TestNetDevCarriesBytesUnchangedInBatches: many MB through a TCP
// connection over two of our devices joined by wireguard-go arrive with the
// same SHA-256, and the devices really handed packets over in batches.
func TestNetDevCarriesBytesUnchangedInBatches(t *testing.T) {
	a, b := newWGPair(t)
	defer a.wg.Close()
	defer b.wg.Close()

	ln, err := b.dev.listenTCP(netip.AddrPortFrom(testAddrB.Addr(), 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		h := sha256.New()
		n, err := io.Copy(h, c)
		var r result
		copy(r.sum[:], h.Sum(nil))
		r.n, r.err = n, err
		got <- r
	}()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := a.dev.dialTCP(ctx, netip.AddrPortFrom(testAddrB.Addr(), 9000))
	if err != nil {
		t.Fatal(err)
	}
	const total = 24 << 20
	chunk := pattern(1 << 20)
	want := sha256.New()
	for range total / len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			t.Fatalf("write: %v", err)
		}
		want.Write(chunk)
	}
	c.Close()
	r := <-got
	if r.err != nil {
		t.Fatalf("read: %v", r.err)
	}
	if r.n != total || [32]byte(want.Sum(nil)) != r.sum {
		t.Fatalf("received %d bytes, sha256 %x; sent %d, sha256 %x", r.n, r.sum, total, want.Sum(nil))
	}
	if n := a.dev.maxRead.Load(); n < 2 {
		t.Errorf("the sender's device read at most %d packet per call, want batches", n)
	}
	if n := b.dev.maxWrite.Load(); n < 2 {
		t.Errorf("the receiver's device was written at most %d packet per call, want batches", n)
	}
	t.Logf("largest batches: read %d, written %d", a.dev.maxRead.Load(), b.dev.maxWrite.Load())
}

// TestNetDevCloseDuringTraffic: closing both ends while a connection
// streams returns promptly, without a panic, and leaves no goroutine of
// theirs behind.
func TestNetDevCloseDuringTraffic(t *testing.T) {
	before := runtime.NumGoroutine()
	a, b := newWGPair(t)

	ln, err := b.dev.listenTCP(netip.AddrPortFrom(testAddrB.Addr(), 9001))
	if err != nil {
		t.Fatal(err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := a.dev.dialTCP(ctx, netip.AddrPortFrom(testAddrB.Addr(), 9001))
	if err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	writeDone := make(chan error, 1)
	go func() {
		defer c.Close()
		chunk := pattern(64 << 10)
		for {
			n, err := c.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				writeDone <- err
				return
			}
		}
	}()
	for sent.Load() < 4<<20 {
		time.Sleep(5 * time.Millisecond)
	}

	closed := make(chan struct{})
	go func() {
		defer close(closed)
		b.wg.Close()
		a.wg.Close()
		a.dev.Close() // again: a second Close is harmless
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return during traffic")
	}
	// The stack is gone: blocked connections end with an error.
	select {
	case err := <-writeDone:
		if err == nil {
			t.Error("write after Close reported no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write blocked in the closed stack never returned")
	}
	ln.Close()
	select {
	case <-readDone:
	case <-time.After(10 * time.Second):
		t.Fatal("a read blocked in the closed stack never returned")
	}
	if _, err := a.dev.Read([][]byte{make([]byte, 2000)}, []int{0}, 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read after Close: %v, want %v", err, os.ErrClosed)
	}

	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
