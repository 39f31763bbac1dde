package peers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Netns is a network namespace made for a test and removed after it.
type Netns struct{ Name string }

// RequireNetns skips unless the test can make network namespaces.
func RequireNetns(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, a veth pair and TUN devices (CI runs `make test` as root)")
	}
	Require(t, "ip")
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no /dev/net/tun here: %v", err)
	}
}

// NewNetns creates a namespace with its loopback up; it is deleted when the
// test ends (which also removes the links inside it).
func NewNetns(t testing.TB, prefix string) *Netns {
	t.Helper()
	var b [3]byte
	rand.Read(b[:])
	n := &Netns{Name: prefix + "-" + hex.EncodeToString(b[:])}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", n.Name).Run() })
	n.IP(t, "link", "set", "lo", "up")
	return n
}

// IP runs `ip` inside the namespace.
func (n *Netns) IP(t testing.TB, args ...string) {
	t.Helper()
	n.Run(t, "ip", args...)
}

// Run runs a command inside the namespace to completion.
func (n *Netns) Run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), n.Name, err, out)
	}
	return out
}

// Command prepares a command to run inside the namespace.
func (n *Netns) Command(name string, args ...string) (string, []string) {
	return "ip", append([]string{"netns", "exec", n.Name, name}, args...)
}

// Veth joins two namespaces with a veth pair, addressed a and b (CIDR).
func Veth(t testing.TB, x *Netns, xName, xAddr string, y *Netns, yName, yAddr string) {
	t.Helper()
	if out, err := exec.Command("ip", "link", "add", xName, "netns", x.Name, "type", "veth", "peer", "name", yName, "netns", y.Name).CombinedOutput(); err != nil {
		t.Fatalf("veth: %v %s", err, out)
	}
	x.IP(t, "addr", "add", xAddr, "dev", xName)
	y.IP(t, "addr", "add", yAddr, "dev", yName)
	x.IP(t, "link", "set", xName, "up")
	y.IP(t, "link", "set", yName, "up")
}

// Dial opens a connection from inside the namespace: the socket is made on
// an OS thread moved into it, which is then left to die with its goroutine.
func (n *Netns) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread must not serve other goroutines
		fd, err := unix.Open("/var/run/netns/"+n.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{nil, fmt.Errorf("open namespace %s: %w", n.Name, err)}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("enter namespace %s: %w", n.Name, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
