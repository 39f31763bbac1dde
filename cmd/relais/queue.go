package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/spf13/cobra"
)

// Forwarding: retry, parked, resend, abandon, pause, resume, urgent, purge.

func retryCommand(e *env) *cobra.Command {
	var study, instance, dest string
	cmd := &cobra.Command{
		Use:   "retry DESTINATION | retry -study UID [-dest D] | retry -instance UID -dest D",
		Short: "retry failed and parked instances now: of a destination, a study, or one instance",
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case instance != "" && study != "":
				return usagef("retry: -study or -instance, not both")
			case instance != "" && dest == "":
				return usagef("retry -instance needs -dest")
			case instance != "" || study != "":
				return positional()(cmd, args)
			}
			return positional("DESTINATION")(cmd, args)
		},
		ValidArgsFunction: e.completeDestinations,
		RunE: e.api(func(ctx context.Context, c *control.Client, args []string) error {
			var n control.Changed
			var err error
			switch {
			case instance != "":
				n, err = c.RetryInstance(ctx, control.InstanceRequest{Destination: dest, SOPInstanceUID: instance, By: operator()})
			case study != "":
				n, err = c.RetryStudy(ctx, control.StudyRequest{StudyInstanceUID: study, Destination: dest})
			default:
				if err := c.Retry(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(e.out, "%s: failed and parked instances are retried now\n", args[0])
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(e.out, "%d instance(s) to be retried now\n", n.Instances)
			return nil
		}),
	}
	cmd.Flags().StringVar(&study, "study", "", "retry this study's failed and parked instances")
	cmd.Flags().StringVar(&instance, "instance", "", "retry this instance (with -dest)")
	cmd.Flags().StringVar(&dest, "dest", "", "the destination (with -instance; optional with -study)")
	return cmd
}

func parkedCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "parked",
		Short: "instances parked after repeated failures, and why",
		Args:  positional(),
		RunE: e.api(func(ctx context.Context, c *control.Client, _ []string) error {
			ps, err := c.Parked(ctx, 0)
			if err != nil {
				return err
			}
			printParked(e.out, ps)
			return nil
		}),
	}
}

func printParked(w io.Writer, ps []control.ParkedInstance) {
	if len(ps) == 0 {
		fmt.Fprintln(w, "no parked instance")
		return
	}
	for _, p := range ps {
		fmt.Fprintf(w, "%s at %s: patient %s (%s), study %s %s\n  %s, %d attempt(s) since %s\n  why: %s\n",
			p.SOPInstanceUID, p.Destination, p.PatientName, p.PatientID, p.StudyInstanceUID, p.StudyDescription,
			p.TransferSyntax, p.Attempts, p.FirstFailure.Local().Format(time.DateTime), p.Reason)
	}
	fmt.Fprintln(w, "retry: relais retry -instance UID -dest D · give up: relais abandon -dest D -reason WHY UID")
}

func resendCommand(e *env) *cobra.Command {
	var dest string
	cmd := &cobra.Command{
		Use:   "resend STUDY_UID [-dest D]",
		Short: "send a whole study again (a center that lost it)",
		Args:  positional("STUDY_UID"),
		RunE: e.api(func(ctx context.Context, c *control.Client, args []string) error {
			n, err := c.Resend(ctx, control.StudyRequest{StudyInstanceUID: args[0], Destination: dest})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.out, "%d instance(s) queued again\n", n.Instances)
			return nil
		}),
	}
	cmd.Flags().StringVar(&dest, "dest", "", "only to this destination (default: every one)")
	return cmd
}

func abandonCommand(e *env) *cobra.Command {
	var dest, reason string
	cmd := &cobra.Command{
		Use:   "abandon -dest D -reason WHY INSTANCE_UID",
		Short: "give up on a parked instance at a destination (recorded; it may then be purged)",
		Args: func(cmd *cobra.Command, args []string) error {
			if dest == "" || reason == "" {
				return usagef("abandon needs -dest and -reason")
			}
			return positional("INSTANCE_UID")(cmd, args)
		},
		RunE: e.api(func(ctx context.Context, c *control.Client, args []string) error {
			if err := c.Abandon(ctx, control.InstanceRequest{Destination: dest, SOPInstanceUID: args[0], Reason: reason, By: operator()}); err != nil {
				return err
			}
			fmt.Fprintf(e.out, "%s abandoned at %s\n", args[0], dest)
			return nil
		}),
	}
	cmd.Flags().StringVar(&dest, "dest", "", "the destination it is parked at")
	cmd.Flags().StringVar(&reason, "reason", "", "why (kept in the event log)")
	e.destructive(cmd, func(args []string) string {
		return fmt.Sprintf("abandon %s at %s: it is not sent there again and may then be purged", args[0], dest)
	})
	return cmd
}

// pauseCommand is pause (pause true) or resume.
func pauseCommand(e *env, pause bool) *cobra.Command {
	use, short, done := "resume", "forward to a paused destination again", "resumed"
	if pause {
		use, short, done = "pause", "hold a destination's queue (studies wait, nothing is lost)", "paused"
	}
	return &cobra.Command{
		Use:               use + " DESTINATION",
		Short:             short,
		Args:              positional("DESTINATION"),
		ValidArgsFunction: e.completeDestinations,
		RunE: e.api(func(ctx context.Context, c *control.Client, args []string) error {
			fn := c.Resume
			if pause {
				fn = c.Pause
			}
			if err := fn(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.out, "%s %s\n", args[0], done)
			return nil
		}),
	}
}

func urgentCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "urgent STUDY_UID",
		Short: "forward a study before the others",
		Args:  positional("STUDY_UID"),
		RunE: e.api(func(ctx context.Context, c *control.Client, args []string) error {
			if err := c.MarkUrgent(ctx, args[0], true); err != nil {
				return err
			}
			fmt.Fprintf(e.out, "%s is urgent: it goes first\n", args[0])
			return nil
		}),
	}
}

func purgeCommand(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "purge",
		Short: "run retention now: delete what is delivered everywhere and past its time",
		Args:  positional(),
		RunE: e.api(func(ctx context.Context, c *control.Client, _ []string) error {
			r, err := c.Purge(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.out, "purged %d stud(ies), %d instance(s), %s\n", r.Studies, r.Instances, mb(r.Bytes))
			return nil
		}),
	}
	e.destructive(cmd, func([]string) string {
		return "purge now: delivered studies past their retention are deleted from the box"
	})
	return cmd
}
