// verdict waits, after gok update, for the update guard's verdict on the
// box, through the tunnel: gok reports success as soon as the new image
// answers, whatever happens next. It reads the guard's verdict lines
// (relais-guard's stdout, kept by gokrazy) with the update password.
//
//	verdict -site FILE -current            prints the SBOM hash of the image the box runs
//	verdict -site FILE -before HASH        waits for the verdict on the image that replaced HASH
//
// Exit codes: 0 the new image is good; 1 it was rolled back (or the guard
// could not switch back): the reason is printed; 2 cannot tell (the box did
// not answer, or no verdict came in time).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/gokrazy"
	"github.com/relais/relais/appliance/guard"
	"github.com/relais/relais/image"
)

const (
	exitGood       = 0
	exitRolledBack = 1
	exitUnknown    = 2
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("verdict: ")
	var (
		site    = flag.String("site", "image/site.env", "site file (RELAIS_UPDATE_HOST, RELAIS_HTTP_PASSWORD); the environment overrides it")
		box     = flag.String("box", "pc", "kind of box (its config names gokrazy's HTTP port)")
		current = flag.Bool("current", false, "print the SBOM hash of the running image, and exit")
		before  = flag.String("before", "", "the SBOM hash of the image before the update")
		timeout = flag.Duration("timeout", 15*time.Minute, "how long to wait for the verdict")
	)
	flag.Parse()
	api, err := boxAPI(*site, *box)
	if err != nil {
		log.Print(err)
		os.Exit(exitUnknown)
	}
	ctx := context.Background()
	if *current {
		o, err := api.Overview(ctx)
		if err != nil {
			log.Printf("cannot tell which image the box runs: %v", err)
			os.Exit(exitUnknown)
		}
		fmt.Println(o.SBOMHash)
		return
	}
	w := waiter{api: api, before: *before, since: time.Now(), poll: 5 * time.Second, out: os.Stdout}
	os.Exit(w.wait(ctx, *timeout))
}

// boxAPI is gokrazy's API on the box, at its address in the tunnel.
func boxAPI(sitePath, box string) (*gokrazy.LocalAPI, error) {
	s, err := image.LoadSite(sitePath, os.Getenv)
	if err != nil {
		return nil, err
	}
	if s.UpdateHost == "" {
		return nil, fmt.Errorf("no address: set %s", image.EnvUpdateHost)
	}
	port := s.HTTPPort
	if in, err := image.Load(filepath.Join("image", box, "config.json")); port == "" && err == nil && in.Update != nil {
		port = in.Update.HTTPPort
	}
	if port == "" {
		port = "80"
	}
	return gokrazy.NewRemoteAPI(net.JoinHostPort(s.UpdateHost, port), s.Password), nil
}

// waiter polls the box for the guard's verdict on the new image.
type waiter struct {
	api    *gokrazy.LocalAPI
	before string    // the SBOM hash before the update
	since  time.Time // when the update began, on this machine's clock
	poll   time.Duration
	out    io.Writer
}

// clockSkew is how far the box's clock may be from ours when a verdict's
// time tells whether it is about this update.
const clockSkew = 2 * time.Minute

func (w waiter) wait(ctx context.Context, timeout time.Duration) int {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastErr error
	said := ""
	for {
		lines, err := w.api.Log(ctx, gokrazy.ServicePath("relais-guard"), "stdout", 2*time.Second)
		switch u := w.latest(lines); {
		case err != nil:
			lastErr = err
		case u == nil:
			lastErr = nil
		case u.State == guard.VerdictChecking:
			if said != u.Message {
				fmt.Fprintf(w.out, "%s…\n", u.Message)
				said = u.Message
			}
		case u.State == control.UpdateGood:
			fmt.Fprintln(w.out, u.Message)
			return exitGood
		default:
			fmt.Fprintln(w.out, u.Message)
			for _, l := range u.Output {
				fmt.Fprintln(w.out, "  | "+l)
			}
			return exitRolledBack
		}
		select {
		case <-ctx.Done():
			why := "no verdict from the update guard"
			if lastErr != nil {
				why = "the box does not answer: " + lastErr.Error()
			}
			fmt.Fprintf(w.out, "cannot tell whether the update holds: %s within %v; look at gokrazy's status page (relais-guard) or relais status on the box\n", why, timeout)
			return exitUnknown
		case <-time.After(w.poll):
		}
	}
}

// latest is the last verdict line about this update: on an image other
// than the one before, or told after the update began. gokrazy keeps a
// program's output of this boot only, and the guard prints its last
// verdict at every boot, so the verdict on a rolled-back image is there
// on the image the box came back to.
func (w waiter) latest(lines []string) *control.Update {
	var found *control.Update
	for _, l := range lines {
		j, ok := strings.CutPrefix(strings.TrimSpace(l), guard.VerdictPrefix)
		if !ok {
			continue
		}
		var u control.Update
		if json.Unmarshal([]byte(j), &u) != nil {
			continue
		}
		newImage := u.Image != "" && !strings.HasPrefix(w.before, u.Image)
		if newImage || u.At.After(w.since.Add(-clockSkew)) {
			found = &u
		}
	}
	return found
}
