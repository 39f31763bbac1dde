//go:build !linux

package tui

import (
	"context"
	"errors"
)

// OnVT is Linux only.
func OnVT(ctx context.Context, n, kmsgVT int, opts Options) error {
	return errors.New("console on a virtual console: only on Linux")
}
