package tui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
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
		b.WriteString("This box's public key: none yet (relaisd makes one at its first start)\n")
	} else {
		b.WriteString("This box's public key: " + m.st.key.Render(t.PublicKey) + "\n")
	}
	label := func(l string) string { return m.st.label.Render(pad(l, 7)) }
	var info []string
	if m.setup.wizard > 0 {
		info = append(info, m.st.title.Render(m.wizardTitle("the tunnel")))
	}
	s := m.setup
	mode := "asking relaisd…"
	if s.haveSettings {
		mode = tunnelModes[s.tunnel.Mode]
		if mode == "" {
			mode = s.tunnel.Mode
		}
	}
	if t.Mode != "" {
		mode += ", runs " + t.Mode
	}
	info = append(info, label("Mode")+mode, label("State")+t.State)
	if t.HandshakeAge != "" {
		info = append(info, "last handshake "+t.HandshakeAge+" ago")
	}
	if t.Endpoint != "" {
		info = append(info, "endpoint "+t.Endpoint)
	}
	if t.State != "not configured" {
		info = append(info, fmt.Sprintf("received %s, sent %s", size(t.RxBytes), size(t.TxBytes)))
	}
	info = append(info, "", m.st.label.Render("Reading center"))
	switch {
	case !s.haveSettings:
		info = append(info, "asking relaisd…")
	case s.settingsErr != nil && strings.Contains(s.settingsErr.Error(), "/v1/tunnel"):
		info = append(info, describe(s.settingsErr))
	default:
		info = append(info, "key "+short(s.tunnel.PeerPublicKey), "endpoint "+orNotSet(s.tunnel.PeerEndpoint),
			"our address "+orNotSet(s.tunnel.Address), "through it "+orNotSet(strings.Join(s.tunnel.AllowedIPs, ", ")))
	}
	info = append(info, "", "The regional team registers this box's key (the QR code or the line above) and sends a wg-quick file back:",
		m.st.key.Render("p")+" paste its text", m.st.key.Render("i")+" import it from a file on the box", m.st.key.Render("e")+" type the values in")
	if m.setup.wizard > 0 {
		info = append(info, m.st.key.Render("n")+" skip this step")
	}
	left := ""
	if t.PublicKey != "" {
		if qr, err := vpn.QR(t.PublicKey); err == nil {
			left = trimQuiet(strings.TrimRight(qr, "\n"), m.bodyHeight()-1)
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

// tunnelModes say what each configured mode means.
var tunnelModes = map[string]string{
	"":          "auto (kernel, else embedded)",
	"auto":      "auto (kernel, else embedded)",
	"kernel":    "kernel WireGuard",
	"userspace": "embedded (a TUN device)",
	"netstack":  "netstack (no privileges: tests)",
	"off":       "off (kept down)",
}

// trimQuiet drops rows of a QR code's quiet zone, as evenly as it can and
// at most one row (two modules) from each side, until it fits in rows:
// cut anywhere else the code would not scan.
func trimQuiet(qr string, rows int) string {
	lines := strings.Split(qr, "\n")
	for cut := 0; len(lines) > rows && cut < 2; cut++ {
		if cut%2 == 0 {
			lines = lines[1:]
		} else {
			lines = lines[:len(lines)-1]
		}
	}
	return strings.Join(lines, "\n")
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
	return m.tunnelFormFrom(wgQuick{TunnelSettings: t})
}

// tunnelFormFrom fills the tunnel form with w's values; once they are
// confirmed, a preshared key w held goes to relaisd first, which keeps it.
func (m *Model) tunnelFormFrom(w wgQuick) tea.Cmd {
	cur, t := m.setup.tunnel, w.TunnelSettings
	key, endpoint, addr, allowed, keepalive := t.PeerPublicKey, t.PeerEndpoint, t.Address, strings.Join(t.AllowedIPs, ", "), strconv.Itoa(t.KeepaliveSeconds)
	values := func() TunnelSettings {
		// Mode and listen port are kept as they are.
		return TunnelSettings{PeerPublicKey: strings.TrimSpace(key), PeerEndpoint: strings.TrimSpace(endpoint), Address: strings.TrimSpace(addr),
			AllowedIPs: splitList(allowed), KeepaliveSeconds: atoi(keepalive), Mode: cur.Mode, ListenPort: cur.ListenPort}
	}
	return m.confirmedPages("Tunnel to the reading center", []*huh.Group{huh.NewGroup(
		input("Reading center's public key", "paste it: 44 characters ending in =", &key, checkKey),
		input("Reading center's endpoint", "host:port, for example vpn.example.org:51820", &endpoint, checkEndpoint),
		input("Our address in the tunnel", "with its network, for example 10.8.0.2/24", &addr, checkPrefix),
		input("Networks through the tunnel", "comma-separated, for example 10.8.0.0/24", &allowed, checkList(checkPrefix)),
		input("Keepalive (seconds)", "25 keeps NAT open; 0 is off", &keepalive, checkInt(0, 65535, "seconds")),
	)}, func() bool { return w.preshared == "" && reflect.DeepEqual(values(), cur) }, func() tea.Cmd {
		out := values()
		return m.act("tunnel settings: saved and applied", false, func(ctx context.Context) error {
			if w.preshared != "" {
				if err := m.settings.ImportTunnel(ctx, w.preshared); err != nil {
					return err
				}
			}
			return m.settings.SetTunnel(ctx, out)
		})
	})
}

// importForm reads a wg-quick file the regional team sent, from a path on
// the box; pasteForm takes its text. Either way its values then fill the
// tunnel form to be checked and confirmed.
func (m *Model) importForm() tea.Cmd {
	var path string
	return m.openForm("Import a wg-quick file", []*huh.Group{huh.NewGroup(
		input("File", "the path of the .conf file, for example /perm/center.conf", &path, func(s string) error {
			_, err := readWGQuick(s)
			return err
		}),
	)}, func() tea.Cmd { return m.importedTunnel(readWGQuick(path)) })
}

// pasteForm takes the text of the wg-quick file the regional team sent,
// pasted into the terminal: a file is rarely at hand on the box. Its keys
// are taken out of the paste before it is shown (see withoutSecrets).
func (m *Model) pasteForm() tea.Cmd {
	var (
		text, psk string
		private   bool
	)
	cmd := m.openForm("Paste the wg-quick file the regional team sent", []*huh.Group{huh.NewGroup(
		huh.NewText().Title("Its text").
			Description("[Interface] and [Peer], as sent; then Enter. A PrivateKey in it is ignored: this box keeps its own.").
			Lines(10).CharLimit(maxWGQuick).ExternalEditor(false).Value(&text).Validate(func(s string) error {
			if strings.TrimSpace(s) == "" {
				return errors.New("nothing pasted yet: paste the file's text (esc goes back)")
			}
			_, err := takeWGQuick(s, false, "")
			return err
		}),
	)}, func() tea.Cmd {
		shown, p, k := withoutSecrets(text) // keys typed rather than pasted
		if k == "" {
			k = psk
		}
		return m.importedTunnel(takeWGQuick(shown, private || p, k))
	})
	m.form.paste = func(s string) string {
		s, p, k := withoutSecrets(s)
		private = private || p
		if k != "" {
			psk = k
		}
		return s
	}
	return cmd
}

// maxWGQuick bounds a wg-quick file's text: a few hundred bytes as sent.
const maxWGQuick = 8192

// importedTunnel fills the tunnel form with what a wg-quick file says,
// and says what became of its keys.
func (m *Model) importedTunnel(w wgQuick, err error) tea.Cmd {
	if err != nil {
		return func() tea.Msg { return doneMsg{err: err} }
	}
	cmd := m.tunnelFormFrom(w)
	var notes []string
	if w.privateKey {
		notes = append(notes, "the file's PrivateKey was ignored: this box keeps its own")
	}
	if w.preshared != "" {
		notes = append(notes, "its PresharedKey is not shown; relaisd keeps it")
	}
	if len(notes) > 0 {
		m.notice = m.st.warning.Render(strings.Join(notes, "\n"))
	}
	return cmd
}

// wgQuick is what the console takes of a wg-quick file.
type wgQuick struct {
	TunnelSettings
	privateKey bool // the file had one, ignored
	// preshared is the file's text with its PresharedKey (and without a
	// PrivateKey), for relaisd to keep the key; "" when it has none.
	preshared string
}

func readWGQuick(path string) (wgQuick, error) {
	f, err := os.Open(strings.TrimSpace(path))
	if err != nil {
		return wgQuick{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxWGQuick+1))
	if err != nil {
		return wgQuick{}, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxWGQuick {
		return wgQuick{}, fmt.Errorf("%s is over %d bytes: not a wg-quick file", path, maxWGQuick)
	}
	return takeWGQuick(withoutSecrets(string(b)))
}

// Lines withoutSecrets puts in place of a wg-quick file's keys: comments.
const (
	privateTakenOut = "# PrivateKey taken out: this box keeps its own"
	presharedKept   = "# PresharedKey kept aside, not shown"
)

// withoutSecrets takes a wg-quick text's keys out of it before the console
// shows or keeps it: a PrivateKey line goes (private says there was one);
// a PresharedKey line is handed back apart (psk) for relaisd.
func withoutSecrets(text string) (shown string, private bool, psk string) {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		k, _, ok := strings.Cut(l, "=")
		switch k = strings.TrimSpace(k); {
		case ok && strings.EqualFold(k, "PrivateKey"):
			lines[i], private = privateTakenOut, true
		case ok && strings.EqualFold(k, "PresharedKey"):
			lines[i], psk = presharedKept, strings.TrimSpace(l)
		}
	}
	return strings.Join(lines, "\n"), private, psk
}

// takeWGQuick reads wg-quick text as withoutSecrets left it.
func takeWGQuick(shown string, private bool, psk string) (wgQuick, error) {
	c, priv, err := vpn.ParseWGQuick(strings.NewReader(shown))
	if err != nil {
		return wgQuick{}, err
	}
	w := wgQuick{privateKey: private || priv != nil}
	if psk != "" {
		w.preshared = strings.Replace(shown, presharedKept, psk, 1)
	}
	w.PeerEndpoint, w.KeepaliveSeconds = c.Peer.Endpoint, int(c.Peer.PersistentKeepalive/time.Second)
	if !c.Peer.PublicKey.IsZero() {
		w.PeerPublicKey = c.Peer.PublicKey.String()
	}
	if c.Address.IsValid() {
		w.Address = c.Address.String()
	}
	for _, p := range c.Peer.AllowedIPs {
		w.AllowedIPs = append(w.AllowedIPs, p.String())
	}
	return w, nil
}
