package vpn

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
)

// Connections on a netDev's stack, by IP address and port (the stack has
// no resolver).

func (d *netDev) dialTCP(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
	fa, proto := fullAddr(ap)
	c, err := gonet.DialContextTCP(ctx, d.stack, fa, proto)
	if err != nil {
		return nil, fmt.Errorf("netstack: dial tcp %s: %w", ap, err)
	}
	return c, nil
}

func (d *netDev) dialUDP(ap netip.AddrPort) (net.Conn, error) {
	fa, proto := fullAddr(ap)
	c, err := gonet.DialUDP(d.stack, nil, &fa, proto)
	if err != nil {
		return nil, fmt.Errorf("netstack: dial udp %s: %w", ap, err)
	}
	return c, nil
}

func (d *netDev) listenTCP(ap netip.AddrPort) (net.Listener, error) {
	fa, proto := fullAddr(ap)
	ln, err := gonet.ListenTCP(d.stack, fa, proto)
	if err != nil {
		return nil, fmt.Errorf("netstack: listen tcp %s: %w", ap, err)
	}
	return ln, nil
}

func fullAddr(ap netip.AddrPort) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	a := ap.Addr().Unmap()
	proto := ipv4.ProtocolNumber
	if a.Is6() {
		proto = ipv6.ProtocolNumber
	}
	return tcpip.FullAddress{NIC: netDevNIC, Addr: tcpip.AddrFromSlice(a.AsSlice()), Port: ap.Port()}, proto
}
