//go:build linux

package vpn

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The namespace test runs each end of the tunnel in its own network
// namespace, in a copy of this test binary started with `ip netns exec`:
// TestMain turns it into a helper when these variables are set.
const (
	helperRole = "RELAIS_VPN_NETNS_ROLE" // "responder" or "initiator"
	helperConf = "RELAIS_VPN_NETNS_CONF" // wg-quick file, private key included
	helperIf   = "RELAIS_VPN_NETNS_IF"   // interface name
)

func TestMain(m *testing.M) {
	if role := os.Getenv(helperRole); role != "" {
		os.Exit(netnsHelper(role, os.Getenv(helperConf), os.Getenv(helperIf)))
	}
	os.Exit(m.Run())
}

// TestUserspaceInNamespaces: two network namespaces joined by a veth pair
// (10.213.255.0/30), each running the userspace tunnel (wireguard-go on a
// TUN device, configured through wgctrl over its UAPI socket, with address
// and routes by rtnetlink). The box's side first checks that kernel mode
// reports ErrKernelUnsupported on this kernel and that auto picks
// userspace, then C-ECHOes and C-STOREs to an SCP on the reading center's
// tunnel address; the SCP reports what it received.
func TestUserspaceInNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, a veth pair and TUN devices (run `make test` as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip command")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("needs /dev/net/tun")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sfx := strconv.Itoa(os.Getpid() % 1000000)
	nsA, nsB := "relais-vpn-a-"+sfx, "relais-vpn-b-"+sfx
	vethA, vethB := "rva"+sfx, "rvb"+sfx
	ifA, ifB := "rwa"+sfx, "rwb"+sfx

	for _, ns := range []string{nsA, nsB} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Skipf("root, but can't create a network namespace here (a container without CAP_SYS_ADMIN?): %v: %s", err, out)
		}
		t.Cleanup(func() { ipCmdCleanup(t, "netns", "del", ns) })
	}
	ipCmd(t, "link", "add", vethA, "type", "veth", "peer", "name", vethB)
	t.Cleanup(func() {
		// Gone with its namespace unless something failed before the move.
		if _, err := net.InterfaceByName(vethA); err == nil {
			ipCmdCleanup(t, "link", "del", vethA)
		}
	})
	for _, s := range []struct{ ns, veth, addr string }{{nsA, vethA, "10.213.255.1/30"}, {nsB, vethB, "10.213.255.2/30"}} {
		ipCmd(t, "link", "set", s.veth, "netns", s.ns)
		ipCmd(t, "-n", s.ns, "addr", "add", s.addr, "dev", s.veth)
		ipCmd(t, "-n", s.ns, "link", "set", s.veth, "up")
		ipCmd(t, "-n", s.ns, "link", "set", "lo", "up")
	}

	// Host addresses (/32): the allowed IPs then need routes of their own.
	keyA, keyB, psk := mustKey(t), mustKey(t), mustKey(t)
	cfgA, cfgB := pairConfigs(ModeAuto, keyA, keyB, &psk, "10.213.255.2:51821")
	cfgA.Address = netip.PrefixFrom(testAddrA.Addr(), 32)
	cfgB.Address = netip.PrefixFrom(testAddrB.Addr(), 32)
	cfgA.ListenPort, cfgB.ListenPort = 51820, 51821
	dir := t.TempDir()
	confA, confB := writeConf(t, dir, "a.conf", cfgA, keyA), writeConf(t, dir, "b.conf", cfgB, keyB)

	// The responder first, or the first handshake is lost for 5 s.
	responder := exec.Command("ip", "netns", "exec", nsB, exe)
	responder.Env = append(os.Environ(), helperRole+"=responder", helperConf+"="+confB, helperIf+"="+ifB)
	stdin, err := responder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := responder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var respLog strings.Builder
	responder.Stderr = &respLog
	if err := responder.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		stdin.Close() // the responder closes its tunnel and exits
		done := make(chan error, 1)
		go func() { done <- responder.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("responder: %v\n%s", err, respLog.String())
			}
		case <-time.After(30 * time.Second):
			responder.Process.Kill()
			<-done
			t.Errorf("responder did not stop; killed\n%s", respLog.String())
		}
	}
	t.Cleanup(stop) // before the namespaces go
	if line := <-lines; line != "ready" {
		stop()
		t.Fatalf("responder: %q\n%s", line, respLog.String())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	initiator := exec.CommandContext(ctx, "ip", "netns", "exec", nsA, exe)
	initiator.Env = append(os.Environ(), helperRole+"=initiator", helperConf+"="+confA, helperIf+"="+ifA)
	out, err := initiator.CombinedOutput()
	t.Logf("box side:\n%s", out)
	if err != nil {
		t.Fatalf("box side: %v", err)
	}
	for _, want := range []string{"kernel mode: ", "failed start: link and socket gone", "auto mode: userspace", "C-STORE through the tunnel: ok", "status: up", "closed: link and socket gone"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("box side did not report %q", want)
		}
	}

	stop()
	in, err := newInstance(7)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("got %s %x", in.sopInstance, sha256.Sum256(in.data))
	var got []string
	for line := range lines {
		got = append(got, line)
	}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("reading center side received %q, want %q\n%s", got, want, respLog.String())
	}
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func ipCmdCleanup(t *testing.T, args ...string) {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Errorf("cleanup: ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func writeConf(t *testing.T, dir, name string, cfg Config, key SecretKey) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := cfg.WriteWGQuick(f, &key); err != nil {
		t.Fatal(err)
	}
	return path
}

// netnsHelper is one end of TestUserspaceInNamespaces, inside its
// namespace; it reports on stdout and returns the exit code.
func netnsHelper(role, conf, ifname string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	err := func() error {
		f, err := os.Open(conf)
		if err != nil {
			return err
		}
		cfg, key, err := ParseWGQuick(f)
		f.Close()
		if err != nil {
			return err
		}
		cfg.Interface = ifname
		switch role {
		case "responder":
			return netnsResponder(cfg, *key, log)
		case "initiator":
			return netnsInitiator(cfg, *key, log)
		}
		return fmt.Errorf("unknown role %q", role)
	}()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", role, err)
		return 1
	}
	return 0
}

// netnsResponder is the reading center: a storage SCP on its tunnel
// address until stdin closes, then one "got UID SHA-256" line per instance.
func netnsResponder(cfg Config, key SecretKey, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg.Mode = ModeUserspace
	tun, err := Up(ctx, cfg, key, Options{Logger: log})
	if err != nil {
		return err
	}
	defer tun.Close()
	ln, err := tun.Listen(ctx, "tcp", ":"+strconv.Itoa(testSCPPort))
	if err != nil {
		return err
	}
	var srv scp
	served := make(chan error, 1)
	go func() { served <- srv.serve(ctx, ln) }()
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	cancel()
	if err := <-served; err != nil {
		return err
	}
	for uid, sum := range srv.got {
		fmt.Printf("got %s %x\n", uid, sum)
	}
	return tun.Close()
}

// netnsInitiator is the box: kernel mode must fall back, auto must pick
// userspace, and DICOM must cross the tunnel.
func netnsInitiator(cfg Config, key SecretKey, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	cfg.Mode = ModeKernel
	switch tun, err := Up(ctx, cfg, key, Options{Logger: log}); {
	case errors.Is(err, ErrKernelUnsupported):
		fmt.Printf("kernel mode: falls back (%v)\n", err)
	case err == nil:
		tun.Close()
		return errors.New("kernel mode came up: this kernel has WireGuard, the fallback can't be shown here")
	default:
		return fmt.Errorf("kernel mode failed without naming the missing kernel support: %w", err)
	}
	if err := checkGone(cfg.Interface); err != nil {
		return fmt.Errorf("after kernel mode failed: %w", err)
	}

	// A failure half-way (here: the route, after device and address) takes
	// everything down again.
	bad := cfg
	bad.Mode = ModeUserspace
	bad.Peer.AllowedIPs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	tun, err := Up(ctx, bad, key, Options{Logger: log})
	if err == nil {
		tun.Close()
		return errors.New("userspace mode accepted a default route through the tunnel")
	}
	fmt.Printf("failed start: %v\n", err)
	if err := checkGone(cfg.Interface); err != nil {
		return fmt.Errorf("after a failed start: %w", err)
	}
	fmt.Println("failed start: link and socket gone")

	cfg.Mode = ModeAuto
	tun, err = Up(ctx, cfg, key, Options{Logger: log})
	if err != nil {
		return err
	}
	defer tun.Close()
	fmt.Printf("auto mode: %s\n", tun.Mode())
	if tun.Mode() != ModeUserspace {
		return fmt.Errorf("auto picked %s, want userspace", tun.Mode())
	}

	in, err := newInstance(7)
	if err != nil {
		return err
	}
	addr := netip.AddrPortFrom(testAddrB.Addr(), testSCPPort).String()
	if err := echoAndStore(ctx, tun.DialContext, addr, in); err != nil {
		return fmt.Errorf("through the tunnel: %w", err)
	}
	fmt.Println("C-STORE through the tunnel: ok")

	s := tun.Status()
	fmt.Printf("status: %s, interface %s, endpoint %s, handshake %s ago, rx %d B, tx %d B\n",
		s.State, s.Interface, s.Endpoint, s.HandshakeAge.Round(time.Millisecond), s.RxBytes, s.TxBytes)
	if s.State != StateUp || s.Interface != cfg.Interface || s.Endpoint != cfg.Peer.Endpoint || s.TxBytes < int64(len(in.data)) {
		return fmt.Errorf("status after a store: %+v", s)
	}

	if err := tun.Close(); err != nil {
		return err
	}
	if err := checkGone(cfg.Interface); err != nil {
		return fmt.Errorf("after Close: %w", err)
	}
	fmt.Println("closed: link and socket gone")
	return nil
}

// checkGone reports a link or UAPI socket left behind.
func checkGone(ifname string) error {
	if _, err := net.InterfaceByName(ifname); err == nil {
		return fmt.Errorf("link %s left behind", ifname)
	}
	if _, err := os.Stat(filepath.Join(uapiDir, ifname+".sock")); err == nil {
		return fmt.Errorf("UAPI socket of %s left behind", ifname)
	}
	return nil
}
