package appliance

import (
	"net"
	"net/netip"
)

// boxAddresses are where a modality sends to: the DICOM listener's own
// address when it is bound to one, else the box's unicast addresses
// without loopback, link-local and the tunnel's own (modalities are on the
// hospital network, the tunnel is for the reading center). One netlink
// dump (net.InterfaceAddrs): cheap enough for a status every second.
func boxAddresses(listen net.IP, tunnel netip.Addr) []string {
	if listen != nil && !listen.IsUnspecified() {
		return []string{listen.String()}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var v4, v6 []string
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if !ip.IsGlobalUnicast() || ip == tunnel {
			continue
		}
		if ip.Is4() {
			v4 = append(v4, ip.String())
		} else {
			v6 = append(v6, ip.String())
		}
	}
	return append(v4, v6...)
}
