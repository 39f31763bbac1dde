//go:build !linux

package vpn

import (
	"errors"
	"fmt"
	"log/slog"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func upKernel(cfg Config, _ wgtypes.Config, _ *slog.Logger) (backend, error) {
	return nil, fmt.Errorf("kernel mode on this system: %w", ErrKernelUnsupported)
}

func upUserspace(Config, wgtypes.Config, *slog.Logger) (backend, error) {
	return nil, errors.New("userspace mode runs on Linux only; use netstack mode")
}
