package vpn

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A file as the regional team writes them, with what the box ignores.
const regionalConf = `# Relais, CH Exemple -> reading center
[Interface]
PrivateKey = %PRIV%
Address = 10.8.0.12/24
ListenPort = 51820
DNS = 10.8.0.1
PostUp = iptables -A FORWARD -i %i -j ACCEPT

[Peer]
# reading center
publickey = %PUB%
PresharedKey = %PSK%
Endpoint = vpn.reading-center.example:51820
AllowedIPs = 10.8.0.1/32, 10.20.0.0/16
AllowedIPs = fd00:8::1
PersistentKeepalive = 25
`

func fillConf(conf string, priv, peer, psk SecretKey) string {
	return strings.NewReplacer("%PRIV%", priv.base64(), "%PUB%", peer.PublicKey().String(), "%PSK%", psk.base64()).Replace(conf)
}

func TestParseWGQuickRegionalFile(t *testing.T) {
	priv, peer, psk := mustKey(t), mustKey(t), mustKey(t)
	cfg, gotPriv, err := ParseWGQuick(strings.NewReader(fillConf(regionalConf, priv, peer, psk)))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Address: netip.MustParsePrefix("10.8.0.12/24"), ListenPort: 51820,
		Peer: Peer{
			PublicKey: peer.PublicKey(), PresharedKey: &psk, Endpoint: "vpn.reading-center.example:51820",
			AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.8.0.1/32"), netip.MustParsePrefix("10.20.0.0/16"),
				netip.MustParsePrefix("fd00:8::1/128")},
			PersistentKeepalive: 25 * time.Second,
		},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got %+v\nwant %+v", cfg, want)
	}
	if gotPriv == nil || gotPriv.PublicKey() != priv.PublicKey() {
		t.Fatal("private key not returned")
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestWGQuickRoundTrip(t *testing.T) {
	priv, peer, psk := mustKey(t), mustKey(t), mustKey(t)
	cfg, _, err := ParseWGQuick(strings.NewReader(fillConf(regionalConf, priv, peer, psk)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MTU = 1380
	var b strings.Builder
	if err := cfg.WriteWGQuick(&b, &priv); err != nil {
		t.Fatal(err)
	}
	back, backPriv, err := ParseWGQuick(strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("%v in\n%s", err, b.String())
	}
	if !reflect.DeepEqual(back, cfg) || backPriv == nil || backPriv.base64() != priv.base64() {
		t.Fatalf("round trip changed the configuration:\n%s\ngot %+v\nwant %+v", b.String(), back, cfg)
	}
}

func TestWGQuickExportLeavesSecretsOutByDefault(t *testing.T) {
	priv, peer, psk := mustKey(t), mustKey(t), mustKey(t)
	cfg, _, err := ParseWGQuick(strings.NewReader(fillConf(regionalConf, priv, peer, psk)))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := cfg.WriteWGQuick(&b, nil); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, secret := range []string{priv.base64(), psk.base64(), "PrivateKey =", "PresharedKey ="} {
		if strings.Contains(out, secret) {
			t.Fatalf("export without secrets contains %q:\n%s", secret, out)
		}
	}
	// What is left is still a usable file: wg-quick's, and ours.
	back, backPriv, err := ParseWGQuick(strings.NewReader(out))
	if err != nil || backPriv != nil || back.Peer.PublicKey != peer.PublicKey() || len(back.Peer.AllowedIPs) != 3 {
		t.Fatalf("export re-read: %v, private %v, %+v", err, backPriv != nil, back)
	}
}

func TestParseWGQuickErrors(t *testing.T) {
	priv := mustKey(t)
	for name, conf := range map[string]string{
		"two peers":         "[Interface]\nAddress = 10.0.0.2/24\n[Peer]\nPublicKey = " + priv.PublicKey().String() + "\n[Peer]\n",
		"no peer":           "[Interface]\nAddress = 10.0.0.2/24\n",
		"unknown key":       "[Interface]\nAdress = 10.0.0.2/24\n[Peer]\n",
		"key outside":       "Address = 10.0.0.2/24\n",
		"two addresses":     "[Interface]\nAddress = 10.0.0.2/24, fd00::2/64\n[Peer]\n",
		"bad allowed IP":    "[Peer]\nAllowedIPs = 10.0.0.300/32\n",
		"bad private key":   "[Interface]\nPrivateKey = " + priv.base64()[:20] + "\n[Peer]\n",
		"unknown section":   "[Peers]\n",
		"bad keepalive":     "[Peer]\nPersistentKeepalive = soon\n",
		"not key and value": "[Peer]\nAllowedIPs\n",
	} {
		_, _, err := ParseWGQuick(strings.NewReader(conf))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), priv.base64()[:20]) {
			t.Errorf("%s: error shows the key: %v", name, err)
		}
	}
}
