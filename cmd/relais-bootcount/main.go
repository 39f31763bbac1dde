// relais-bootcount is the update guard's boot counter
// (appliance/guard/bootcount), a program of its own so that it still works
// when the guard (relais-guard) cannot run at all on a new image: at each
// boot of an image the guard has not judged, it counts the boot; when no
// verdict comes within -wait it reboots, and a boot beyond -boots switches
// back to the previous image. It imports nothing but the standard library
// and gokrazy's local API.
//
// It exits 0 when done (gokrazy leaves it stopped: a restart would count a
// boot that did not happen), 125 outside gokrazy.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/relais/relais/appliance/gokrazy"
	"github.com/relais/relais/appliance/guard/bootcount"
)

func main() {
	var (
		dir   = flag.String("dir", "/perm/relais/guard", "the update guard's folder: its record and the counter")
		boots = flag.Int("boots", 1, "boots a new image gets for the guard to judge it")
		wait  = flag.Duration("wait", 6*time.Minute, "how long a boot waits for the guard's verdict before rebooting")
	)
	flag.Parse()
	logger := log.New(os.Stderr, "relais-bootcount: ", 0)
	if _, err := os.Stat(bootcount.SBOMPath); err != nil {
		logger.Print("not on gokrazy: nothing to count")
		os.Exit(125)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	api, err := gokrazy.NewLocalAPI(gokrazy.LocalSocket, gokrazy.PasswordFile)
	if err != nil {
		logger.Printf("%v: cannot count", err)
		os.Exit(0)
	}
	o, err := bootcount.Run(ctx, bootcount.Config{Dir: *dir, API: api, Boots: *boots, Wait: *wait, Log: logger})
	if err != nil {
		logger.Printf("%s: %v", o, err)
		os.Exit(0)
	}
	logger.Print(o)
}
