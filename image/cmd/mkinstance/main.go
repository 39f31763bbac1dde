// mkinstance makes a buildable gokrazy instance for one site from a
// committed Relais config (image/pc or image/pi), the site's hostname and
// update password (from the environment or a git-ignored site file) and the
// pinned gokrazy packages. It prints the instance folder, for gok -i.
//
//	go run ./image/cmd/mkinstance -box pc -site image/site.env -out image/build
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/relais/relais/image"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("mkinstance: ")
	var (
		box      = flag.String("box", "pc", "kind of box: "+strings.Join(boxes(), " or "))
		site     = flag.String("site", "image/site.env", "site file: KEY=VALUE lines (RELAIS_HOSTNAME, RELAIS_HTTP_PASSWORD, RELAIS_UPDATE_HOST, RELAIS_CONSOLE_KEYS); the environment overrides it")
		out      = flag.String("out", "image/build", "folder for generated instances (git-ignored)")
		checkout = flag.String("checkout", ".", "the Relais checkout the packages are built from")
		update   = flag.Bool("update", false, "the instance is for gok update: require RELAIS_UPDATE_HOST")
	)
	flag.Parse()
	dir, err := run(*box, *site, *out, *checkout, *update)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(dir)
}

func run(box, sitePath, out, checkout string, update bool) (string, error) {
	kind, ok := image.Boxes[box]
	if !ok {
		return "", fmt.Errorf("box %q: want %s", box, strings.Join(boxes(), " or "))
	}
	checkout, err := filepath.Abs(checkout)
	if err != nil {
		return "", err
	}
	in, err := image.Load(filepath.Join(checkout, "image", box, "config.json"))
	if err != nil {
		return "", err
	}
	if s := in.Secrets(); len(s) > 0 {
		return "", fmt.Errorf("the committed %s config holds secrets (%s): remove them, they come from the site", box, strings.Join(s, ", "))
	}
	site, err := image.LoadSite(sitePath, os.Getenv)
	if err != nil {
		return "", err
	}
	if update && site.UpdateHost == "" {
		return "", fmt.Errorf("no address to update: set %s to the box's address in the tunnel", image.EnvUpdateHost)
	}
	inst, err := in.ForSite(site)
	if err != nil {
		return "", fmt.Errorf("%w (in %s or the environment)", err, sitePath)
	}
	if err := inst.Validate(kind); err != nil {
		return "", err
	}
	mod, err := os.ReadFile(filepath.Join(checkout, "image", "gokrazy.mod"))
	if err != nil {
		return "", err
	}
	dir, err := filepath.Abs(filepath.Join(out, inst.Hostname+"-"+box))
	if err != nil {
		return "", err
	}
	if err := image.WriteInstance(dir, inst, mod, checkout); err != nil {
		return "", fmt.Errorf("write instance %s: %w", dir, err)
	}
	return dir, nil
}

func boxes() []string {
	var b []string
	for k := range image.Boxes {
		b = append(b, k)
	}
	sort.Strings(b)
	return b
}
