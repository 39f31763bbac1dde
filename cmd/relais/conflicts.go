package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/relais/relais/appliance/control"
)

// conflicts lists, shows and resolves the copies of instances that arrived
// again with other bytes.
func conflicts(ctx context.Context, c *control.Client, args []string) error {
	if len(args) == 0 {
		return listConflicts(ctx, c)
	}
	switch args[0] {
	case "show":
		if err := need(args, 2, "SOP instance UID"); err != nil {
			return err
		}
		return showConflict(ctx, c, args[1])
	case control.ConflictCorrect, control.ConflictDiscard:
		return resolveConflict(ctx, c, args[0], args[1:])
	}
	usage()
	return nil
}

func listConflicts(ctx context.Context, c *control.Client) error {
	cs, err := c.Conflicts(ctx)
	if err != nil {
		return err
	}
	if len(cs) == 0 {
		fmt.Println("no conflicting copies to review")
		return nil
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
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
	fmt.Println("\nrelais conflicts show UID: what differs; relais conflicts correct|discard UID COPY -reason WHY: decide")
	return nil
}

func copyColumns(x *control.ConflictCopy) string {
	return fmt.Sprintf("%s\t%s\t%s\t%s", x.CallingAE, x.ReceivedAt.Local().Format(time.DateTime), mb(x.Size), x.PatientName)
}

func showConflict(ctx context.Context, c *control.Client, uid string) error {
	x, err := c.Conflict(ctx, uid)
	if err != nil {
		return err
	}
	fmt.Printf("instance %s\n", x.SOPInstanceUID)
	if x.Held == nil {
		fmt.Println("held: gone (purged with its study)")
	} else {
		fmt.Printf("held: %s\n", describeCopy(x.Held))
	}
	for i := range x.Copies {
		cp := &x.Copies[i]
		fmt.Printf("\ncopy %d: %s\n", cp.ID, describeCopy(cp))
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
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
			fmt.Printf("  and %d more element(s)\n", cp.MoreChanges)
		}
		if cp.Note != "" {
			fmt.Printf("  %s\n", cp.Note)
		}
	}
	return nil
}

func describeCopy(x *control.ConflictCopy) string {
	return fmt.Sprintf("from %s (%s), received %s, %s, sha256 %.12s…", x.CallingAE, x.RemoteAddr, x.ReceivedAt.Local().Format(time.DateTime), mb(x.Size), x.SHA256)
}

// resolveConflict takes UID COPY, then -reason (required) and -by.
func resolveConflict(ctx context.Context, c *control.Client, action string, args []string) error {
	fs := flag.NewFlagSet("conflicts "+action, flag.ExitOnError)
	reason := fs.String("reason", "", "why (required: it goes into the audit log)")
	by := fs.String("by", os.Getenv("USER"), "who decides")
	fs.Parse(args)
	pos := fs.Args()
	if err := need(pos, 2, "SOP instance UID and copy number"); err != nil {
		return err
	}
	fs.Parse(pos[2:]) // flags after the UID and copy
	id, err := strconv.ParseUint(pos[1], 10, 64)
	if err != nil {
		return fmt.Errorf("copy number %q: %w", pos[1], err)
	}
	res, err := c.ResolveConflict(ctx, control.ConflictRequest{SOPInstanceUID: pos[0], ConflictID: id, Action: action, Reason: *reason, By: *by})
	if err != nil {
		return err
	}
	fmt.Println(res.Message)
	return nil
}
