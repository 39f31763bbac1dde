// masked runs a command (gok) with the site's update password masked in
// its output, which goes to the terminal and, with -log, to a file: gok
// prints its update URL, password included. It exits with the command's
// exit code.
//
//	go run ./image/cmd/masked -site image/sites/chu-nord.env -log image/build/x.img.log -- gok -i DIR overwrite ...
package main

import (
	"errors"
	"flag"
	"io"
	"log"
	"os"
	"os/exec"

	"github.com/relais/relais/image"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("masked: ")
	var (
		site    = flag.String("site", "image/site.env", "site file (RELAIS_HTTP_PASSWORD); the environment overrides it")
		logPath = flag.String("log", "", "also write the masked output to this file")
	)
	flag.Parse()
	if flag.NArg() == 0 {
		log.Fatal("no command: masked [-site FILE] [-log FILE] -- COMMAND ARGS...")
	}
	s, err := image.LoadSite(*site, os.Getenv)
	if err != nil {
		log.Fatal(err)
	}
	out := io.Writer(os.Stdout)
	if *logPath != "" {
		f, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		out = io.MultiWriter(os.Stdout, f)
	}
	m := image.NewMaskWriter(out, s.Password)
	cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, m, m
	err = cmd.Run()
	m.Close()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		os.Exit(exit.ExitCode())
	case err != nil:
		log.Fatal(err)
	}
}
