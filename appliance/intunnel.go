package appliance

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/relais/relais/store"
	"github.com/relais/relais/vpn"
)

// What the regional team reaches through the tunnel and nowhere else: the
// metrics and the console over SSH. Each gets a listener on the tunnel's
// own address each time a tunnel comes up, closed with that tunnel, so a
// new address (a changed or imported tunnel) is followed. In netstack mode
// the listener is inside the in-process stack; in the link modes it is
// bound to the tunnel's interface, so a LAN host routing the tunnel's
// address to the box gets no answer either.

// OnTunnel, as the host of a listen address (Options.MetricsAddr,
// Options.SSHConsole), means the tunnel's own address.
const OnTunnel = "tunnel"

// tunnelService is served on the tunnel's address, port port.
type tunnelService struct {
	name string // for events: "metrics", "the console over SSH"
	port string
	// serve serves ln until it is closed; ctx ends with the tunnel.
	serve func(ctx context.Context, ln net.Listener)
}

// tunnelPort reads "tunnel:PORT".
func tunnelPort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != OnTunnel {
		return "", fmt.Errorf("%q: want %s:PORT", addr, OnTunnel)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%q: the port must be 1 to 65535", addr)
	}
	return port, nil
}

// serveInTunnel starts the tunnel services on t until ctx ends, when t is
// replaced (its successor gets its own listeners) or relaisd stops.
func (a *Appliance) serveInTunnel(ctx context.Context, t *vpn.Tunnel) {
	for _, s := range a.inTunnel {
		ln, err := t.Listen(ctx, "tcp", ":"+s.port)
		if err != nil {
			a.event(store.KindConfig, store.Warning, fmt.Sprintf("%s not served in the tunnel: %v", s.name, err), nil)
			continue
		}
		a.wg.Add(2)
		go func() {
			defer a.wg.Done()
			<-ctx.Done()
			ln.Close()
		}()
		go func() {
			defer a.wg.Done()
			s.serve(ctx, ln)
		}()
	}
}
