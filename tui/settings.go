package tui

import (
	"context"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
)

// The console edits the tunnel and the network through Settings (the
// control client by default; tests may stand in). A daemon that cannot
// change a setting answers ErrNotAvailable, shown as "not yet available on
// this box".

// TunnelSettings is what the console edits of the WireGuard tunnel. Our own
// key pair is made on the box; only its public key is ever shown
// (Status.Tunnel.PublicKey).
type TunnelSettings struct {
	// Address is ours inside the tunnel, with its network: 10.8.0.2/24.
	Address string `json:"address"`
	// PeerPublicKey is the reading center's public key (base64).
	PeerPublicKey string `json:"peer_public_key"`
	// PeerEndpoint is where the reading center answers: host:port.
	PeerEndpoint string `json:"endpoint"`
	// AllowedIPs are the networks reached through the tunnel.
	AllowedIPs []string `json:"allowed_ips"`
	// KeepaliveSeconds keeps NAT open; 25 is usual, 0 is off.
	KeepaliveSeconds int `json:"keepalive_seconds,omitempty"`
	// Mode and ListenPort are not edited here, only kept as they were.
	Mode       string `json:"mode,omitempty"`
	ListenPort int    `json:"listen_port,omitempty"`
}

// NetworkSettings is the box's own address on the hospital network.
type NetworkSettings struct {
	// Mode is "dhcp" or "static".
	Mode string `json:"mode"`
	// Address with its network (static only): 192.168.1.20/24.
	Address string `json:"address,omitempty"`
	// Gateway (static only).
	Gateway string `json:"gateway,omitempty"`
	// DNS servers (static only).
	DNS []string `json:"dns,omitempty"`
}

// Settings reads and writes what the configuration file does not hold.
type Settings interface {
	Tunnel(ctx context.Context) (TunnelSettings, error)
	SetTunnel(ctx context.Context, t TunnelSettings) error
	// ImportTunnel hands relaisd a wg-quick file's text, for the keys the
	// console does not hold (a preshared key); it ignores a private key.
	ImportTunnel(ctx context.Context, wgQuick string) error
	Network(ctx context.Context) (NetworkSettings, error)
	SetNetwork(ctx context.Context, n NetworkSettings) error
}

// ErrNotAvailable is returned when the daemon has no such endpoint.
var ErrNotAvailable = control.ErrNotAvailable

// clientSettings implements Settings with the control API's client.
type clientSettings struct{ c *control.Client }

func (s clientSettings) Tunnel(ctx context.Context) (TunnelSettings, error) {
	info, err := s.c.Tunnel(ctx)
	t := info.Config
	return TunnelSettings{Address: t.Address, PeerPublicKey: t.PeerPublicKey, PeerEndpoint: t.Endpoint, AllowedIPs: t.AllowedIPs,
		KeepaliveSeconds: t.KeepaliveSeconds, Mode: t.Mode, ListenPort: t.ListenPort}, err
}

func (s clientSettings) SetTunnel(ctx context.Context, t TunnelSettings) error {
	return s.c.SetTunnel(ctx, config.Tunnel{Address: t.Address, PeerPublicKey: t.PeerPublicKey, Endpoint: t.PeerEndpoint,
		AllowedIPs: t.AllowedIPs, KeepaliveSeconds: t.KeepaliveSeconds, Mode: t.Mode, ListenPort: t.ListenPort})
}

func (s clientSettings) ImportTunnel(ctx context.Context, wgQuick string) error {
	_, err := s.c.ImportTunnel(ctx, wgQuick)
	return err
}

func (s clientSettings) Network(ctx context.Context) (NetworkSettings, error) {
	n, err := s.c.Network(ctx)
	return NetworkSettings(n), err
}

func (s clientSettings) SetNetwork(ctx context.Context, n NetworkSettings) error {
	return s.c.SetNetwork(ctx, control.Network(n))
}
