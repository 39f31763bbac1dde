package vpn

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// uapiConfig renders a device configuration as wireguard-go's UAPI "set"
// text, for IpcSet on a device wgctrl can't reach (netstack). The text holds
// keys: never log it.
func uapiConfig(cfg wgtypes.Config) string {
	var b strings.Builder
	if cfg.PrivateKey != nil {
		fmt.Fprintf(&b, "private_key=%s\n", hex.EncodeToString(cfg.PrivateKey[:]))
	}
	if cfg.ListenPort != nil {
		fmt.Fprintf(&b, "listen_port=%d\n", *cfg.ListenPort)
	}
	if cfg.FirewallMark != nil {
		fmt.Fprintf(&b, "fwmark=%d\n", *cfg.FirewallMark)
	}
	if cfg.ReplacePeers {
		b.WriteString("replace_peers=true\n")
	}
	for _, p := range cfg.Peers {
		fmt.Fprintf(&b, "public_key=%s\n", hex.EncodeToString(p.PublicKey[:]))
		if p.Remove {
			b.WriteString("remove=true\n")
			continue
		}
		if p.UpdateOnly {
			b.WriteString("update_only=true\n")
		}
		if p.PresharedKey != nil {
			fmt.Fprintf(&b, "preshared_key=%s\n", hex.EncodeToString(p.PresharedKey[:]))
		}
		if p.Endpoint != nil {
			fmt.Fprintf(&b, "endpoint=%s\n", p.Endpoint)
		}
		if p.PersistentKeepaliveInterval != nil {
			fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", int(p.PersistentKeepaliveInterval.Seconds()))
		}
		if p.ReplaceAllowedIPs {
			b.WriteString("replace_allowed_ips=true\n")
		}
		for _, ip := range p.AllowedIPs {
			fmt.Fprintf(&b, "allowed_ip=%s\n", ip.String())
		}
	}
	return b.String()
}

// deviceStats is what status needs of a device with one peer.
type deviceStats struct {
	ListenPort    int
	Endpoint      string // "" when the peer has none yet
	LastHandshake time.Time
	RxBytes       int64
	TxBytes       int64
}

// statsFromDevice reads a wgctrl device (kernel and userspace modes).
func statsFromDevice(d *wgtypes.Device, peer Key) deviceStats {
	s := deviceStats{ListenPort: d.ListenPort}
	for _, p := range d.Peers {
		if Key(p.PublicKey) != peer {
			continue
		}
		if p.Endpoint != nil {
			s.Endpoint = p.Endpoint.String()
		}
		s.LastHandshake, s.RxBytes, s.TxBytes = p.LastHandshakeTime, p.ReceiveBytes, p.TransmitBytes
	}
	return s
}

// parseUAPIStats reads wireguard-go's UAPI "get" answer (netstack mode).
// The answer holds the private key: it is skipped, never kept.
func parseUAPIStats(text string, peer Key) (deviceStats, error) {
	var s deviceStats
	var sec, nsec int64
	inPeer, ours := false, false
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		if key == "public_key" {
			inPeer = true
			k, err := hex.DecodeString(value)
			ours = err == nil && len(k) == 32 && Key(k) == peer
			continue
		}
		if !inPeer {
			if key == "listen_port" {
				s.ListenPort, _ = strconv.Atoi(value)
			}
			continue
		}
		if !ours {
			continue
		}
		var err error
		switch key {
		case "endpoint":
			s.Endpoint = value
		case "last_handshake_time_sec":
			sec, err = strconv.ParseInt(value, 10, 64)
		case "last_handshake_time_nsec":
			nsec, err = strconv.ParseInt(value, 10, 64)
		case "rx_bytes":
			s.RxBytes, err = strconv.ParseInt(value, 10, 64)
		case "tx_bytes":
			s.TxBytes, err = strconv.ParseInt(value, 10, 64)
		}
		if err != nil {
			return deviceStats{}, fmt.Errorf("uapi %s: %w", key, err)
		}
	}
	if sec != 0 || nsec != 0 {
		s.LastHandshake = time.Unix(sec, nsec)
	}
	return s, sc.Err()
}
