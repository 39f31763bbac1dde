package vpn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Mode says how the tunnel is brought up.
type Mode string

const (
	// ModeAuto tries ModeKernel, then ModeUserspace when the kernel has no
	// WireGuard.
	ModeAuto Mode = "auto"
	// ModeKernel uses the kernel's WireGuard (a wireguard link). Needs
	// CAP_NET_ADMIN.
	ModeKernel Mode = "kernel"
	// ModeUserspace runs wireguard-go in this process on a TUN device.
	// Needs CAP_NET_ADMIN and /dev/net/tun.
	ModeUserspace Mode = "userspace"
	// ModeNetstack runs wireguard-go on an in-process TCP/IP stack: no
	// privileges, no device, no routes; only [Tunnel.DialContext] and
	// [Tunnel.Listen] reach the tunnel.
	ModeNetstack Mode = "netstack"
)

// DefaultInterface is the link name used when Config.Interface is empty.
const DefaultInterface = "wg0"

// DefaultMTU is WireGuard's usual MTU (1500 less the IPv6 and WireGuard
// overheads), used when Config.MTU is 0.
const DefaultMTU = 1420

// Config is the tunnel to one peer, the reading center. It carries no
// private key: that stays in the key folder (see [LoadOrCreateKey]).
type Config struct {
	// Mode is how to bring the tunnel up; "" means ModeAuto.
	Mode Mode
	// Interface is the link's name in kernel and userspace modes (at most
	// 15 bytes); "" means DefaultInterface. In userspace mode it also names
	// the UAPI socket, /var/run/wireguard/NAME.sock.
	Interface string
	// Address is our address inside the tunnel with its network, for
	// example 10.8.0.2/24.
	Address netip.Prefix
	// ListenPort is our UDP port; 0 picks a free one (fine for a box that
	// only initiates).
	ListenPort int
	// MTU of the tunnel; 0 means DefaultMTU.
	MTU int
	// Peer is the reading center.
	Peer Peer
}

// Peer is the far end of the tunnel.
type Peer struct {
	// PublicKey is the peer's public key.
	PublicKey Key
	// PresharedKey, optional, adds a symmetric key to the handshake.
	PresharedKey *SecretKey
	// Endpoint is where the peer answers: "host:port", the host a name or an
	// address. A name is resolved at start and again whenever the peer has
	// not answered for ReresolveAfter. Empty for a peer that only
	// initiates (the reading center's side in tests).
	Endpoint string
	// AllowedIPs are the addresses reachable through the peer; in kernel and
	// userspace modes each gets a route through the tunnel.
	AllowedIPs []netip.Prefix
	// PersistentKeepalive, when non-zero, sends a keepalive this often so
	// NAT and firewalls in between keep the flow open (25 s is usual).
	PersistentKeepalive time.Duration
}

func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModeAuto
	}
	if c.Interface == "" {
		c.Interface = DefaultInterface
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	return c
}

// Validate reports what is missing or wrong, all at once.
func (c Config) Validate() error {
	var errs []error
	switch c.Mode {
	case "", ModeAuto, ModeKernel, ModeUserspace, ModeNetstack:
	default:
		errs = append(errs, fmt.Errorf("mode %q: want auto, kernel, userspace or netstack", c.Mode))
	}
	if len(c.Interface) > 15 {
		errs = append(errs, fmt.Errorf("interface name %q: longer than 15 bytes", c.Interface))
	}
	if !c.Address.IsValid() {
		errs = append(errs, errors.New("no tunnel address (for example 10.8.0.2/24)"))
	}
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		errs = append(errs, fmt.Errorf("listen port %d: want 0 to 65535", c.ListenPort))
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535) {
		errs = append(errs, fmt.Errorf("MTU %d: want 576 to 65535", c.MTU))
	}
	if c.Peer.PublicKey.IsZero() {
		errs = append(errs, errors.New("no peer public key"))
	}
	if c.Peer.Endpoint != "" {
		if _, _, err := splitEndpoint(c.Peer.Endpoint); err != nil {
			errs = append(errs, err)
		}
	}
	if len(c.Peer.AllowedIPs) == 0 {
		errs = append(errs, errors.New("no allowed IPs for the peer"))
	}
	for _, p := range c.Peer.AllowedIPs {
		if !p.IsValid() {
			errs = append(errs, errors.New("invalid allowed IP"))
		}
	}
	if k := c.Peer.PersistentKeepalive; k < 0 || k > 65535*time.Second {
		errs = append(errs, fmt.Errorf("persistent keepalive %v: want 0 to 65535 s", k))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("wireguard config: %w", err)
	}
	return nil
}

// splitEndpoint splits "host:port" and checks the port.
func splitEndpoint(ep string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(ep)
	if err == nil {
		port, err = strconv.Atoi(p)
	}
	if err != nil || h == "" || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("endpoint %q: want host:port", ep)
	}
	return h, port, nil
}

// wgConfig is the whole device configuration; endpoint may be nil (not
// resolved yet, or none).
func (c Config) wgConfig(priv SecretKey, endpoint *net.UDPAddr) wgtypes.Config {
	k := priv.wg()
	port := c.ListenPort
	peer := wgtypes.PeerConfig{
		PublicKey:         wgtypes.Key(c.Peer.PublicKey),
		Endpoint:          endpoint,
		ReplaceAllowedIPs: true,
	}
	if c.Peer.PresharedKey != nil {
		psk := c.Peer.PresharedKey.wg()
		peer.PresharedKey = &psk
	}
	ka := c.Peer.PersistentKeepalive
	peer.PersistentKeepaliveInterval = &ka
	for _, p := range c.Peer.AllowedIPs {
		peer.AllowedIPs = append(peer.AllowedIPs, prefixIPNet(p))
	}
	return wgtypes.Config{PrivateKey: &k, ListenPort: &port, ReplacePeers: true, Peers: []wgtypes.PeerConfig{peer}}
}

// endpointUpdate changes only the peer's endpoint.
func (c Config) endpointUpdate(endpoint *net.UDPAddr) wgtypes.Config {
	return wgtypes.Config{Peers: []wgtypes.PeerConfig{{
		PublicKey:  wgtypes.Key(c.Peer.PublicKey),
		UpdateOnly: true,
		Endpoint:   endpoint,
	}}}
}

func prefixIPNet(p netip.Prefix) net.IPNet {
	p = p.Masked()
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
