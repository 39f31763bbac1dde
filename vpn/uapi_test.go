package vpn

import (
	"encoding/hex"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"
)

func TestUAPIRendering(t *testing.T) {
	priv, peer, psk := mustKey(t), mustKey(t), mustKey(t)
	cfg := Config{Address: testAddrA, ListenPort: 51820, Peer: Peer{
		PublicKey: peer.PublicKey(), PresharedKey: &psk,
		AllowedIPs:          []netip.Prefix{netip.MustParsePrefix("10.213.0.2/32"), netip.MustParsePrefix("10.20.1.7/16")},
		PersistentKeepalive: 25 * time.Second,
	}}
	ep := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 51821}
	hexOf := func(b []byte) string { return hex.EncodeToString(b) }
	pub := peer.PublicKey()
	want := "private_key=" + hexOf(priv.b[:]) + "\n" +
		"listen_port=51820\n" +
		"replace_peers=true\n" +
		"public_key=" + hexOf(pub[:]) + "\n" +
		"preshared_key=" + hexOf(psk.b[:]) + "\n" +
		"endpoint=192.0.2.1:51821\n" +
		"persistent_keepalive_interval=25\n" +
		"replace_allowed_ips=true\n" +
		"allowed_ip=10.213.0.2/32\n" +
		"allowed_ip=10.20.0.0/16\n"
	if got := uapiConfig(cfg.wgConfig(priv, ep)); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	want = "public_key=" + hexOf(pub[:]) + "\nupdate_only=true\nendpoint=192.0.2.1:51821\n"
	if got := uapiConfig(cfg.endpointUpdate(ep)); got != want {
		t.Fatalf("endpoint update: got\n%s\nwant\n%s", got, want)
	}
}

// TestUAPIAcceptedByWireGuardGo: a netstack device takes the rendered
// configuration, and its own answer reads back as our status.
func TestUAPIAcceptedByWireGuardGo(t *testing.T) {
	priv, peer := mustKey(t), mustKey(t)
	cfg, _ := pairConfigs(ModeNetstack, priv, peer, nil, "127.0.0.1:9")
	tdev, _, err := netstack.CreateNetTUN([]netip.Addr{cfg.Address.Addr()}, nil, DefaultMTU)
	if err != nil {
		t.Fatal(err)
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	defer dev.Close()
	if err := dev.IpcSet(uapiConfig(cfg.wgConfig(priv, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}))); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	text, err := dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"allowed_ip=10.213.0.2/32", "persistent_keepalive_interval=25", "endpoint=127.0.0.1:9"} {
		if !strings.Contains(text, want) {
			t.Errorf("device configuration lacks %s", want)
		}
	}
	st, err := parseUAPIStats(text, peer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if st.Endpoint != "127.0.0.1:9" || st.ListenPort == 0 || !st.LastHandshake.IsZero() {
		t.Fatalf("stats %+v", st)
	}
}

func TestParseUAPIStats(t *testing.T) {
	peer, other := mustKey(t).PublicKey(), mustKey(t).PublicKey()
	text := "private_key=" + strings.Repeat("ab", 32) + "\nlisten_port=51820\n" +
		"public_key=" + hex.EncodeToString(other[:]) + "\nrx_bytes=1\ntx_bytes=1\nlast_handshake_time_sec=1\n" +
		"public_key=" + hex.EncodeToString(peer[:]) + "\nendpoint=192.0.2.1:51821\n" +
		"last_handshake_time_sec=1795000000\nlast_handshake_time_nsec=5\nrx_bytes=1234\ntx_bytes=5678\nerrno=0\n"
	st, err := parseUAPIStats(text, peer)
	if err != nil {
		t.Fatal(err)
	}
	want := deviceStats{ListenPort: 51820, Endpoint: "192.0.2.1:51821", LastHandshake: time.Unix(1795000000, 5), RxBytes: 1234, TxBytes: 5678}
	if st != want {
		t.Fatalf("got %+v, want %+v", st, want)
	}
	if _, err := parseUAPIStats("public_key="+hex.EncodeToString(peer[:])+"\nrx_bytes=x\n", peer); err == nil {
		t.Fatal("bad counter accepted")
	}
}
