package appliance

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestBoxAddressesAreWhatAModalityCanSendTo: a listener bound to one
// address gives that address alone; otherwise every unicast address of the
// host but loopback, link-local and the tunnel's.
func TestBoxAddressesAreWhatAModalityCanSendTo(t *testing.T) {
	if got := boxAddresses(net.ParseIP("127.0.0.1"), netip.Addr{}); !slices.Equal(got, []string{"127.0.0.1"}) {
		t.Errorf("listening on 127.0.0.1: %q", got)
	}
	all := boxAddresses(net.IPv4zero, netip.Addr{})
	start := time.Now()
	for range 100 {
		boxAddresses(nil, netip.Addr{})
	}
	t.Logf("this host's addresses: %q, %v per status", all, time.Since(start)/100)
	for _, s := range all {
		ip := netip.MustParseAddr(s)
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || !ip.IsGlobalUnicast() {
			t.Errorf("%s is listed", s)
		}
	}
	if len(all) == 0 {
		t.Skip("this host has no address besides loopback: the tunnel's exclusion is not checked")
	}
	tunnel := netip.MustParseAddr(all[0])
	if got := boxAddresses(nil, tunnel); slices.Contains(got, all[0]) || len(got) != len(all)-1 {
		t.Errorf("with the tunnel on %s: %q", tunnel, got)
	}
}
