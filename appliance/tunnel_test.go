package appliance

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/testdata/peers"
	"github.com/relais/relais/vpn"
)

// center is a reading center at the far end of a netstack WireGuard
// tunnel: its own wireguard-go and a DICOM SCP listening inside the tunnel.
type center struct {
	key  vpn.SecretKey
	tun  *vpn.Tunnel
	port int // UDP
	mu   sync.Mutex
	got  map[string][32]byte
}

type centerSink struct {
	c   *center
	uid string
	h   interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	}
}

func (s *centerSink) Write(p []byte) (int, error) { return s.h.Write(p) }
func (s *centerSink) Abort(error)                 {}
func (s *centerSink) Close() dimse.Status {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.c.got[s.uid] = [32]byte(s.h.Sum(nil))
	return dimse.StatusSuccess
}

func startCenter(t *testing.T, boxKey vpn.Key) *center {
	t.Helper()
	key, err := vpn.GenerateSecretKey()
	if err != nil {
		t.Fatal(err)
	}
	c := &center{key: key, got: map[string][32]byte{}}
	// A free UDP port for the center's WireGuard.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.port = pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	tun, err := vpn.Up(ctx, vpn.Config{
		Mode: vpn.ModeNetstack, Address: netip.MustParsePrefix("10.9.0.1/24"), ListenPort: c.port,
		// The box is 10.9.0.2, or another address of the /24 when a test moves it.
		Peer: vpn.Peer{PublicKey: boxKey, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/24")}},
	}, key, vpn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.tun = tun
	t.Cleanup(func() { tun.Close() })
	ln, err := tun.Listen(ctx, "tcp", ":104")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dimse.Server{Policy: &dimse.StaticPolicy{CalledAETitles: []string{"CENTER"}}, Handlers: dimse.Handlers{
		Store: func(_ context.Context, _ *dimse.Association, req *dimse.StoreRequest) dimse.StoreSink {
			return &centerSink{c: c, uid: req.SOPInstanceUID, h: sha256.New()}
		}}}
	go srv.Serve(ctx, ln)
	return c
}

func (c *center) sum(uid string) ([32]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.got[uid]
	return s, ok
}

// startNetstackCenter makes the box's key in dir, starts a reading center
// at 10.9.0.1 for it, and returns the box's netstack tunnel to it.
func startNetstackCenter(t *testing.T, dir string) (*center, config.Tunnel, vpn.SecretKey) {
	t.Helper()
	boxKey, err := vpn.LoadOrCreateKey(filepath.Join(dir, keyDir))
	if err != nil {
		t.Fatal(err)
	}
	rc := startCenter(t, boxKey.PublicKey()) // the responder first
	return rc, config.Tunnel{Mode: "netstack", Address: "10.9.0.2/24", PeerPublicKey: rc.key.PublicKey().String(),
		Endpoint: fmt.Sprintf("127.0.0.1:%d", rc.port), AllowedIPs: []string{"10.9.0.1/32"}, KeepaliveSeconds: 1}, boxKey
}

// TestForwardThroughNetstackTunnel: relaisd with a netstack tunnel (no
// privileges) forwards a study to a reading center reachable only inside
// the tunnel; the bytes arrive unchanged and the status shows the tunnel up.
func TestForwardThroughNetstackTunnel(t *testing.T) {
	peers.Require(t, "storescu")
	dir := t.TempDir()
	rc, tunnel, boxKey := startNetstackCenter(t, dir)
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Tunnel = tunnel
	cfg.Destinations = []config.Destination{{Name: "center", AETitle: "CENTER", Host: "10.9.0.1", Port: 104}}
	b := startBox(t, cfg, boxOptions{dir: dir})
	c := series(t, t.TempDir(), 10, 128, 801, nil)
	if out, err := b.storescu("STORESCU", c.dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	peers.Eventually(t, time.Minute, "study delivered through the tunnel", func() (bool, string) {
		for _, u := range c.uids {
			if _, ok := rc.sum(u); !ok {
				return false, "missing " + u
			}
		}
		return true, ""
	})
	for i, f := range c.files {
		_, want := dataSetSumFile(t, f)
		if got, _ := rc.sum(c.uids[i]); got != want {
			t.Fatalf("%s changed on the way", f)
		}
	}
	ctx := context.Background()
	st, _ := b.client.Status(ctx)
	if st.Tunnel.State != "up" || st.Tunnel.HandshakeAge == "" || st.Tunnel.TxBytes == 0 || st.Tunnel.PublicKey != boxKey.PublicKey().String() {
		t.Fatalf("tunnel status %+v", st.Tunnel)
	}
	res, err := b.client.Echo(ctx, controlEcho("center"))
	if err != nil || !res.OK {
		t.Fatalf("echo through the tunnel: %+v %v", res, err)
	}
}

// TestNetstackEchoReachesTheLAN (issue 11, #7): in netstack mode, a
// modality on the hospital LAN (a real storescp on loopback) answers an
// echo directly, by address and by name, while the reading center is still
// reached through the tunnel.
func TestNetstackEchoReachesTheLAN(t *testing.T) {
	peers.Require(t, "storescp")
	dir := t.TempDir()
	_, tunnel, _ := startNetstackCenter(t, dir)
	scp := peers.FreePort(t)
	peers.Start(t, "storescp", "-aet", "LANSCP", "-od", t.TempDir(), strconv.Itoa(scp))
	peers.WaitForPort(t, scp)
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Modalities[1].Port = scp // CT1 at 127.0.0.1
	cfg.Tunnel = tunnel
	cfg.Destinations = []config.Destination{{Name: "center", AETitle: "CENTER", Host: "10.9.0.1", Port: 104},
		{Name: "lan", AETitle: "LANSCP", Host: "localhost", Port: scp}}
	b := startBox(t, cfg, boxOptions{dir: dir})
	ctx := context.Background()
	peers.Eventually(t, time.Minute, "tunnel up", func() (bool, string) {
		st, err := b.client.Status(ctx)
		return err == nil && st.Tunnel.State == "up", fmt.Sprintf("%+v %v", st.Tunnel, err)
	})
	for _, req := range []control.EchoRequest{{Modality: "CT1"}, {Destination: "lan"}, {Destination: "center"}} {
		res, err := b.client.Echo(ctx, req)
		if err != nil || !res.OK {
			t.Errorf("echo %+v: %+v %v", req, res, err)
		}
	}
	// A destination by address outside the tunnel is allowed, with a warning.
	cfg.Destinations = append(cfg.Destinations, config.Destination{Name: "lanip", AETitle: "LANSCP", Host: "127.0.0.1", Port: scp})
	if err := b.client.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	evs, _ := b.client.Events(ctx, controlQuery("config"))
	if !slices.ContainsFunc(evs, func(e control.Event) bool {
		return e.Severity == "warning" && strings.Contains(e.Message, "destinations[2].host: 127.0.0.1 is outside the tunnel's networks")
	}) {
		t.Errorf("no warning about a destination outside the tunnel: %+v", evs)
	}
}

func TestThroughTunnelOnlyForAllowedNetworks(t *testing.T) {
	allowed := []netip.Prefix{netip.MustParsePrefix("10.8.0.0/24"), netip.MustParsePrefix("fd00:8::/64")}
	ip := netip.MustParseAddr
	for _, c := range []struct {
		name   string
		ips    []netip.Addr
		want   netip.Addr
		tunnel bool
	}{
		{"reading center", []netip.Addr{ip("10.8.0.1")}, ip("10.8.0.1"), true},
		{"modality on the LAN", []netip.Addr{ip("192.168.1.20")}, netip.Addr{}, false},
		{"loopback", []netip.Addr{ip("127.0.0.1")}, netip.Addr{}, false},
		{"next network", []netip.Addr{ip("10.8.1.1")}, netip.Addr{}, false},
		{"IPv6 inside", []netip.Addr{ip("fd00:8::1")}, ip("fd00:8::1"), true},
		{"IPv4-mapped", []netip.Addr{ip("::ffff:10.8.0.9")}, ip("10.8.0.9"), true},
		{"name: the address inside wins", []netip.Addr{ip("2001:db8::1"), ip("10.8.0.5")}, ip("10.8.0.5"), true},
		{"name: none inside", []netip.Addr{ip("2001:db8::1"), ip("192.168.1.20")}, netip.Addr{}, false},
		{"link-local with a zone", []netip.Addr{ip("fe80::1%eth0")}, netip.Addr{}, false},
		{"nothing resolved", nil, netip.Addr{}, false},
	} {
		got, tunnel := throughTunnel(allowed, c.ips)
		if got != c.want || tunnel != c.tunnel {
			t.Errorf("%s: got %v %v, want %v %v", c.name, got, tunnel, c.want, c.tunnel)
		}
	}
	if _, tunnel := throughTunnel(nil, []netip.Addr{ip("10.8.0.1")}); tunnel {
		t.Error("no allowed networks: went through the tunnel")
	}
}

// TestTunnelImportExportKeepsSecretsOnTheBox imports a wg-quick file like
// the regional team's and exports it back without secrets.
func TestTunnelImportExportKeepsSecretsOnTheBox(t *testing.T) {
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.Tunnel.Mode = "off" // kept by the import: nothing is brought up on this host
	b := startBox(t, cfg, boxOptions{})
	ctx := context.Background()
	peerKey, _ := vpn.GenerateSecretKey()
	foreign, _ := vpn.GenerateSecretKey()
	var conf strings.Builder
	vc := vpn.Config{Address: netip.MustParsePrefix("10.8.0.7/24"), Peer: vpn.Peer{PublicKey: peerKey.PublicKey(),
		Endpoint: "192.0.2.1:51820", AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.8.0.0/24")}, PersistentKeepalive: 25 * time.Second}}
	psk, _ := vpn.GenerateSecretKey()
	vc.Peer.PresharedKey = &psk
	vc.WriteWGQuick(&conf, &foreign)
	r, err := b.client.ImportTunnel(ctx, conf.String())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Warning, "PrivateKey was ignored") {
		t.Errorf("no warning about the foreign private key: %q", r.Warning)
	}
	info, err := b.client.Tunnel(ctx)
	if err != nil || info.Config.Address != "10.8.0.7/24" || info.Config.PeerPublicKey != peerKey.PublicKey().String() ||
		info.Config.KeepaliveSeconds != 25 || info.Config.Endpoint != "192.0.2.1:51820" || info.Config.Mode != "off" || info.Status.State != "not configured" {
		t.Fatalf("imported %+v %v", info.Config, err)
	}
	if k, err := vpn.LoadPresharedKey(filepath.Join(b.dir, keyDir)); err != nil || k == nil || *k != psk {
		t.Fatalf("preshared key not kept: %v", err)
	}
	out, err := b.client.ExportTunnel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "PrivateKey =") || strings.Contains(out, "PresharedKey =") || !strings.Contains(out, peerKey.PublicKey().String()) {
		t.Fatalf("export:\n%s", out)
	}
}
