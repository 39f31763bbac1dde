package appliance

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"

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
	name string // for events and alarms: "metrics", "the console over SSH"
	port string
	// serve serves ln until it is closed; ctx ends with the tunnel.
	serve func(ctx context.Context, ln net.Listener) error
	// check, when set, tells whether what the service hands on to is
	// there (the console behind the SSH forward); run with the self-echo.
	check func(ctx context.Context) error
}

// serviceFaults says, per tunnel service, why the regional team cannot
// reach it: its listener failed, or what it hands on to does not answer.
type serviceFaults struct {
	mu sync.Mutex
	m  map[string]string // name → why
}

func (f *serviceFaults) set(name string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.m, name)
		return
	}
	if f.m == nil {
		f.m = map[string]string{}
	}
	f.m[name] = err.Error()
}

// list is "name: why" for each fault, sorted.
func (f *serviceFaults) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for name, why := range f.m {
		out = append(out, name+": "+why)
	}
	slices.Sort(out)
	return out
}

// checkTunnelServices runs the services' checks (probe.go's loop).
func (a *Appliance) checkTunnelServices(ctx context.Context) {
	for _, s := range a.inTunnel {
		if s.check != nil {
			if err := s.check(ctx); ctx.Err() == nil {
				a.tunnelFaults.set(s.name, err)
			}
		}
	}
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
			a.tunnelFaults.set(s.name, fmt.Errorf("not served in the tunnel: %w", err))
			a.event(store.KindConfig, store.Warning, fmt.Sprintf("%s not served in the tunnel: %v", s.name, err), nil)
			continue
		}
		if s.check == nil {
			a.tunnelFaults.set(s.name, nil)
		}
		a.wg.Add(2)
		go func() {
			defer a.wg.Done()
			<-ctx.Done()
			ln.Close()
		}()
		go func() {
			defer a.wg.Done()
			if err := s.serve(ctx, ln); err != nil && ctx.Err() == nil {
				a.tunnelFaults.set(s.name, fmt.Errorf("no longer served in the tunnel: %w", err))
				a.event(store.KindConfig, store.Warning, fmt.Sprintf("%s no longer served in the tunnel: %v", s.name, err), nil)
			}
		}()
	}
}
