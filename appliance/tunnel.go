package appliance

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/store"
	"github.com/relais/relais/vpn"
)

// The tunnel to the reading center: brought up from the configuration,
// replaced when it changes, retried when it can't start. The forwarder dials
// through it (in netstack mode, through the in-process stack for the allowed
// networks only; otherwise the routes it installs do the work), and in
// netstack mode the SCP also listens inside it, for Storage Commitment
// reports.

const (
	keyDir      = "wireguard"
	tunnelRetry = 30 * time.Second
)

type tunnelState struct {
	mu      sync.Mutex
	cfg     config.Tunnel // what is (being) brought up
	t       *vpn.Tunnel
	lastErr string
	cancel  context.CancelFunc
	done    chan struct{}
	// rxBase and txBase are what the tunnels replaced since relaisd
	// started moved: a new tunnel counts from zero, the metrics only up.
	rxBase, txBase int64
}

func (a *Appliance) keyDir() string { return filepath.Join(a.opts.DataDir, keyDir) }

// vpnConfig turns the configuration's tunnel into vpn's.
func (a *Appliance) vpnConfig(t config.Tunnel) (vpn.Config, error) {
	var c vpn.Config
	if t.Mode != "off" { // "off" only keeps it down; the rest still describes it
		c.Mode = vpn.Mode(t.Mode)
	}
	var err error
	if c.Address, err = netip.ParsePrefix(t.Address); err != nil {
		return c, fmt.Errorf("tunnel address: %w", err)
	}
	c.ListenPort = t.ListenPort
	if c.Peer.PublicKey, err = vpn.ParseKey(t.PeerPublicKey); err != nil {
		return c, fmt.Errorf("peer public key: %w", err)
	}
	c.Peer.Endpoint = t.Endpoint
	for _, s := range t.AllowedIPs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return c, fmt.Errorf("allowed IPs: %w", err)
		}
		c.Peer.AllowedIPs = append(c.Peer.AllowedIPs, p)
	}
	c.Peer.PersistentKeepalive = time.Duration(t.KeepaliveSeconds) * time.Second
	if c.Peer.PresharedKey, err = vpn.LoadPresharedKey(a.keyDir()); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// syncTunnel makes the running tunnel match the configuration: it tears
// down the old one and brings the new one up in the background, retrying.
func (a *Appliance) syncTunnel() {
	want := a.Config().Tunnel
	ts := &a.tun
	ts.mu.Lock()
	if reflect.DeepEqual(ts.cfg, want) && (ts.t != nil || ts.cancel != nil) {
		ts.mu.Unlock()
		return
	}
	old, cancel, done := ts.t, ts.cancel, ts.done
	if old != nil {
		s := old.Status()
		ts.rxBase, ts.txBase = ts.rxBase+s.RxBytes, ts.txBase+s.TxBytes
	}
	ts.cfg, ts.t, ts.cancel, ts.done, ts.lastErr = want, nil, nil, nil, ""
	ts.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	if old != nil {
		old.Close()
	}
	if !want.Enabled() {
		return
	}
	ctx, cancel := context.WithCancel(a.ctx)
	done = make(chan struct{})
	ts.mu.Lock()
	ts.cancel, ts.done = cancel, done
	ts.mu.Unlock()
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if t, err := a.upTunnel(ctx, want); err == nil {
				ts.mu.Lock()
				ts.t, ts.lastErr = t, ""
				ts.mu.Unlock()
				go func() {
					<-ctx.Done()
					t.Close()
				}()
				return
			} else {
				ts.mu.Lock()
				repeated := ts.lastErr == err.Error()
				ts.lastErr = err.Error()
				ts.mu.Unlock()
				if !repeated {
					a.event(store.KindConfig, store.Error, fmt.Sprintf("the tunnel cannot start: %v; retrying every %v", err, tunnelRetry), nil)
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(tunnelRetry):
			}
		}
	}()
}

func (a *Appliance) upTunnel(ctx context.Context, want config.Tunnel) (*vpn.Tunnel, error) {
	vc, err := a.vpnConfig(want)
	if err != nil {
		return nil, err
	}
	t, err := vpn.Up(ctx, vc, a.wgKey, vpn.Options{
		Logger:  a.log.With("part", "vpn"),
		OnEvent: a.tunnelEvent,
	})
	if err != nil {
		return nil, err
	}
	a.event(store.KindConfig, store.Info, fmt.Sprintf("tunnel started (%s mode, address %s, peer %s)", t.Mode(), vc.Address, vc.Peer.Endpoint), nil)
	if t.Mode() == vpn.ModeNetstack {
		// Only the in-process stack reaches this address: listen there too.
		port := a.Config().Port
		ln, err := t.Listen(ctx, "tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("listen inside the tunnel: %w", err)
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.server.Serve(ctx, ln)
		}()
	}
	a.serveInTunnel(ctx, t)
	return t, nil
}

func (a *Appliance) tunnelEvent(e vpn.Event) {
	if e.State == vpn.StateUp {
		a.event(store.KindForward, store.Info, fmt.Sprintf("tunnel up: handshake with %s", e.Status.Endpoint), nil)
	} else {
		a.event(store.KindForward, store.Warning, "tunnel down: no handshake with the reading center for 3 minutes", nil)
	}
}

// dial opens connections to destinations and modalities. In netstack mode
// only the tunnel's allowed networks go through the in-process stack; the
// rest (modalities on the hospital LAN) is dialed directly, as in the other
// modes, where the routes do the work.
func (a *Appliance) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	a.tun.mu.Lock()
	t := a.tun.t
	a.tun.mu.Unlock()
	if t == nil || t.Mode() != vpn.ModeNetstack {
		return a.dialDirect(ctx, network, addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	ips, err := lookup(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if ip, ok := throughTunnel(t.AllowedIPs(), ips); ok {
		return t.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
	}
	// A name stays a name: the direct dialer tries its addresses in turn.
	return a.dialDirect(ctx, network, addr)
}

// lookup resolves a host name with the system's resolver (the netstack has
// none, and the route depends on the address); an IP address is itself.
func lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	return ips, nil
}

// throughTunnel picks the first address inside the tunnel's allowed
// networks: a name with any such address is the reading center's. With
// none, the connection does not use the tunnel.
func throughTunnel(allowed []netip.Prefix, ips []netip.Addr) (netip.Addr, bool) {
	for _, ip := range ips {
		ip = ip.Unmap()
		for _, p := range allowed {
			if p.Contains(ip) {
				return ip, true
			}
		}
	}
	return netip.Addr{}, false
}

// dialDirect dials outside the in-process stack: Options.Dial, or net.Dialer.
func (a *Appliance) dialDirect(ctx context.Context, network, addr string) (net.Conn, error) {
	if a.opts.Dial != nil {
		return a.opts.Dial(ctx, network, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (a *Appliance) closeTunnel() {
	a.tun.mu.Lock()
	cancel, done, t := a.tun.cancel, a.tun.done, a.tun.t
	a.tun.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	if t != nil {
		t.Close()
	}
}

// tunnelStatus is the tunnel as the console shows it.
func (a *Appliance) tunnelStatus() control.Tunnel {
	a.tun.mu.Lock()
	t, cfg, lastErr := a.tun.t, a.tun.cfg, a.tun.lastErr
	a.tun.mu.Unlock()
	out := control.Tunnel{State: "not configured", PublicKey: a.wgKey.PublicKey().String()}
	switch {
	case t != nil:
		s := t.Status()
		out.State, out.Endpoint, out.RxBytes, out.TxBytes = string(s.State), s.Endpoint, s.RxBytes, s.TxBytes
		out.Mode, out.RxRate, out.TxRate = string(s.Mode), s.RxRate, s.TxRate
		if !s.LastHandshake.IsZero() {
			out.HandshakeAge = s.HandshakeAge.Round(time.Second).String()
		}
	case cfg.Enabled():
		out.State = "starting"
		out.Error = lastErr
	}
	return out
}

// ImportTunnel reads a wg-quick file (the regional team's format) into the
// configuration. A private key in it is ignored: the box keeps its own.
func (a *Appliance) ImportTunnel(text string) (warning string, err error) {
	vc, priv, err := vpn.ParseWGQuick(strings.NewReader(text))
	if err != nil {
		return "", err
	}
	t := config.Tunnel{
		Mode:             a.Config().Tunnel.Mode,
		Address:          vc.Address.String(),
		ListenPort:       vc.ListenPort,
		PeerPublicKey:    vc.Peer.PublicKey.String(),
		Endpoint:         vc.Peer.Endpoint,
		KeepaliveSeconds: int(vc.Peer.PersistentKeepalive / time.Second),
	}
	for _, p := range vc.Peer.AllowedIPs {
		t.AllowedIPs = append(t.AllowedIPs, p.String())
	}
	c := a.Config()
	c.Tunnel = t
	if err := c.Validate(); err != nil {
		return "", err
	}
	if err := vpn.SavePresharedKey(a.keyDir(), vc.Peer.PresharedKey); err != nil {
		return "", err
	}
	if priv != nil && *priv != a.wgKey {
		warning = fmt.Sprintf("the file's PrivateKey was ignored: this box keeps its own; register its public key %s at the reading center", a.wgKey.PublicKey())
	}
	err = a.updateConfig(func(c *config.Config) { c.Tunnel = t })
	return warning, err
}

// ExportTunnel writes the tunnel as a wg-quick file, without secrets.
func (a *Appliance) ExportTunnel() (string, error) {
	vc, err := a.vpnConfig(a.Config().Tunnel)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := vc.WriteWGQuick(&b, nil); err != nil {
		return "", err
	}
	return b.String(), nil
}
