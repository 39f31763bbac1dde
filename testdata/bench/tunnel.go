package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/vpn"
)

// Tunnel: relaisd forwarding through its netstack WireGuard tunnel to a
// reading center run here (a netstack peer whose listener hands the DICOM
// to an SCP that drops the bytes), beside raw TCP blasted through a
// netstack tunnel pair in this process. The point is the tunnel path, not
// the receiver's speed. The center is the vpn package's netstack adapter,
// the same as relaisd's, so it moves packets in batches as a real center's
// kernel WireGuard does; the raw pair is two of those adapters too, so the
// reference runs on the same stack and tunnel as relaisd.

const (
	centerAET  = "CENTER"
	centerDest = "center"
	centerPort = 104
	rawPort    = 9000
)

var (
	centerAddr = netip.MustParsePrefix("10.9.0.1/24")
	boxAddr    = netip.MustParsePrefix("10.9.0.2/24")
)

const rawName = "raw TCP (bench, pair in-process)"

func (b *bench) tunnelLabel() string {
	return fmt.Sprintf("CT %d × 0.5 MB through netstack WireGuard", len(b.corpus.CT.Files))
}

func (b *bench) tunnelRun(ctx context.Context, run int) error {
	return b.sideBySide(ctx, run, "Tunnel", b.tunnelLabel(),
		contender{nameRelaisd, b.tunnelRelaisd}, contender{rawName, b.tunnelRaw})
}

// center is the reading center's end of a netstack tunnel.
type center struct {
	tun    *vpn.Tunnel
	port   int // UDP
	key    vpn.SecretKey
	stored atomic.Int64
	bytes  atomic.Int64
	cancel context.CancelFunc
	served chan struct{}
}

// startCenter brings up the center's netstack tunnel, peer boxKey, with a
// discarding SCP on centerPort. The responder is up before the box dials.
func startCenter(ctx context.Context, boxKey vpn.Key) (*center, error) {
	key, err := vpn.GenerateSecretKey()
	if err != nil {
		return nil, err
	}
	c := &center{key: key, served: make(chan struct{})}
	ctx, c.cancel = context.WithCancel(ctx)
	c.tun, err = vpn.Up(ctx, vpn.Config{Mode: vpn.ModeNetstack, Address: centerAddr,
		Peer: vpn.Peer{PublicKey: boxKey, AllowedIPs: []netip.Prefix{netip.PrefixFrom(boxAddr.Addr(), 32)}}}, key, vpn.Options{})
	if err != nil {
		c.cancel()
		return nil, fmt.Errorf("center tunnel: %w", err)
	}
	c.port = c.tun.Status().ListenPort
	ln, err := c.tun.Listen(ctx, "tcp", fmt.Sprintf(":%d", centerPort))
	if err != nil {
		c.close()
		return nil, err
	}
	srv := &dimse.Server{Policy: &dimse.StaticPolicy{CalledAETitles: []string{centerAET}}, Handlers: dimse.Handlers{
		Store: func(context.Context, *dimse.Association, *dimse.StoreRequest) dimse.StoreSink { return &discard{c: c} },
	}}
	go func() {
		defer close(c.served)
		srv.Serve(ctx, ln)
	}()
	return c, nil
}

func (c *center) close() {
	c.cancel()
	select {
	case <-c.served:
	case <-time.After(10 * time.Second):
	}
	c.tun.Close()
}

// discard is a StoreSink that drops the bytes and counts them.
type discard struct{ c *center }

func (d *discard) Write(p []byte) (int, error) { d.c.bytes.Add(int64(len(p))); return len(p), nil }
func (d *discard) Abort(error)                 {}
func (d *discard) Close() dimse.Status {
	d.c.stored.Add(1)
	return dimse.StatusSuccess
}

// tunnelRelaisd: relaisd with a netstack tunnel to a center here, the CT
// series received with the destination paused, then forwarded.
func (b *bench) tunnelRelaisd(ctx context.Context) (sample, error) {
	dir, err := b.newDir("tunnel-relaisd")
	if err != nil {
		return sample{}, err
	}
	defer b.dropDir(dir)
	// The box's key is made where relaisd keeps it, before the center
	// (the responder) comes up knowing it.
	boxKey, err := vpn.LoadOrCreateKey(filepath.Join(dir, "wireguard"))
	if err != nil {
		return sample{}, fmt.Errorf("box key: %w", err)
	}
	c, err := startCenter(ctx, boxKey.PublicKey())
	if err != nil {
		return sample{}, err
	}
	defer c.close()
	cfg := benchConfig()
	cfg.Tunnel = config.Tunnel{Mode: "netstack", Address: boxAddr.String(), PeerPublicKey: c.key.PublicKey().String(),
		Endpoint: fmt.Sprintf("127.0.0.1:%d", c.port), AllowedIPs: []string{netip.PrefixFrom(centerAddr.Addr(), 32).String()}, KeepaliveSeconds: 1}
	cfg.Destinations = []config.Destination{{Name: centerDest, AETitle: centerAET, Host: centerAddr.Addr().String(), Port: centerPort, Paused: true}}
	r := &relaisdServer{bin: b.relaisd, procs: b.procs, cfg: cfg}
	s, err := b.relaisdForward(ctx, r, dir, centerDest)
	if err != nil {
		return s, err
	}
	if got := c.stored.Load(); got != int64(s.Instances) {
		return s, fmt.Errorf("the center stored %d instances, want %d", got, s.Instances)
	}
	return s, nil
}

// tunnelRaw blasts as many bytes as the CT series through a netstack pair
// in this process, after a first connection has made the handshake.
func (b *bench) tunnelRaw(ctx context.Context) (sample, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	boxKey, err := vpn.GenerateSecretKey()
	if err != nil {
		return sample{}, err
	}
	c, err := startCenter(ctx, boxKey.PublicKey())
	if err != nil {
		return sample{}, err
	}
	defer c.close()
	box, err := vpn.Up(ctx, vpn.Config{Mode: vpn.ModeNetstack, Address: boxAddr, Peer: vpn.Peer{PublicKey: c.key.PublicKey(),
		Endpoint: fmt.Sprintf("127.0.0.1:%d", c.port), AllowedIPs: []netip.Prefix{netip.PrefixFrom(centerAddr.Addr(), 32)}}}, boxKey, vpn.Options{})
	if err != nil {
		return sample{}, fmt.Errorf("box tunnel: %w", err)
	}
	defer box.Close()
	ln, err := c.tun.Listen(ctx, "tcp", fmt.Sprintf(":%d", rawPort))
	if err != nil {
		return sample{}, err
	}
	defer ln.Close()
	received := make(chan int64, 2)
	go sinkConns(ln, received)
	addr := netip.AddrPortFrom(centerAddr.Addr(), rawPort).String()
	if _, err := blast(ctx, box, addr, 1, received); err != nil { // the handshake
		return sample{}, fmt.Errorf("first connection: %w", err)
	}
	total := b.corpus.CT.Bytes
	wall, err := blast(ctx, box, addr, total, received)
	if err != nil {
		return sample{}, err
	}
	return sample{Wall: wall.Seconds(), Bytes: total, Instances: len(b.corpus.CT.Files)}, nil
}

// sinkConns reads each connection to its end and reports how much came.
func sinkConns(ln net.Listener, received chan<- int64) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			n, _ := io.Copy(io.Discard, conn)
			received <- n
		}()
	}
}

// blast sends n bytes on a new connection through the tunnel and returns
// the time from the dial until the far end read them all.
func blast(ctx context.Context, t *vpn.Tunnel, addr string, n int64, received <-chan int64) (time.Duration, error) {
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := t.DialContext(dctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 256<<10)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	var once sync.Once
	closeConn := func() { once.Do(func() { conn.Close() }) }
	defer closeConn()
	for left := n; left > 0; {
		k := min(left, int64(len(buf)))
		if _, err := conn.Write(buf[:k]); err != nil {
			return 0, fmt.Errorf("write through the tunnel: %w", err)
		}
		left -= k
	}
	closeConn()
	select {
	case got := <-received:
		if got != n {
			return 0, fmt.Errorf("the far end read %d bytes of %d", got, n)
		}
	case <-time.After(5 * time.Minute):
		return 0, errors.New("the far end never finished reading")
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return time.Since(start), nil
}
