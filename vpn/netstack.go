package vpn

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// netstackTunnel is wireguard-go on gVisor's TCP/IP stack (our netDev), all
// in this process; its UDP socket is an ordinary one on the host. wgctrl
// can't reach it, so it is configured with the same configuration rendered
// as UAPI text.
type netstackTunnel struct {
	dev  *device.Device
	net  *netDev
	peer Key
}

func upNetstack(cfg Config, wgcfg wgtypes.Config, log *slog.Logger) (backend, error) {
	nd, err := newNetDev(cfg.Address.Addr(), cfg.MTU)
	if err != nil {
		return nil, err
	}
	// The device owns nd from here: its Close closes nd.
	n := &netstackTunnel{dev: device.NewDevice(nd, conn.NewDefaultBind(), wgLogger(log)), net: nd, peer: cfg.Peer.PublicKey}
	if err := n.configure(wgcfg); err != nil {
		n.dev.Close()
		return nil, err
	}
	if err := n.dev.Up(); err != nil {
		n.dev.Close()
		return nil, fmt.Errorf("netstack: device up: %w", err)
	}
	return n, nil
}

func (n *netstackTunnel) configure(cfg wgtypes.Config) error {
	if err := n.dev.IpcSet(uapiConfig(cfg)); err != nil {
		return fmt.Errorf("configure netstack device: %w", err)
	}
	return nil
}

func (n *netstackTunnel) stats() (deviceStats, error) {
	text, err := n.dev.IpcGet()
	if err != nil {
		return deviceStats{}, fmt.Errorf("read netstack device: %w", err)
	}
	return parseUAPIStats(text, n.peer)
}

// dialContext dials an IP address (the stack has no resolver).
func (n *netstackTunnel) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("netstack dials IP:port only: %w", err)
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
		return n.net.dialTCP(ctx, ap)
	case "udp", "udp4", "udp6":
		return n.net.dialUDP(ap)
	}
	return nil, fmt.Errorf("netstack: network %q not supported", network)
}

func (n *netstackTunnel) listen(_ context.Context, network, addr string) (net.Listener, error) {
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return nil, fmt.Errorf("netstack: network %q not supported", network)
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	return n.net.listenTCP(ap)
}

func (n *netstackTunnel) close() error {
	n.dev.Close()
	return nil
}
