// Package netconf gives the box the address the technician chose on the
// console: by DHCP (gokrazy's own client, the default) or static (this
// package sets the address, the default route and the name servers, and
// stops gokrazy's DHCP client, which would otherwise replace them).
//
// Only the box runs this: on any other machine the host system owns the
// network, and relaisd is given no Applier.
package netconf

import (
	"context"

	"github.com/relais/relais/appliance/config"
)

// Services stops and restarts gokrazy's services (gokrazy.LocalAPI).
type Services interface {
	Stop(ctx context.Context, service string) error
	Restart(ctx context.Context, service string) error
}

// Applier applies a config.Network.
type Applier struct {
	Services Services
	// DHCPService is gokrazy's DHCP client: "/gokrazy/dhcp".
	DHCPService string
	// ResolvConf is the file the resolver reads: on gokrazy /etc/resolv.conf
	// links to /tmp/resolv.conf (the root file system is read-only).
	ResolvConf string
}

// OnGokrazy is the Applier for a gokrazy box.
func OnGokrazy(s Services) *Applier {
	return &Applier{Services: s, DHCPService: "/gokrazy/dhcp", ResolvConf: "/tmp/resolv.conf"}
}

// Apply sets the network as n says.
func (a *Applier) Apply(ctx context.Context, n config.Network) error {
	ifname := n.Interface
	if ifname == "" {
		ifname = "eth0"
	}
	return a.apply(ctx, ifname, n)
}
