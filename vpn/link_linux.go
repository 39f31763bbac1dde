package vpn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/jsimonetti/rtnetlink/v2"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// linkTunnel is what kernel and userspace modes share: a network link
// configured through wgctrl, reached through the host's own routes.
type linkTunnel struct {
	name   string
	peer   Key
	rt     *rtnetlink.Conn
	wg     *wgctrl.Client
	closer func() error // the mode's own teardown
}

func (l *linkTunnel) configure(cfg wgtypes.Config) error {
	if err := l.wg.ConfigureDevice(l.name, cfg); err != nil {
		return fmt.Errorf("configure %s with wgctrl: %w", l.name, err)
	}
	return nil
}

func (l *linkTunnel) stats() (deviceStats, error) {
	d, err := l.wg.Device(l.name)
	if err != nil {
		return deviceStats{}, fmt.Errorf("read %s with wgctrl: %w", l.name, err)
	}
	return statsFromDevice(d, l.peer), nil
}

func (l *linkTunnel) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// listen binds to the tunnel's interface too: Linux otherwise takes a
// packet for any of its addresses on any interface, so a LAN host routing
// the tunnel's address through the box would reach the listener.
func (l *linkTunnel) listen(ctx context.Context, network, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) { err = unix.BindToDevice(int(fd), l.name) }); cerr != nil {
			return cerr
		}
		if err != nil {
			return fmt.Errorf("bind to %s: %w", l.name, err)
		}
		return nil
	}}
	return lc.Listen(ctx, network, addr)
}

func (l *linkTunnel) close() error {
	err := l.closer()
	if l.wg != nil {
		l.wg.Close()
	}
	if l.rt != nil {
		l.rt.Close()
	}
	return err
}

// dialLink opens the rtnetlink and wgctrl connections.
func dialLink(cfg Config) (*linkTunnel, error) {
	rt, err := rtnetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("rtnetlink: %w", err)
	}
	wg, err := wgctrl.New()
	if err != nil {
		rt.Close()
		return nil, fmt.Errorf("wgctrl: %w", err)
	}
	return &linkTunnel{name: cfg.Interface, peer: cfg.Peer.PublicKey, rt: rt, wg: wg, closer: func() error { return nil }}, nil
}

// start configures the device with wgctrl, then the link; on failure it
// takes everything down again.
func (l *linkTunnel) start(cfg Config, wgcfg wgtypes.Config) (backend, error) {
	err := l.configure(wgcfg)
	if err == nil {
		err = l.setUp(cfg)
	}
	if err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

// setUp configures the link after wgctrl did the device: MTU, our address,
// up, and a route for each allowed IP not already on the address's
// network. Routes are replaced, not added, so a restart over a link left
// behind succeeds.
func (l *linkTunnel) setUp(cfg Config) error {
	ifi, err := net.InterfaceByName(l.name)
	if err != nil {
		return fmt.Errorf("find link %s: %w", l.name, err)
	}
	idx := uint32(ifi.Index)
	if err := l.rt.Link.Set(&rtnetlink.LinkMessage{Family: unix.AF_UNSPEC, Index: idx,
		Attributes: &rtnetlink.LinkAttributes{MTU: uint32(cfg.MTU)}}); err != nil {
		return fmt.Errorf("set MTU %d on %s: %w", cfg.MTU, l.name, err)
	}
	ip := net.IP(cfg.Address.Addr().AsSlice())
	err = l.rt.Address.New(&rtnetlink.AddressMessage{
		Family: family(cfg.Address.Addr().Is4()), PrefixLength: uint8(cfg.Address.Bits()),
		Scope: unix.RT_SCOPE_UNIVERSE, Index: idx,
		Attributes: &rtnetlink.AddressAttributes{Address: ip, Local: ip},
	})
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add address %s to %s: %w", cfg.Address, l.name, err)
	}
	if err := l.rt.Link.Set(&rtnetlink.LinkMessage{Family: unix.AF_UNSPEC, Index: idx,
		Flags: unix.IFF_UP, Change: unix.IFF_UP}); err != nil {
		return fmt.Errorf("bring %s up: %w", l.name, err)
	}
	for _, p := range cfg.Peer.AllowedIPs {
		p = p.Masked()
		if p.Bits() == 0 {
			return fmt.Errorf("allowed IP %s: a default route through the tunnel is not supported; list the reading center's networks", p)
		}
		if on := cfg.Address.Masked(); on.Contains(p.Addr()) && p.Bits() >= on.Bits() {
			continue // the address's own network route covers it
		}
		err := l.rt.Route.Replace(&rtnetlink.RouteMessage{
			Family: family(p.Addr().Is4()), DstLength: uint8(p.Bits()),
			Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_BOOT, Scope: unix.RT_SCOPE_LINK, Type: unix.RTN_UNICAST,
			Attributes: rtnetlink.RouteAttributes{Dst: p.Addr().AsSlice(), OutIface: idx},
		})
		if err != nil {
			return fmt.Errorf("route %s through %s: %w", p, l.name, err)
		}
	}
	return nil
}

func family(is4 bool) uint8 {
	if is4 {
		return unix.AF_INET
	}
	return unix.AF_INET6
}
