package vpn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// ErrKernelUnsupported means the kernel has no WireGuard: creating the
// link answered "operation not supported". ModeAuto then falls back to
// userspace.
var ErrKernelUnsupported = errors.New("the kernel has no WireGuard")

// ReresolveAfter is how long the peer may stay silent (no handshake) before
// a named endpoint is looked up again, as wireguard-tools'
// reresolve-dns.sh does.
const ReresolveAfter = 135 * time.Second

// retryResolve spaces the lookups of an endpoint never resolved yet.
const retryResolve = 15 * time.Second

// Options are the daemon's hooks; the zero value works.
type Options struct {
	// Logger gets the tunnel's events (never a private or preshared key);
	// nil discards them.
	Logger *slog.Logger
	// OnEvent, when set, is called from the tunnel's own goroutine each
	// time the tunnel goes up or down, and once with StateDown at Close if
	// it was up. It must not block for long.
	OnEvent func(Event)
	// PollInterval is how often the state is checked and the rates
	// measured; 0 means 5 s.
	PollInterval time.Duration
	// Resolver looks up a named endpoint; nil means net.DefaultResolver.
	Resolver *net.Resolver
}

// backend is one mode's device.
type backend interface {
	configure(wgtypes.Config) error
	stats() (deviceStats, error)
	dialContext(ctx context.Context, network, addr string) (net.Conn, error)
	listen(ctx context.Context, network, addr string) (net.Listener, error)
	close() error
}

// Tunnel is a running WireGuard tunnel to the reading center.
type Tunnel struct {
	mode Mode
	cfg  Config
	pub  Key
	b    backend
	log  *slog.Logger
	opts Options

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	mu             sync.Mutex
	last           deviceStats // at lastAt
	lastAt         time.Time
	rxRate, txRate float64
	state          State
	lastResolve    time.Time
}

// Up brings the tunnel up with the box's private key; ctx bounds the
// start-up only. A named endpoint that can't be resolved yet is not fatal:
// it is tried again while the peer is silent. Close the tunnel to take it
// down.
func Up(ctx context.Context, cfg Config, key SecretKey, opts Options) (*Tunnel, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if key.IsZero() {
		return nil, errors.New("wireguard: no private key")
	}
	cfg = cfg.withDefaults()
	if opts.PollInterval <= 0 {
		opts.PollInterval = 5 * time.Second
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "vpn")
	t := &Tunnel{cfg: cfg, pub: key.PublicKey(), log: log, opts: opts, state: StateDown, done: make(chan struct{})}

	var endpoint *net.UDPAddr
	if cfg.Peer.Endpoint != "" {
		var err error
		t.lastResolve = time.Now()
		if endpoint, err = resolveEndpoint(ctx, opts.Resolver, cfg.Peer.Endpoint); err != nil {
			log.Warn("wireguard endpoint not resolved yet; retrying while the peer is silent", "endpoint", cfg.Peer.Endpoint, "err", err)
		}
	}
	wgcfg := cfg.wgConfig(key, endpoint)

	var err error
	t.mode = cfg.Mode
	switch cfg.Mode {
	case ModeNetstack:
		t.b, err = upNetstack(cfg, wgcfg, log)
	case ModeKernel:
		t.b, err = upKernel(cfg, wgcfg, log)
	case ModeUserspace:
		t.b, err = upUserspace(cfg, wgcfg, log)
	case ModeAuto:
		t.mode = ModeKernel
		t.b, err = upKernel(cfg, wgcfg, log)
		if errors.Is(err, ErrKernelUnsupported) {
			log.Info("kernel has no WireGuard, running wireguard-go on a TUN device", "interface", cfg.Interface)
			t.mode = ModeUserspace
			t.b, err = upUserspace(cfg, wgcfg, log)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("wireguard %s mode: %w", t.mode, err)
	}
	log.Info("wireguard tunnel started", "mode", t.mode, "interface", t.ifname(), "address", cfg.Address,
		"public_key", t.pub, "peer", cfg.Peer.PublicKey, "endpoint", cfg.Peer.Endpoint, "allowed_ips", cfg.Peer.AllowedIPs)

	ctx, t.cancel = context.WithCancel(context.WithoutCancel(ctx))
	go t.run(ctx)
	return t, nil
}

// Mode is the mode running: ModeKernel, ModeUserspace or ModeNetstack.
func (t *Tunnel) Mode() Mode { return t.mode }

// PublicKey is our public key.
func (t *Tunnel) PublicKey() Key { return t.pub }

// AllowedIPs are the networks reached through the peer.
func (t *Tunnel) AllowedIPs() []netip.Prefix { return slices.Clone(t.cfg.Peer.AllowedIPs) }

func (t *Tunnel) ifname() string {
	if t.mode == ModeNetstack {
		return ""
	}
	return t.cfg.Interface
}

// DialContext connects to addr (an IP address and port inside the tunnel's
// allowed IPs) through the tunnel. In netstack mode it goes through the
// in-process stack; in kernel and userspace modes it is a plain dial that
// the routes send through the tunnel. It fits dimse.DialParams.Dial.
func (t *Tunnel) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := t.b.dialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s through the tunnel: %w", addr, err)
	}
	return c, nil
}

// Listen listens on the tunnel ("tcp" only in netstack mode). An empty host
// in addr means our tunnel address.
func (t *Tunnel) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen on the tunnel: %w", err)
	}
	if host == "" {
		addr = net.JoinHostPort(t.cfg.Address.Addr().String(), port)
	}
	ln, err := t.b.listen(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen on the tunnel at %s: %w", addr, err)
	}
	return ln, nil
}

// Status reads the device now; the rates are those of the last poll.
func (t *Tunnel) Status() Status {
	st, err := t.b.stats()
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.log.Debug("wireguard status", "err", err)
		st = t.last
	}
	return t.statusLocked(st, time.Now())
}

func (t *Tunnel) statusLocked(st deviceStats, now time.Time) Status {
	s := Status{
		Mode: t.mode, Interface: t.ifname(), Address: t.cfg.Address, PublicKey: t.pub, Peer: t.cfg.Peer.PublicKey,
		State: stateAt(st.LastHandshake, now), LastHandshake: st.LastHandshake,
		Endpoint: st.Endpoint, ListenPort: st.ListenPort,
		RxBytes: st.RxBytes, TxBytes: st.TxBytes, RxRate: t.rxRate, TxRate: t.txRate,
	}
	if !st.LastHandshake.IsZero() {
		s.HandshakeAge = max(now.Sub(st.LastHandshake), 0)
	}
	return s
}

// Close takes the tunnel down: the link and its routes are removed (kernel,
// userspace), the device stops.
func (t *Tunnel) Close() error {
	var err error
	t.once.Do(func() {
		t.cancel()
		<-t.done
		err = t.b.close()
		t.mu.Lock()
		wasUp := t.state == StateUp
		t.state = StateDown
		s := t.statusLocked(t.last, time.Now())
		t.mu.Unlock()
		if wasUp {
			t.emit(StateDown, s)
		}
		t.log.Info("wireguard tunnel stopped", "mode", t.mode, "interface", t.ifname())
	})
	return err
}

// run polls the device: state changes become events, rates are measured,
// and a silent named endpoint is looked up again.
func (t *Tunnel) run(ctx context.Context) {
	defer close(t.done)
	tick := time.NewTicker(t.opts.PollInterval)
	defer tick.Stop()
	for {
		t.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (t *Tunnel) poll(ctx context.Context) {
	st, err := t.b.stats()
	if err != nil {
		t.log.Warn("wireguard status", "err", err)
		return
	}
	now := time.Now()
	t.mu.Lock()
	if !t.lastAt.IsZero() {
		dt := now.Sub(t.lastAt)
		t.rxRate, t.txRate = rate(t.last.RxBytes, st.RxBytes, dt), rate(t.last.TxBytes, st.TxBytes, dt)
	}
	t.last, t.lastAt = st, now
	s := t.statusLocked(st, now)
	changed := s.State != t.state
	t.state = s.State
	reresolve := t.cfg.Peer.Endpoint != "" && needResolve(now, t.lastResolve, st.LastHandshake, st.Endpoint != "")
	if reresolve {
		t.lastResolve = now
	}
	t.mu.Unlock()
	if changed {
		t.emit(s.State, s)
	}
	if reresolve {
		t.reresolve(ctx, st.Endpoint)
	}
}

func (t *Tunnel) emit(state State, s Status) {
	if state == StateUp {
		t.log.Info("wireguard tunnel up", "endpoint", s.Endpoint, "handshake_age", s.HandshakeAge.Round(time.Second))
	} else {
		t.log.Warn("wireguard tunnel down", "endpoint", s.Endpoint, "last_handshake", s.LastHandshake)
	}
	if t.opts.OnEvent != nil {
		t.opts.OnEvent(Event{Time: time.Now(), State: state, Status: s})
	}
}

// needResolve says whether to look the endpoint's name up again: the peer
// has been silent for ReresolveAfter (or never answered) and the last
// lookup is as old; an endpoint never resolved (no DNS at boot) is retried
// every retryResolve.
func needResolve(now, lastResolve, lastHandshake time.Time, known bool) bool {
	wait := ReresolveAfter
	if !known {
		wait = retryResolve
	}
	silent := lastHandshake.IsZero() || now.Sub(lastHandshake) >= ReresolveAfter
	return silent && now.Sub(lastResolve) >= wait
}

// reresolve looks the endpoint up again and points the peer at the new
// address when it moved (a literal address never moves).
func (t *Tunnel) reresolve(ctx context.Context, current string) {
	host, _, _ := splitEndpoint(t.cfg.Peer.Endpoint)
	if _, err := netip.ParseAddr(host); err == nil && current != "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addr, err := resolveEndpoint(ctx, t.opts.Resolver, t.cfg.Peer.Endpoint)
	if err != nil {
		t.log.Warn("wireguard endpoint lookup", "endpoint", t.cfg.Peer.Endpoint, "err", err)
		return
	}
	if addr.String() == current {
		return
	}
	if err := t.b.configure(t.cfg.endpointUpdate(addr)); err != nil {
		t.log.Warn("wireguard endpoint update", "endpoint", t.cfg.Peer.Endpoint, "err", err)
		return
	}
	t.log.Info("wireguard endpoint moved", "endpoint", t.cfg.Peer.Endpoint, "from", current, "to", addr)
}

// resolveEndpoint turns "host:port" into a UDP address, preferring IPv4.
func resolveEndpoint(ctx context.Context, r *net.Resolver, ep string) (*net.UDPAddr, error) {
	host, port, err := splitEndpoint(ep)
	if err != nil {
		return nil, err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))), nil
	}
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve endpoint %s: %w", host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("resolve endpoint %s: no address", host)
	}
	best := ips[0]
	for _, ip := range ips {
		if ip.Unmap().Is4() {
			best = ip
			break
		}
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(best.Unmap(), uint16(port))), nil
}

// wgLogger sends wireguard-go's messages to slog at debug level (its
// errors at info: an unreachable peer makes one every few seconds).
func wgLogger(log *slog.Logger) *device.Logger {
	return &device.Logger{
		Verbosef: func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) },
		Errorf:   func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) },
	}
}
