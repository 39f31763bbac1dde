package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/vpn"
	"github.com/spf13/cobra"
)

// keysCommand shows the box's WireGuard public key, as text and as a QR
// code, for the regional team to register at the reading center.
func keysCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "keys",
		Short: "this box's WireGuard public key, with a QR code",
		Args:  positional(),
		RunE: e.api(func(ctx context.Context, c *control.Client, _ []string) error {
			t, err := c.Tunnel(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.out, "This box's WireGuard public key:\n\n    %s\n\n", t.Status.PublicKey)
			qr, err := vpn.QR(t.Status.PublicKey)
			if err != nil {
				return err
			}
			fmt.Fprint(e.out, qr)
			return nil
		}),
	}
}

// tunnelCommand shows, imports or exports the tunnel's configuration.
func tunnelCommand(e *env) *cobra.Command {
	show := e.api(func(ctx context.Context, c *control.Client, _ []string) error { return showTunnel(ctx, e.out, c) })
	cmd := &cobra.Command{
		Use:   "tunnel",
		Short: "the tunnel to the reading center: show (the default), import FILE, export",
		Args:  subcommands,
		RunE:  show,
	}
	var withKey bool
	export := &cobra.Command{
		Use:   "export [-with-private-key]",
		Short: "the tunnel as a wg-quick file; secrets only when asked, on the box",
		Args:  positional(),
		RunE: e.api(func(ctx context.Context, c *control.Client, _ []string) error {
			return exportTunnel(ctx, e.out, c, e.data, withKey)
		}),
	}
	export.Flags().BoolVar(&withKey, "with-private-key", false, "include the box's private and preshared keys (read here, on the box)")
	cmd.AddCommand(&cobra.Command{
		Use:   "show",
		Short: "the tunnel's configuration and state",
		Args:  positional(),
		RunE:  show,
	}, &cobra.Command{
		Use:   "import FILE",
		Short: "take the reading center's wg-quick file (a private key in it is ignored)",
		Args:  positional("FILE"),
		RunE: e.api(func(ctx context.Context, c *control.Client, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			r, err := c.ImportTunnel(ctx, string(b))
			if err != nil {
				return err
			}
			if r.Warning != "" {
				fmt.Fprintln(e.out, "note:", r.Warning)
			}
			fmt.Fprintln(e.out, "tunnel configuration imported and applied")
			return nil
		}),
	}, export)
	return cmd
}

func showTunnel(ctx context.Context, w io.Writer, c *control.Client) error {
	t, err := c.Tunnel(ctx)
	if err != nil {
		return err
	}
	s := t.Status
	fmt.Fprintf(w, "tunnel: %s", s.State)
	if s.Mode != "" {
		fmt.Fprintf(w, " (%s mode)", s.Mode)
	}
	fmt.Fprintln(w)
	if s.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", s.Error)
	}
	fmt.Fprintf(w, "  our public key: %s\n  our address:    %s\n  peer:           %s at %s\n  allowed IPs:    %v\n",
		s.PublicKey, t.Config.Address, t.Config.PeerPublicKey, t.Config.Endpoint, t.Config.AllowedIPs)
	if s.HandshakeAge != "" {
		fmt.Fprintf(w, "  last handshake: %s ago, received %d B, sent %d B\n", s.HandshakeAge, s.RxBytes, s.TxBytes)
	}
	return nil
}

// exportTunnel writes the tunnel as a wg-quick file; with the keys only
// when asked for, on the box itself: the key files are read here, never
// sent through the API.
func exportTunnel(ctx context.Context, w io.Writer, c *control.Client, dataDir string, withKey bool) error {
	text, err := c.ExportTunnel(ctx)
	if err != nil {
		return err
	}
	if withKey {
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
	fmt.Fprint(w, text)
	return nil
}
