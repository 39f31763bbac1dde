package vpn

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// wgQuickIgnored are wg-quick keys that mean nothing on the box (it runs no
// scripts and sets no DNS); they are accepted and dropped on import.
var wgQuickIgnored = map[string]bool{
	"dns": true, "table": true, "saveconfig": true, "fwmark": true,
	"preup": true, "postup": true, "predown": true, "postdown": true,
}

// ParseWGQuick reads a wg-quick .conf file ([Interface] and one [Peer]),
// the format the regional team uses. Keys are case-insensitive, '#' starts
// a comment, and AllowedIPs may be repeated. The interface's private key,
// when the file has one, is returned apart (nil otherwise); Mode and
// Interface are left empty (wg-quick names the interface after the file).
// Errors name the line, never a key's value.
func ParseWGQuick(r io.Reader) (Config, *SecretKey, error) {
	var (
		c       Config
		priv    *SecretKey
		section string
		peers   int
		sc      = bufio.NewScanner(r)
		lineNo  int
		fail    = func(format string, args ...any) error {
			return fmt.Errorf("wg-quick line %d: %s", lineNo, fmt.Sprintf(format, args...))
		}
	)
	for sc.Scan() {
		lineNo++
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.ToLower(strings.TrimSpace(line[1 : len(line)-1]))
			switch section {
			case "interface":
			case "peer":
				if peers++; peers > 1 {
					return Config{}, nil, fail("more than one [Peer]: the box has one peer, the reading center")
				}
			default:
				return Config{}, nil, fail("unknown section [%s]", section)
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return Config{}, nil, fail("want Key = Value")
		}
		key, value := strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		var err error
		switch section + "." + key {
		case "interface.privatekey":
			var sk SecretKey
			sk, err = ParseSecretKey(value)
			priv = &sk
		case "interface.address":
			for _, s := range splitList(value) {
				if c.Address.IsValid() {
					return Config{}, nil, fail("more than one Address: the box takes one tunnel address")
				}
				c.Address, err = parsePrefix(s)
			}
		case "interface.listenport":
			c.ListenPort, err = strconv.Atoi(value)
		case "interface.mtu":
			c.MTU, err = strconv.Atoi(value)
		case "peer.publickey":
			c.Peer.PublicKey, err = ParseKey(value)
		case "peer.presharedkey":
			var sk SecretKey
			sk, err = ParseSecretKey(value)
			c.Peer.PresharedKey = &sk
		case "peer.endpoint":
			c.Peer.Endpoint = value
		case "peer.allowedips":
			for _, s := range splitList(value) {
				var p netip.Prefix
				if p, err = parsePrefix(s); err != nil {
					break
				}
				c.Peer.AllowedIPs = append(c.Peer.AllowedIPs, p)
			}
		case "peer.persistentkeepalive":
			if value != "off" {
				var n int
				n, err = strconv.Atoi(value)
				c.Peer.PersistentKeepalive = time.Duration(n) * time.Second
			}
		default:
			if section == "" {
				return Config{}, nil, fail("%s before [Interface] or [Peer]", k)
			}
			if section != "interface" || !wgQuickIgnored[key] {
				return Config{}, nil, fail("unknown key %s in [%s]", strings.TrimSpace(k), section)
			}
		}
		if err != nil {
			return Config{}, nil, fail("%s: %v", strings.TrimSpace(k), err)
		}
	}
	if err := sc.Err(); err != nil {
		return Config{}, nil, fmt.Errorf("wg-quick: %w", err)
	}
	if peers == 0 {
		return Config{}, nil, errors.New("wg-quick: no [Peer]")
	}
	return c, priv, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parsePrefix takes "10.8.0.2/24", or a bare address as a single host, as
// wg-quick does.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// WriteWGQuick writes the configuration as a wg-quick .conf file. Secrets
// are left out unless private is non-nil: only then are the private key
// (private) and the preshared key written. Pass the box's key only on the
// box itself, when the technician asked for it explicitly.
func (c Config) WriteWGQuick(w io.Writer, private *SecretKey) error {
	var b strings.Builder
	b.WriteString("[Interface]\n")
	if private != nil {
		fmt.Fprintf(&b, "PrivateKey = %s\n", private.base64())
	} else {
		b.WriteString("# PrivateKey stays on the box.\n")
	}
	fmt.Fprintf(&b, "Address = %s\n", c.Address)
	if c.ListenPort != 0 {
		fmt.Fprintf(&b, "ListenPort = %d\n", c.ListenPort)
	}
	if c.MTU != 0 {
		fmt.Fprintf(&b, "MTU = %d\n", c.MTU)
	}
	b.WriteString("\n[Peer]\n")
	fmt.Fprintf(&b, "PublicKey = %s\n", c.Peer.PublicKey)
	switch {
	case c.Peer.PresharedKey != nil && private != nil:
		fmt.Fprintf(&b, "PresharedKey = %s\n", c.Peer.PresharedKey.base64())
	case c.Peer.PresharedKey != nil:
		b.WriteString("# PresharedKey set, not shown.\n")
	}
	if c.Peer.Endpoint != "" {
		fmt.Fprintf(&b, "Endpoint = %s\n", c.Peer.Endpoint)
	}
	ips := make([]string, len(c.Peer.AllowedIPs))
	for i, p := range c.Peer.AllowedIPs {
		ips[i] = p.String()
	}
	fmt.Fprintf(&b, "AllowedIPs = %s\n", strings.Join(ips, ", "))
	if c.Peer.PersistentKeepalive > 0 {
		fmt.Fprintf(&b, "PersistentKeepalive = %d\n", int(c.Peer.PersistentKeepalive/time.Second))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
