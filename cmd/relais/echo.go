package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/spf13/cobra"
)

// echoCommand: C-ECHO from the box to a destination by name, a modality
// by AE title, or any address as DCMTK's echoscu takes it.
func echoCommand(e *env) *cobra.Command {
	var modality, calledAE, callingAE string
	cmd := &cobra.Command{
		Use:   "echo DESTINATION | echo -modality AE | echo [-aec AE] [-aet AE] HOST PORT",
		Short: "C-ECHO from the box: a destination, a modality, or any address",
		Long: `echo checks a DICOM path from the box itself (through the tunnel where the
tunnel goes):

  relais echo center                  a destination, by name
  relais echo -modality CT1           a modality, at its configured address and port
  relais echo -aec PACS 10.8.0.1 104  any address, as echoscu -aec PACS 10.8.0.1 104;
                                      -aet sets the calling AE title (the box's by default)`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case modality != "":
				return positional()(cmd, args)
			case len(args) == 2:
				return nil
			case cmd.Flags().Changed("aec") || cmd.Flags().Changed("aet"):
				return positional("HOST", "PORT")(cmd, args)
			}
			return positional("DESTINATION (or HOST PORT)")(cmd, args)
		},
		ValidArgsFunction: e.completeDestinations,
		RunE: e.api(func(ctx context.Context, c *control.Client, args []string) error {
			req := control.EchoRequest{Modality: modality}
			switch len(args) {
			case 1:
				req.Destination = args[0]
			case 2:
				port, err := strconv.Atoi(args[1])
				if err != nil {
					return usagef("echo: port %q is not a number", args[1])
				}
				req = control.EchoRequest{Host: args[0], Port: port, CalledAE: calledAE, CallingAE: callingAE}
			}
			res, err := c.Echo(ctx, req)
			if err != nil {
				return err
			}
			if !res.OK {
				return fmt.Errorf("echo %s failed: %s%s", res.Target, res.Status, res.Error)
			}
			fmt.Fprintf(e.out, "echo %s: %s in %.1f ms\n", res.Target, res.Status, res.RTTms)
			return nil
		}),
	}
	cmd.Flags().StringVar(&modality, "modality", "", "echo this modality (AE title) at its configured address")
	cmd.Flags().StringVar(&calledAE, "aec", "ANY-SCP", "with HOST PORT: the called AE title (echoscu's default)")
	cmd.Flags().StringVar(&callingAE, "aet", "", "with HOST PORT: the calling AE title (default: the box's)")
	return cmd
}

// completeDestinations offers the configured destinations' names, asking
// relaisd briefly.
func (e *env) completeDestinations(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
	defer cancel()
	cfg, err := e.client().Config(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	for _, d := range cfg.Destinations {
		names = append(names, d.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}
