package tui

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/huh/v2"
	"charm.land/lipgloss/v2"
	"github.com/relais/relais/vpn"
)

// The tunnel's page: our public key and its QR code for the regional team,
// the tunnel's state, and the reading center's side, which the technician
// pastes or imports from a wg-quick file.

func (m *Model) tunnelView() string {
	t := m.status.Tunnel
	var b strings.Builder
	if t.PublicKey == "" {
		b.WriteString("Our public key: none yet (relaisd makes one when the tunnel is first set up)\n")
	} else {
		b.WriteString("Our public key: " + m.st.key.Render(t.PublicKey) + "\n")
	}
	info := []string{
		m.st.label.Render("State ") + t.State,
	}
	if t.HandshakeAge != "" {
		info = append(info, "last handshake "+t.HandshakeAge+" ago")
	}
	if t.Endpoint != "" {
		info = append(info, "endpoint "+t.Endpoint)
	}
	info = append(info, fmt.Sprintf("received %s, sent %s", size(t.RxBytes), size(t.TxBytes)), "")
	info = append(info, m.st.label.Render("Reading center"))
	s := m.setup
	switch {
	case !s.haveSettings:
		info = append(info, "asking relaisd…")
	case s.settingsErr != nil && strings.Contains(s.settingsErr.Error(), "/v1/tunnel"):
		info = append(info, describe(s.settingsErr))
	default:
		info = append(info, "key "+short(s.tunnel.PeerPublicKey), "endpoint "+orNotSet(s.tunnel.PeerEndpoint),
			"our address "+orNotSet(s.tunnel.Address), "through it "+orNotSet(strings.Join(s.tunnel.AllowedIPs, ", ")))
	}
	left := ""
	if t.PublicKey != "" {
		if qr, err := vpn.QR(t.PublicKey); err == nil {
			left = strings.TrimRight(qr, "\n")
		}
	}
	right := lipgloss.NewStyle().Width(m.width - lipgloss.Width(left) - 2).Render(strings.Join(info, "\n"))
	if left == "" {
		b.WriteString(right)
	} else {
		b.WriteString(lipgloss.JoinHorizontal(lipgloss.Top, left, "  ", right))
	}
	return b.String()
}

// short shows the start of a key.
func short(k string) string {
	if len(k) > 12 {
		return k[:12] + "…"
	}
	return orNotSet(k)
}

func orNotSet(s string) string {
	if s == "" {
		return "not set"
	}
	return s
}

func (m *Model) tunnelForm() tea.Cmd {
	t := m.setup.tunnel
	if len(t.AllowedIPs) == 0 {
		t.AllowedIPs = []string{"10.8.0.0/24"}
	}
	if t.KeepaliveSeconds == 0 {
		t.KeepaliveSeconds = 25
	}
	return m.tunnelFormWith(t)
}

func (m *Model) tunnelFormWith(t TunnelSettings) tea.Cmd {
	kept := t // mode and listen port
	key, endpoint, addr, allowed, keepalive := t.PeerPublicKey, t.PeerEndpoint, t.Address, strings.Join(t.AllowedIPs, ", "), strconv.Itoa(t.KeepaliveSeconds)
	return m.confirmed("Tunnel to the reading center", []huh.Field{
		input("Reading center's public key", "paste it: 44 characters ending in =", &key, checkKey),
		input("Reading center's endpoint", "host:port, for example vpn.example.org:51820", &endpoint, checkEndpoint),
		input("Our address in the tunnel", "with its network, for example 10.8.0.2/24", &addr, checkPrefix),
		input("Networks through the tunnel", "comma-separated, for example 10.8.0.0/24", &allowed, checkList(checkPrefix)),
		input("Keepalive (seconds)", "25 keeps NAT open; 0 is off", &keepalive, checkInt(0, 65535, "seconds")),
	}, func() tea.Cmd {
		out := TunnelSettings{PeerPublicKey: strings.TrimSpace(key), PeerEndpoint: strings.TrimSpace(endpoint), Address: strings.TrimSpace(addr),
			AllowedIPs: splitList(allowed), KeepaliveSeconds: atoi(keepalive), Mode: kept.Mode, ListenPort: kept.ListenPort}
		return m.act("tunnel settings: saved and applied", false, func(ctx context.Context) error { return m.settings.SetTunnel(ctx, out) })
	})
}

// importForm reads a wg-quick file the regional team sent; its values
// then fill the tunnel form to be checked and confirmed. A private key in
// the file is ignored: ours never leaves the box.
func (m *Model) importForm() tea.Cmd {
	var path string
	return m.openForm("Import a wg-quick file", []*huh.Group{huh.NewGroup(
		input("File", "the path of the .conf file, for example /perm/center.conf", &path, func(s string) error {
			_, err := readWGQuick(s)
			return err
		}),
	)}, func() tea.Cmd {
		t, err := readWGQuick(path)
		if err != nil {
			return func() tea.Msg { return doneMsg{err: err} }
		}
		t.Mode, t.ListenPort = m.setup.tunnel.Mode, m.setup.tunnel.ListenPort
		return m.tunnelFormWith(t)
	})
}

func readWGQuick(path string) (TunnelSettings, error) {
	f, err := os.Open(strings.TrimSpace(path))
	if err != nil {
		return TunnelSettings{}, err
	}
	defer f.Close()
	c, _, err := vpn.ParseWGQuick(f)
	if err != nil {
		return TunnelSettings{}, err
	}
	t := TunnelSettings{PeerEndpoint: c.Peer.Endpoint, KeepaliveSeconds: int(c.Peer.PersistentKeepalive / time.Second)}
	if !c.Peer.PublicKey.IsZero() {
		t.PeerPublicKey = c.Peer.PublicKey.String()
	}
	if c.Address.IsValid() {
		t.Address = c.Address.String()
	}
	for _, p := range c.Peer.AllowedIPs {
		t.AllowedIPs = append(t.AllowedIPs, p.String())
	}
	return t, nil
}
