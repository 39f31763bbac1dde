package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/spf13/cobra"
)

// conflictsCommand lists, shows and resolves the copies of instances that
// arrived again with other bytes.
func conflictsCommand(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "conflicts",
		Short: "instances that arrived again with other bytes, held for review",
		Args:  subcommands,
		RunE: e.api(func(ctx context.Context, c *control.Client, _ []string) error {
			return listConflicts(ctx, e.out, c)
		}),
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "show UID",
		Short: "how each conflicting copy's header differs from the held copy's",
		Args:  positional("UID"),
		RunE: e.api(func(ctx context.Context, c *control.Client, args []string) error {
			return showConflict(ctx, e.out, c, args[0])
		}),
	}, resolveCommand(e, control.ConflictCorrect, "the copy replaces the held one and is forwarded again"),
		resolveCommand(e, control.ConflictDiscard, "the copy is removed; the held one stays"))
	return cmd
}

func listConflicts(ctx context.Context, out io.Writer, c *control.Client) error {
	cs, err := c.Conflicts(ctx)
	if err != nil {
		return err
	}
	if len(cs) == 0 {
		fmt.Fprintln(out, "no conflicting copies to review")
		return nil
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "INSTANCE\tCOPY\tFROM\tRECEIVED\tSIZE\tPATIENT")
	for _, x := range cs {
		uid := x.SOPInstanceUID
		if x.Held != nil {
			fmt.Fprintf(w, "%s\theld\t%s\n", uid, copyColumns(x.Held))
			uid = ""
		}
		for i := range x.Copies {
			fmt.Fprintf(w, "%s\t%d\t%s\n", uid, x.Copies[i].ID, copyColumns(&x.Copies[i]))
			uid = ""
		}
	}
	w.Flush()
	fmt.Fprintln(out, "\nrelais conflicts show UID: what differs; relais conflicts correct|discard UID COPY -reason WHY: decide")
	return nil
}

func copyColumns(x *control.ConflictCopy) string {
	return fmt.Sprintf("%s\t%s\t%s\t%s", x.CallingAE, x.ReceivedAt.Local().Format(time.DateTime), mb(x.Size), x.PatientName)
}

func showConflict(ctx context.Context, out io.Writer, c *control.Client, uid string) error {
	x, err := c.Conflict(ctx, uid)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "instance %s\n", x.SOPInstanceUID)
	if x.Held == nil {
		fmt.Fprintln(out, "held: gone (purged with its study)")
	} else {
		fmt.Fprintf(out, "held: %s\n", describeCopy(x.Held))
	}
	for i := range x.Copies {
		cp := &x.Copies[i]
		fmt.Fprintf(out, "\ncopy %d: %s\n", cp.ID, describeCopy(cp))
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		for _, ch := range cp.Changes {
			was, now := strconv.Quote(ch.Old), strconv.Quote(ch.New)
			if ch.Added {
				was = "(absent)"
			}
			if ch.Removed {
				now = "(absent)"
			}
			fmt.Fprintf(w, "  %s\t%s\t%s\t→ %s\n", ch.Tag, ch.Name, was, now)
		}
		w.Flush()
		if cp.MoreChanges > 0 {
			fmt.Fprintf(out, "  and %d more element(s)\n", cp.MoreChanges)
		}
		if cp.Note != "" {
			fmt.Fprintf(out, "  %s\n", cp.Note)
		}
	}
	return nil
}

func describeCopy(x *control.ConflictCopy) string {
	return fmt.Sprintf("from %s (%s), received %s, %s, sha256 %.12s…", x.CallingAE, x.RemoteAddr, x.ReceivedAt.Local().Format(time.DateTime), mb(x.Size), x.SHA256)
}

// resolveCommand is conflicts correct or discard: UID COPY -reason WHY
// [-by NAME]; a discard asks first.
func resolveCommand(e *env, action, short string) *cobra.Command {
	var reason, by string
	cmd := &cobra.Command{
		Use:   action + " UID COPY -reason WHY [-by NAME]",
		Short: short,
		Args: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return usagef("conflicts %s needs -reason (it goes into the audit log)", action)
			}
			if err := positional("UID", "COPY")(cmd, args); err != nil {
				return err
			}
			if _, err := strconv.ParseUint(args[1], 10, 64); err != nil {
				return usagef("copy number %q is not a number (relais conflicts lists them)", args[1])
			}
			return nil
		},
		RunE: e.api(func(ctx context.Context, c *control.Client, args []string) error {
			id, _ := strconv.ParseUint(args[1], 10, 64)
			res, err := c.ResolveConflict(ctx, control.ConflictRequest{SOPInstanceUID: args[0], ConflictID: id, Action: action, Reason: reason, By: by})
			if err != nil {
				return err
			}
			fmt.Fprintln(e.out, res.Message)
			return nil
		}),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (required: it goes into the audit log)")
	cmd.Flags().StringVar(&by, "by", os.Getenv("USER"), "who decides")
	if action == control.ConflictDiscard {
		e.destructive(cmd, func(args []string) string {
			return fmt.Sprintf("discard copy %s of %s: its bytes are deleted for good", args[1], args[0])
		})
	}
	return cmd
}
