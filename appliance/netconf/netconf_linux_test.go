package netconf

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/testdata/peers"
)

type services struct {
	mu    sync.Mutex
	calls []string
}

func (s *services) Stop(_ context.Context, svc string) error    { return s.record("stop " + svc) }
func (s *services) Restart(_ context.Context, svc string) error { return s.record("restart " + svc) }
func (s *services) record(c string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
	return nil
}

// inNetns runs fn on an OS thread moved into the namespace; the thread is
// left to die with its goroutine, never reused.
func inNetns(t *testing.T, ns *peers.Netns, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/var/run/netns/"+ns.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			err = unix.Setns(fd, unix.CLONE_NEWNET)
			unix.Close(fd)
		}
		if err != nil {
			done <- err
			return
		}
		done <- fn()
	}()
	return <-done
}

func ip(t *testing.T, ns *peers.Netns, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestStaticThenDHCPOnARealInterface applies a static address to an
// interface in a network namespace, then goes back to DHCP.
func TestStaticThenDHCPOnARealInterface(t *testing.T) {
	peers.RequireNetns(t)
	ns := peers.NewNetns(t, "relais-net")
	ip(t, ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
	ip(t, ns, "link", "set", "eth0p", "up")
	ip(t, ns, "addr", "add", "10.77.9.9/24", "dev", "eth0") // as if from a DHCP lease
	svc := &services{}
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	a := &Applier{Services: svc, DHCPService: "/gokrazy/dhcp", ResolvConf: resolv}
	static := config.Network{Mode: "static", Address: "10.77.0.20/24", Gateway: "10.77.0.1", DNS: []string{"10.77.0.53", "10.77.0.54"}}
	if err := inNetns(t, ns, func() error { return a.Apply(context.Background(), static) }); err != nil {
		t.Fatal(err)
	}
	addrs := ip(t, ns, "-4", "addr", "show", "dev", "eth0")
	if !strings.Contains(addrs, "10.77.0.20/24") || strings.Contains(addrs, "10.77.9.9") {
		t.Fatalf("addresses after static:\n%s", addrs)
	}
	if routes := ip(t, ns, "-4", "route"); !strings.Contains(routes, "default via 10.77.0.1 dev eth0") {
		t.Fatalf("routes after static:\n%s", routes)
	}
	b, _ := os.ReadFile(resolv)
	if !strings.Contains(string(b), "nameserver 10.77.0.53\nnameserver 10.77.0.54\n") {
		t.Fatalf("resolv.conf:\n%s", b)
	}
	// Applying it again changes nothing and fails nothing.
	if err := inNetns(t, ns, func() error { return a.Apply(context.Background(), static) }); err != nil {
		t.Fatal(err)
	}
	if err := inNetns(t, ns, func() error { return a.Apply(context.Background(), config.Network{Mode: "dhcp"}) }); err != nil {
		t.Fatal(err)
	}
	if addrs := ip(t, ns, "-4", "addr", "show", "dev", "eth0"); strings.Contains(addrs, "10.77.0.20") {
		t.Fatalf("static address left after going back to DHCP:\n%s", addrs)
	}
	if got := strings.Join(svc.calls, ","); got != "stop /gokrazy/dhcp,stop /gokrazy/dhcp,restart /gokrazy/dhcp" {
		t.Fatalf("gokrazy calls %s", got)
	}
}
