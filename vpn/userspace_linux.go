package vpn

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// uapiDir is where wireguard-go puts its UAPI sockets and wgctrl looks for
// them (ipc's socketDirectory).
const uapiDir = "/var/run/wireguard"

// upUserspace runs wireguard-go in this process on a TUN device named
// cfg.Interface, serves its UAPI socket, and configures it through wgctrl
// like a kernel link, then sets the address, up and routes. Closing the
// device removes the TUN link with its addresses and routes.
func upUserspace(cfg Config, wgcfg wgtypes.Config, log *slog.Logger) (backend, error) {
	tdev, err := tun.CreateTUN(cfg.Interface, cfg.MTU)
	if err != nil {
		return nil, fmt.Errorf("create TUN device %s: %w", cfg.Interface, err)
	}
	uapiFile, err := ipc.UAPIOpen(cfg.Interface)
	if err != nil {
		tdev.Close()
		return nil, fmt.Errorf("open UAPI socket for %s: %w", cfg.Interface, err)
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), wgLogger(log))
	uapi, err := ipc.UAPIListen(cfg.Interface, uapiFile)
	uapiFile.Close()
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("listen on UAPI socket for %s: %w", cfg.Interface, err)
	}
	go func() {
		for {
			c, err := uapi.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	sock := filepath.Join(uapiDir, cfg.Interface+".sock")
	stop := func() error {
		uapi.Close()
		dev.Close()
		if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove UAPI socket: %w", err)
		}
		return nil
	}

	l, err := dialLink(cfg)
	if err != nil {
		stop()
		return nil, err
	}
	l.closer = stop
	return l.start(cfg, wgcfg)
}
