// relais is the command line of the Relais box: it talks to relaisd through
// the control socket in the data folder.
//
//	relais console                the console (-vt N on the box, -ssh ADDR for the team)
//	relais status                 the box at a glance
//	relais studies                recent studies and where they stand
//	relais events [-n N]          the event log, newest first
//	relais echo DESTINATION       C-ECHO a destination (or -modality AE)
//	relais config [get|validate FILE|set FILE]
//	relais approve AE [ADDRESS]   allow a caller seen knocking
//	relais deny AE [ADDRESS]
//	relais retry|pause|resume DESTINATION
//	relais parked                 instances that failed too often, and why
//	relais retry -study UID | -instance UID -dest D
//	relais resend STUDY_UID [-dest D]
//	relais abandon -dest D -reason WHY INSTANCE_UID
//	relais urgent STUDY_UID       send a study before the others
//	relais purge                  run retention now
//	relais conflicts [show UID | correct|discard UID COPY -reason WHY]
//	relais gen                    write a synthetic study to try the box with
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
)

func usage() {
	fmt.Fprintf(os.Stderr, `usage: relais [-data DIR] COMMAND [ARGS]

commands:
  console [-vt N] [-ssh ADDR]  the console (this terminal, a virtual console, or over SSH)
  status                       the box at a glance
  studies [-n N]               recent studies and where they stand
  events [-n N] [-kind K,..]   the event log, newest first
  echo DESTINATION             C-ECHO a destination (echo -modality AE for a modality)
  config get                   print the configuration (JSON)
  config validate FILE         check a configuration file, field by field
  config set FILE              validate, save and apply a configuration
  callers                      unknown callers that tried to send
  approve AE [ADDRESS]         allow a caller
  deny AE [ADDRESS]            forget a caller
  retry DESTINATION            retry failed and parked instances now
  retry -study UID [-dest D]   retry one study's failed and parked instances now
  retry -instance UID -dest D  retry one instance now
  parked                       instances parked after repeated failures, and why
  resend STUDY_UID [-dest D]   send a whole study again (a center that lost it)
  abandon -dest D -reason WHY INSTANCE_UID
                               give up on a parked instance there (recorded; it may then be purged)
  pause DESTINATION / resume DESTINATION
  urgent STUDY_UID             forward a study before the others
  purge                        run retention now
  conflicts                    instances that arrived again with other bytes, held for review
  conflicts show UID           how each conflicting copy's header differs from the held copy's
  conflicts correct UID COPY -reason WHY [-by NAME]
                               the copy replaces the held one and is forwarded again
  conflicts discard UID COPY -reason WHY [-by NAME]
                               the copy is removed; the held one stays
  keys                         this box's WireGuard public key, with a QR code
  tunnel [show]                the tunnel's configuration and state
  tunnel import FILE           take the reading center's wg-quick file
  tunnel export [-with-private-key]
                               the tunnel as a wg-quick file; secrets only when asked, on the box
  gen [-out DIR] [-ct N] [-small N] [-multiframe]
                               write a synthetic study (for trying the box out)
`)
	os.Exit(2)
}

// dataFlag is relaisd's data folder (holds the control socket).
var dataFlag = flag.String("data", defaultDataDir, "relaisd's data folder (holds the control socket)")

func main() {
	data := dataFlag
	flag.Usage = usage
	flag.Parse()
	if flag.NArg() == 0 {
		usage()
	}
	c := control.NewClient(filepath.Join(*data, control.SocketName))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, c, flag.Arg(0), flag.Args()[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "relais:", err)
		var ce *control.Error
		if errors.As(err, &ce) {
			for _, f := range ce.Fields {
				fmt.Fprintf(os.Stderr, "  %s: %s\n", f.Field, f.Msg)
			}
		}
		os.Exit(1)
	}
}

func need(args []string, n int, what string) error {
	if len(args) < n {
		return fmt.Errorf("missing %s", what)
	}
	return nil
}

func run(ctx context.Context, c *control.Client, cmd string, args []string) error {
	switch cmd {
	case "status":
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		printStatus(st)
	case "studies":
		fs := flag.NewFlagSet("studies", flag.ExitOnError)
		n := fs.Int("n", 20, "how many")
		fs.Parse(args)
		ss, err := c.Studies(ctx, *n)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
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
	case "events":
		fs := flag.NewFlagSet("events", flag.ExitOnError)
		n := fs.Int("n", 30, "how many")
		kinds := fs.String("kind", "", "only these kinds (association,store,reject,forward,retry,commit,purge,config,review)")
		fs.Parse(args)
		q := control.EventQuery{Limit: *n}
		if *kinds != "" {
			q.Kinds = strings.Split(*kinds, ",")
		}
		evs, err := c.Events(ctx, q)
		if err != nil {
			return err
		}
		for _, e := range evs {
			fmt.Printf("%s  %-7s %-11s %s\n", e.Time.Local().Format("2006-01-02 15:04:05"), e.Severity, e.Kind, e.Message)
		}
	case "echo":
		fs := flag.NewFlagSet("echo", flag.ExitOnError)
		modality := fs.String("modality", "", "echo this modality (AE title) instead of a destination")
		fs.Parse(args)
		req := control.EchoRequest{Modality: *modality}
		if *modality == "" {
			if err := need(fs.Args(), 1, "destination name"); err != nil {
				return err
			}
			req.Destination = fs.Arg(0)
		}
		res, err := c.Echo(ctx, req)
		if err != nil {
			return err
		}
		if !res.OK {
			return fmt.Errorf("echo %s failed: %s%s", res.Target, res.Status, res.Error)
		}
		fmt.Printf("echo %s: %s in %.1f ms\n", res.Target, res.Status, res.RTTms)
	case "config":
		return configCmd(ctx, c, args)
	case "callers":
		cs, err := c.Callers(ctx)
		if err != nil {
			return err
		}
		for _, x := range cs {
			fmt.Printf("%-16s %-40s %d attempt(s), last %s\n", x.AETitle, x.Address, x.Attempts, x.LastSeen.Local().Format(time.DateTime))
		}
	case "approve", "deny":
		if err := need(args, 1, "AE title"); err != nil {
			return err
		}
		addr := ""
		if len(args) > 1 {
			addr = args[1]
		}
		if cmd == "approve" {
			return c.Approve(ctx, args[0], addr)
		}
		return c.Deny(ctx, args[0], addr)
	case "retry":
		return retry(ctx, c, args)
	case "parked":
		return parked(ctx, c)
	case "resend":
		fs := flag.NewFlagSet("resend", flag.ExitOnError)
		dest := fs.String("dest", "", "only to this destination (default: every one)")
		fs.Parse(args)
		if err := need(fs.Args(), 1, "study instance UID"); err != nil {
			return err
		}
		n, err := c.Resend(ctx, control.StudyRequest{StudyInstanceUID: fs.Arg(0), Destination: *dest})
		if err != nil {
			return err
		}
		fmt.Printf("%d instance(s) queued again\n", n.Instances)
	case "abandon":
		fs := flag.NewFlagSet("abandon", flag.ExitOnError)
		dest := fs.String("dest", "", "the destination it is parked at")
		reason := fs.String("reason", "", "why (kept in the event log)")
		fs.Parse(args)
		if err := need(fs.Args(), 1, "SOP instance UID"); err != nil {
			return err
		}
		if *dest == "" || *reason == "" {
			return errors.New("abandon needs -dest and -reason")
		}
		return c.Abandon(ctx, control.InstanceRequest{Destination: *dest, SOPInstanceUID: fs.Arg(0), Reason: *reason, By: operator()})
	case "pause", "resume":
		if err := need(args, 1, "destination name"); err != nil {
			return err
		}
		fn := map[string]func(context.Context, string) error{"pause": c.Pause, "resume": c.Resume}[cmd]
		return fn(ctx, args[0])
	case "urgent":
		if err := need(args, 1, "study instance UID"); err != nil {
			return err
		}
		return c.MarkUrgent(ctx, args[0], true)
	case "console":
		return console(flag.Lookup("data").Value.String(), args)
	case "gen":
		return gen(args)
	case "keys":
		return keys(ctx, c)
	case "tunnel":
		return tunnel(ctx, c, *dataFlag, args)
	case "conflicts":
		return conflicts(ctx, c, args)
	case "purge":
		r, err := c.Purge(ctx)
		if err != nil {
			return err
		}
		fmt.Printf("purged %d stud(ies), %d instance(s), %s\n", r.Studies, r.Instances, mb(r.Bytes))
	default:
		usage()
	}
	return nil
}

func retry(ctx context.Context, c *control.Client, args []string) error {
	fs := flag.NewFlagSet("retry", flag.ExitOnError)
	study := fs.String("study", "", "retry this study's failed and parked instances")
	instance := fs.String("instance", "", "retry this instance (with -dest)")
	dest := fs.String("dest", "", "the destination (with -instance; optional with -study)")
	fs.Parse(args)
	var n control.Changed
	var err error
	switch {
	case *instance != "":
		if *dest == "" {
			return errors.New("retry -instance needs -dest")
		}
		n, err = c.RetryInstance(ctx, control.InstanceRequest{Destination: *dest, SOPInstanceUID: *instance, By: operator()})
	case *study != "":
		n, err = c.RetryStudy(ctx, control.StudyRequest{StudyInstanceUID: *study, Destination: *dest})
	default:
		if err := need(fs.Args(), 1, "destination name"); err != nil {
			return err
		}
		return c.Retry(ctx, fs.Arg(0))
	}
	if err != nil {
		return err
	}
	fmt.Printf("%d instance(s) to be retried now\n", n.Instances)
	return nil
}

func parked(ctx context.Context, c *control.Client) error {
	ps, err := c.Parked(ctx, 0)
	if err != nil {
		return err
	}
	if len(ps) == 0 {
		fmt.Println("no parked instance")
		return nil
	}
	for _, p := range ps {
		fmt.Printf("%s at %s: patient %s (%s), study %s %s\n  %s, %d attempt(s) since %s\n  why: %s\n",
			p.SOPInstanceUID, p.Destination, p.PatientName, p.PatientID, p.StudyInstanceUID, p.StudyDescription,
			p.TransferSyntax, p.Attempts, p.FirstFailure.Local().Format(time.DateTime), p.Reason)
	}
	fmt.Println("retry: relais retry -instance UID -dest D · give up: relais abandon -dest D -reason WHY UID")
	return nil
}

// operator names who acts, for audit events: the login user.
func operator() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return fmt.Sprintf("uid %d", os.Getuid())
}

func configCmd(ctx context.Context, c *control.Client, args []string) error {
	if len(args) == 0 || args[0] == "get" {
		cfg, err := c.Config(ctx)
		if err != nil {
			return err
		}
		b, _ := json.MarshalIndent(cfg, "", "  ")
		fmt.Println(string(b))
		return nil
	}
	if err := need(args, 2, "configuration file"); err != nil {
		return err
	}
	b, err := os.ReadFile(args[1])
	if err != nil {
		return err
	}
	var cfg config.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("%s is not valid JSON: %w", args[1], err)
	}
	switch args[0] {
	case "validate":
		if err := c.ValidateConfig(ctx, cfg); err != nil {
			return err
		}
		fmt.Println("configuration is valid")
	case "set":
		if err := c.SetConfig(ctx, cfg); err != nil {
			return err
		}
		fmt.Println("configuration saved and applied")
	default:
		usage()
	}
	for _, w := range cfg.Warnings() {
		fmt.Println("warning:", w)
	}
	return nil
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

func printStatus(st control.Status) {
	fmt.Printf("Relais %s — AE title %s, DICOM port %d, up since %s\n", st.Version, st.AETitle, st.Port, st.StartedAt.Local().Format(time.DateTime))
	fmt.Printf("health: receiving %s, forwarding %s, tunnel %s, disk %s\n", st.Health.Receiving, st.Health.Forwarding, st.Health.Tunnel, st.Health.Disk)
	last := "nothing yet"
	if st.Receiving.LastSender != "" {
		last = fmt.Sprintf("last from %s at %s", st.Receiving.LastSender, st.Receiving.LastAt.Local().Format("15:04:05"))
	}
	fmt.Printf("receiving: %d association(s) open, %d instance(s) (%s) since start, %s\n", st.Receiving.Associations, st.Receiving.Instances, mb(st.Receiving.Bytes), last)
	fmt.Printf("stored: %d patient(s), %d stud(ies), %d instance(s), %s", st.Stored.Patients, st.Stored.Studies, st.Stored.Instances, mb(st.Stored.Bytes))
	if st.Stored.Conflicts > 0 {
		fmt.Printf(", %d conflicting copy(ies) to review (relais conflicts)", st.Stored.Conflicts)
	}
	fmt.Println()
	if len(st.Destinations) == 0 {
		fmt.Println("destinations: none configured (studies are held)")
	}
	for _, d := range st.Destinations {
		fmt.Printf("→ %s (%s at %s): %s, %d waiting (%s)", d.Name, d.AETitle, d.Address, d.State, d.QueueDepth, mb(d.QueueBytes))
		if d.OldestWaiting != "" {
			fmt.Printf(", oldest %s", d.OldestWaiting)
		}
		fmt.Printf(", %d delivered, %d committed, %d failed, %d parked\n", d.Delivered, d.Committed, d.Failed, d.Parked)
		if d.LastError != "" {
			fmt.Printf("    last error: %s\n", d.LastError)
		}
	}
	fmt.Printf("tunnel: %s\n", st.Tunnel.State)
	if u := st.Update; u != nil {
		fmt.Printf("update: %s (%s)\n", u.Message, u.At.Local().Format(time.DateTime))
	}
	fmt.Printf("disk: %.0f %% used, %s free, %s not yet delivered\n", st.Disk.UsedPercent, mb(int64(st.Disk.Free)), mb(st.Disk.Undelivered))
	for _, a := range st.Alarms {
		key := ""
		if a.Key != "" {
			key = fmt.Sprintf(" [console key %s]", a.Key)
		}
		fmt.Printf("! %s: %s%s\n", a.Level, a.Message, key)
	}
}
