package vpn

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/jsimonetti/rtnetlink/v2"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// upKernel creates a wireguard link with rtnetlink, configures it with
// wgctrl, then sets the address, brings it up and adds the routes. A
// kernel without WireGuard answers EOPNOTSUPP: ErrKernelUnsupported. A
// wireguard link of the same name left behind by a crash is taken over.
func upKernel(cfg Config, wgcfg wgtypes.Config, log *slog.Logger) (backend, error) {
	l, err := dialLink(cfg)
	if err != nil {
		return nil, err
	}
	err = l.rt.Link.New(&rtnetlink.LinkMessage{Family: unix.AF_UNSPEC,
		Attributes: &rtnetlink.LinkAttributes{Name: cfg.Interface, Info: &rtnetlink.LinkInfo{Kind: "wireguard"}}})
	switch {
	case errors.Is(err, unix.EOPNOTSUPP):
		l.close()
		return nil, fmt.Errorf("create link %s: %w (%w)", cfg.Interface, ErrKernelUnsupported, err)
	case errors.Is(err, unix.EEXIST):
		if kerr := checkWireGuardLink(l.rt, cfg.Interface); kerr != nil {
			l.close()
			return nil, kerr
		}
		log.Info("taking over the wireguard link left behind", "interface", cfg.Interface)
	case err != nil:
		l.close()
		return nil, fmt.Errorf("create link %s: %w", cfg.Interface, err)
	}
	l.closer = func() error { return deleteLink(l.rt, cfg.Interface) }
	return l.start(cfg, wgcfg)
}

func checkWireGuardLink(rt *rtnetlink.Conn, name string) error {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	m, err := rt.Link.Get(uint32(ifi.Index))
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	if m.Attributes == nil || m.Attributes.Info == nil || m.Attributes.Info.Kind != "wireguard" {
		return fmt.Errorf("link %s exists and is not a wireguard link: choose another interface name", name)
	}
	return nil
}

// deleteLink removes the link, and with it its addresses and routes.
func deleteLink(rt *rtnetlink.Conn, name string) error {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	if err := rt.Link.Delete(uint32(ifi.Index)); err != nil {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}
