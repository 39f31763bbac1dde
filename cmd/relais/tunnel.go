package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/vpn"
)

// keys shows the box's WireGuard public key, as text and as a QR code, for
// the regional team to register at the reading center.
func keys(ctx context.Context, c *control.Client) error {
	t, err := c.Tunnel(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("This box's WireGuard public key:\n\n    %s\n\n", t.Status.PublicKey)
	qr, err := vpn.QR(t.Status.PublicKey)
	if err != nil {
		return err
	}
	fmt.Print(qr)
	return nil
}

// tunnel shows, imports or exports the tunnel's configuration.
func tunnel(ctx context.Context, c *control.Client, dataDir string, args []string) error {
	if len(args) == 0 || args[0] == "show" {
		t, err := c.Tunnel(ctx)
		if err != nil {
			return err
		}
		s := t.Status
		fmt.Printf("tunnel: %s", s.State)
		if s.Mode != "" {
			fmt.Printf(" (%s mode)", s.Mode)
		}
		fmt.Println()
		if s.Error != "" {
			fmt.Printf("  error: %s\n", s.Error)
		}
		fmt.Printf("  our public key: %s\n  our address:    %s\n  peer:           %s at %s\n  allowed IPs:    %v\n",
			s.PublicKey, t.Config.Address, t.Config.PeerPublicKey, t.Config.Endpoint, t.Config.AllowedIPs)
		if s.HandshakeAge != "" {
			fmt.Printf("  last handshake: %s ago, received %d B, sent %d B\n", s.HandshakeAge, s.RxBytes, s.TxBytes)
		}
		return nil
	}
	switch args[0] {
	case "import":
		if err := need(args, 2, "wg-quick file"); err != nil {
			return err
		}
		b, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		r, err := c.ImportTunnel(ctx, string(b))
		if err != nil {
			return err
		}
		if r.Warning != "" {
			fmt.Println("note:", r.Warning)
		}
		fmt.Println("tunnel configuration imported and applied")
	case "export":
		text, err := c.ExportTunnel(ctx)
		if err != nil {
			return err
		}
		if len(args) > 1 && args[1] == "-with-private-key" {
			// Asked for explicitly, on the box itself: the key file is read
			// here, never sent through the API.
			dir := filepath.Join(dataDir, "wireguard")
			key, err := vpn.LoadOrCreateKey(dir)
			if err != nil {
				return err
			}
			cfg, _, err := vpn.ParseWGQuick(strings.NewReader(text))
			if err != nil {
				return err
			}
			if cfg.Peer.PresharedKey, err = vpn.LoadPresharedKey(dir); err != nil {
				return err
			}
			var b strings.Builder
			if err := cfg.WriteWGQuick(&b, &key); err != nil {
				return err
			}
			text = b.String()
		}
		fmt.Print(text)
	default:
		usage()
	}
	return nil
}
