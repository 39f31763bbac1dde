package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/spf13/cobra"
)

// What the box is doing: status, studies, events, callers.

func statusCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "the box at a glance: receiving, forwarding, tunnel, disk, alarms",
		Args:  positional(),
		RunE: e.api(func(ctx context.Context, c *control.Client, _ []string) error {
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			printStatus(e.out, st)
			return nil
		}),
	}
}

func studiesCommand(e *env) *cobra.Command {
	var n int
	cmd := &cobra.Command{
		Use:   "studies",
		Short: "recent studies and where they stand",
		Args:  positional(),
		RunE: e.api(func(ctx context.Context, c *control.Client, _ []string) error {
			ss, err := c.Studies(ctx, n)
			if err != nil {
				return err
			}
			printStudies(e.out, ss)
			return nil
		}),
	}
	cmd.Flags().IntVarP(&n, "limit", "n", 20, "how many")
	return cmd
}

func printStudies(out io.Writer, ss []control.Study) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "RECEIVED\tPATIENT\tDATE\tMODALITY\tINSTANCES\tSTATE\tURGENT\tSTUDY")
	for _, s := range ss {
		u := ""
		if s.Urgent {
			u = "yes"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.LastReceived.Local().Format("01-02 15:04:05"), s.PatientName, s.StudyDate,
			strings.Join(s.Modalities, ","), s.Instances, s.State, u, s.StudyInstanceUID)
	}
	w.Flush()
}

func eventsCommand(e *env) *cobra.Command {
	var (
		n     int
		kinds []string
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "the event log, newest first",
		Args: func(cmd *cobra.Command, args []string) error {
			for _, k := range kinds {
				if !slices.Contains(control.EventKinds(), k) {
					return usagef("events: unknown kind %q (known: %s)", k, strings.Join(control.EventKinds(), ", "))
				}
			}
			return positional()(cmd, args)
		},
		RunE: e.api(func(ctx context.Context, c *control.Client, _ []string) error {
			evs, err := c.Events(ctx, control.EventQuery{Limit: n, Kinds: kinds})
			if err != nil {
				return err
			}
			for _, ev := range evs {
				fmt.Fprintf(e.out, "%s  %-7s %-11s %s\n", ev.Time.Local().Format(time.DateTime), ev.Severity, ev.Kind, ev.Message)
			}
			return nil
		}),
	}
	cmd.Flags().IntVarP(&n, "limit", "n", 30, "how many")
	cmd.Flags().StringSliceVar(&kinds, "kind", nil, "only these kinds, comma-separated ("+strings.Join(control.EventKinds(), ", ")+")")
	cmd.RegisterFlagCompletionFunc("kind", cobra.FixedCompletions(control.EventKinds(), cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func callersCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "callers",
		Short: "unknown callers that tried to send (relais approve AE to allow one)",
		Args:  positional(),
		RunE: e.api(func(ctx context.Context, c *control.Client, _ []string) error {
			cs, err := c.Callers(ctx)
			if err != nil {
				return err
			}
			for _, x := range cs {
				fmt.Fprintf(e.out, "%-16s %-40s %d attempt(s), last %s\n", x.AETitle, x.Address, x.Attempts, x.LastSeen.Local().Format(time.DateTime))
			}
			// The list keeps the latest callers only; say how many it let go.
			if st, err := c.Status(ctx); err == nil && st.OtherCallers > 0 {
				fmt.Fprintf(e.out, "and %d other callers, no longer listed\n", st.OtherCallers)
			}
			return nil
		}),
	}
}

func printStatus(w io.Writer, st control.Status) {
	version := st.Version
	if st.Image != "" {
		version += ", image " + st.Image
	}
	fmt.Fprintf(w, "Relais %s — AE title %s, DICOM port %d, up since %s\n", version, st.AETitle, st.Port, st.StartedAt.Local().Format(time.DateTime))
	if to := st.SendTo(); to != "" {
		fmt.Fprintf(w, "modalities send to %s\n", to)
	}
	if st.Update != nil {
		_, text := st.Update.Summary()
		fmt.Fprintf(w, "last update: %s\n", text)
	}
	fmt.Fprintf(w, "health: receiving %s, forwarding %s, tunnel %s, disk %s\n", st.Health.Receiving, st.Health.Forwarding, st.Health.Tunnel, st.Health.Disk)
	last := "nothing yet"
	if st.Receiving.LastSender != "" {
		last = fmt.Sprintf("last from %s at %s", st.Receiving.LastSender, st.Receiving.LastAt.Local().Format("15:04:05"))
	}
	fmt.Fprintf(w, "receiving: %d association(s) open, %d instance(s) (%s) since start, %s\n", st.Receiving.Associations, st.Receiving.Instances, mb(st.Receiving.Bytes), last)
	fmt.Fprintf(w, "stored: %d patient(s), %d stud(ies), %d instance(s), %s", st.Stored.Patients, st.Stored.Studies, st.Stored.Instances, mb(st.Stored.Bytes))
	if st.Stored.Conflicts > 0 {
		fmt.Fprintf(w, ", %d conflicting copy(ies) to review (relais conflicts)", st.Stored.Conflicts)
	}
	fmt.Fprintln(w)
	if len(st.Destinations) == 0 {
		fmt.Fprintln(w, "destinations: none configured (studies are held)")
	}
	for _, d := range st.Destinations {
		fmt.Fprintf(w, "→ %s (%s at %s): %s, %d waiting (%s)", d.Name, d.AETitle, d.Address, d.State, d.QueueDepth, mb(d.QueueBytes))
		if d.OldestWaiting != "" {
			fmt.Fprintf(w, ", oldest %s", d.OldestWaiting)
		}
		fmt.Fprintf(w, ", %d delivered, %d committed, %d failed, %d parked\n", d.Delivered, d.Committed, d.Failed, d.Parked)
		if d.LastError != "" {
			fmt.Fprintf(w, "    last error: %s\n", d.LastError)
		}
	}
	fmt.Fprintf(w, "tunnel: %s\n", st.Tunnel.State)
	failing := ""
	if !st.Disk.SaveFailingSince.IsZero() {
		failing = "failing to save since " + st.Disk.SaveFailingSince.Local().Format(time.TimeOnly) + ", "
	}
	fmt.Fprintf(w, "disk: %s%.0f %% used, %s free, %s not yet delivered\n", failing, st.Disk.UsedPercent, mb(int64(st.Disk.Free)), mb(st.Disk.Undelivered))
	for _, a := range st.Alarms {
		key := ""
		if a.Key != "" {
			key = fmt.Sprintf(" [console key %s]", a.Key)
		}
		fmt.Fprintf(w, "! %s: %s%s\n", a.Level, a.Message, key)
	}
}
