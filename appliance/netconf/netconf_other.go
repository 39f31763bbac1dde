//go:build !linux

package netconf

import (
	"context"
	"errors"

	"github.com/relais/relais/appliance/config"
)

func (a *Applier) apply(context.Context, string, config.Network) error {
	return errors.New("network settings are applied on the box (Linux) only")
}
