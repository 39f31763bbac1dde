package vpn

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// netDevBatch is how many packets one Read or Write hands over: wireguard-go
// then encrypts a batch at a time and sends it in one sendmmsg (or one GSO
// send), instead of one system call per 1420-byte packet.
const netDevBatch = conn.IdealBatchSize

// netDevQueue is how many packets the stack may have waiting for
// wireguard-go. More than a TCP send window of MTU packets, so that a
// window's burst is not dropped at the link.
const netDevQueue = 4096

const netDevNIC tcpip.NICID = 1

// netDev is a tun.Device whose other side is gVisor's TCP/IP stack in this
// process: what the stack sends, wireguard-go reads and encrypts; what
// wireguard-go decrypted, it writes into the stack. It has no goroutine of
// its own; the stack's are stopped by Close.
type netDev struct {
	ep     *link
	stack  *stack.Stack
	mtu    int
	events chan tun.Event

	// done ends a Read waiting for a packet at Close.
	done   context.Context
	cancel context.CancelFunc

	// mu is held by a Write while it hands packets to the stack and by
	// Close, so that no packet is injected into a stack being torn down.
	mu     sync.Mutex
	closed bool
	// gro joins a batch's consecutive segments of a TCP connection into
	// one before the stack sees them: one pass through TCP, one ACK.
	gro gro.GRO
}

// link is gVisor's channel endpoint, remembering the stack's dispatcher so
// that Write can feed it through GRO.
type link struct {
	*channel.Endpoint
	mu         sync.Mutex
	dispatcher stack.NetworkDispatcher
}

func (l *link) Attach(d stack.NetworkDispatcher) {
	l.Endpoint.Attach(d)
	l.mu.Lock()
	l.dispatcher = d
	l.mu.Unlock()
}

func (l *link) attached() stack.NetworkDispatcher {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dispatcher
}

// newNetDev makes a stack with addr as its only address and every route
// through the device.
func newNetDev(addr netip.Addr, mtu int) (*netDev, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
		// Our own tunnel address is reached inside the stack.
		HandleLocal: true,
	})
	ep := channel.New(netDevQueue, uint32(mtu), "")
	// WireGuard authenticated every packet it decrypted (as the kernel's
	// does, which marks them CHECKSUM_UNNECESSARY): the TCP checksum has
	// nothing left to find, and GRO needs it skipped.
	ep.LinkEPCapabilities = stack.CapabilityRXChecksumOffload
	d := &netDev{ep: &link{Endpoint: ep}, stack: s, mtu: mtu, events: make(chan tun.Event, 1)}
	d.gro.Init(true)
	d.done, d.cancel = context.WithCancel(context.Background())
	if err := d.setup(addr); err != nil {
		d.Close()
		return nil, err
	}
	d.events <- tun.EventUp
	return d, nil
}

func (d *netDev) setup(addr netip.Addr) error {
	if err := setTCPOptions(d.stack); err != nil {
		return err
	}
	if err := d.stack.CreateNIC(netDevNIC, d.ep); err != nil {
		return fmt.Errorf("netstack: create NIC: %s", err)
	}
	proto, empty := ipv4.ProtocolNumber, header.IPv4EmptySubnet
	if addr.Is6() {
		proto, empty = ipv6.ProtocolNumber, header.IPv6EmptySubnet
	}
	pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddrFromSlice(addr.AsSlice()).WithPrefix()}
	if err := d.stack.AddProtocolAddress(netDevNIC, pa, stack.AddressProperties{}); err != nil {
		return fmt.Errorf("netstack: add address %s: %s", addr, err)
	}
	d.stack.AddRoute(tcpip.Route{Destination: empty, NIC: netDevNIC})
	return nil
}

// setTCPOptions: SACK, off by default in gVisor, recovers a lost packet
// without resending the window behind it.
func setTCPOptions(s *stack.Stack) error {
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return fmt.Errorf("netstack: enable TCP SACK: %s", err)
	}
	return nil
}

func (d *netDev) File() *os.File           { return nil }
func (d *netDev) MTU() (int, error)        { return d.mtu, nil }
func (d *netDev) Name() (string, error)    { return "netstack", nil }
func (d *netDev) Events() <-chan tun.Event { return d.events }
func (d *netDev) BatchSize() int           { return netDevBatch }

// Read waits for the stack's first packet, then takes every further one
// already queued, up to len(bufs), so that a TCP window goes out as one
// batch.
func (d *netDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	pkt := d.ep.ReadContext(d.done)
	n := 0
	for pkt != nil {
		if size := copyPacket(bufs[n][offset:], pkt); size > 0 {
			sizes[n] = size
			n++
		}
		pkt.DecRef() // the chunks go back to gVisor's pool
		if n == len(bufs) {
			break
		}
		pkt = d.ep.Read()
	}
	if n == 0 {
		select {
		case <-d.done.Done():
			return 0, os.ErrClosed
		default:
			return 0, nil // only packets too big for bufs; wireguard-go reads again
		}
	}
	return n, nil
}

// copyPacket copies the packet into dst, or nothing (0) if it does not fit:
// the stack sends no packet above the MTU, so that would be a bug to drop
// rather than truncate.
func copyPacket(dst []byte, pkt *stack.PacketBuffer) int {
	size := pkt.Size()
	if size > len(dst) {
		return 0
	}
	views, off := pkt.AsViewList()
	n := 0
	for v := views.Front(); v != nil && n < size; v = v.Next() {
		s := v.AsSlice()
		if off >= len(s) {
			off -= len(s)
			continue
		}
		n += copy(dst[n:size], s[off:])
		off = 0
	}
	return n
}

// Write hands wireguard-go's decrypted packets to the stack. Each is copied,
// as wireguard-go reuses its buffers.
func (d *netDev) Write(bufs [][]byte, offset int) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, os.ErrClosed
	}
	if d.gro.Dispatcher = d.ep.attached(); d.gro.Dispatcher == nil {
		return len(bufs), nil // not attached to the stack: nowhere to deliver
	}
	for _, b := range bufs {
		p := b[offset:]
		if len(p) == 0 {
			continue
		}
		var proto tcpip.NetworkProtocolNumber
		switch header.IPVersion(p) {
		case header.IPv4Version:
			proto = header.IPv4ProtocolNumber
		case header.IPv6Version:
			proto = header.IPv6ProtocolNumber
		default:
			continue // wireguard-go lets only IP through; nothing to deliver
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(p)})
		pkt.NetworkProtocolNumber = proto
		pkt.RXChecksumValidated = true
		d.gro.Enqueue(pkt)
		pkt.DecRef()
	}
	d.gro.Flush()
	return len(bufs), nil
}

// Close stops the stack and its goroutines and ends a waiting Read; safe to
// call more than once and during traffic.
func (d *netDev) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	d.cancel()
	d.stack.Destroy()
	d.ep.Close() // drops the packets still queued
	close(d.events)
	return nil
}
