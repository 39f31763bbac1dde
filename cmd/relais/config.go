package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/spf13/cobra"
)

// The configuration: get, validate and set; approve and deny callers.

func configCommand(e *env) *cobra.Command {
	get := e.api(func(ctx context.Context, c *control.Client, _ []string) error {
		cfg, err := c.Config(ctx)
		if err != nil {
			return err
		}
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(e.out, string(b))
		return nil
	})
	cmd := &cobra.Command{
		Use:   "config",
		Short: "the configuration: get (the default), validate FILE, set FILE",
		Args:  subcommands,
		RunE:  get,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "get",
		Short: "print the configuration in force (JSON)",
		Args:  positional(),
		RunE:  get,
	}, e.configFileCommand("validate", "check a configuration file, field by field, without applying it",
		"configuration is valid", (*control.Client).ValidateConfig),
		e.configFileCommand("set", "validate, save and apply a configuration file (the event log says what changed)",
			"configuration saved and applied", (*control.Client).SetConfig))
	return cmd
}

// configFileCommand reads FILE strictly and hands it to send (validate or
// set), then says done and any warning.
func (e *env) configFileCommand(verb, short, done string, send func(*control.Client, context.Context, config.Config) error) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " FILE",
		Short: short,
		Args:  positional("FILE"),
		RunE: e.api(func(ctx context.Context, c *control.Client, args []string) error {
			cfg, err := readConfigFile(args[0])
			if err != nil {
				return err
			}
			if err := send(c, ctx, cfg); err != nil {
				return err
			}
			fmt.Fprintln(e.out, done)
			for _, w := range cfg.Warnings() {
				fmt.Fprintln(e.out, "warning:", w)
			}
			return nil
		}),
	}
}

// readConfigFile reads a configuration file strictly, as relaisd does: an
// unknown key or a syntax error says where.
func readConfigFile(path string) (config.Config, error) {
	var cfg config.Config
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, err
	}
	if err := config.Decode(b, &cfg); err != nil {
		var se *config.SyntaxError
		if errors.As(err, &se) {
			return cfg, fmt.Errorf("%s:%w", path, err)
		}
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

func approveCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "approve AE [ADDRESS]",
		Short: "allow a caller to send (from ADDRESS only, if given)",
		Args:  positional("AE", "[ADDRESS]"),
		RunE: e.api(func(ctx context.Context, c *control.Client, args []string) error {
			ae, addr := callerArgs(args)
			if err := c.Approve(ctx, ae, addr); err != nil {
				return err
			}
			fmt.Fprintf(e.out, "%s (%s) may send\n", ae, orAnyAddress(addr))
			return nil
		}),
	}
}

func denyCommand(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deny AE [ADDRESS]",
		Short: "revoke an allowed modality (its next association is refused), or forget a caller",
		Args:  positional("AE", "[ADDRESS]"),
		RunE: e.api(func(ctx context.Context, c *control.Client, args []string) error {
			ae, addr := callerArgs(args)
			if err := c.Deny(ctx, ae, addr); err != nil {
				return err
			}
			fmt.Fprintf(e.out, "%s (%s) denied: it is refused from now on\n", ae, orAnyAddress(addr))
			return nil
		}),
	}
	e.destructive(cmd, func(args []string) string {
		ae, addr := callerArgs(args)
		return fmt.Sprintf("deny %s (%s): it may no longer send to the box", ae, orAnyAddress(addr))
	})
	return cmd
}

func callerArgs(args []string) (ae, address string) {
	if len(args) > 1 {
		address = args[1]
	}
	return args[0], address
}

func orAnyAddress(address string) string {
	if address == "" {
		return "any address"
	}
	return address
}
