package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"

	"github.com/relais/relais/appliance"
	"github.com/relais/relais/appliance/config"
)

// daemonFlags are relaisd's command line. Those that override the
// configuration file get the file's checks, at start: a bad one is refused
// before anything is opened, not when the port is first listened on.
type daemonFlags struct {
	data       string // data folder: store, configuration, control socket
	config     string // configuration file (default data/relais.json)
	port       int    // DICOM port overriding the configuration; 0: not set
	ae         string // our AE title overriding the configuration
	listen     string // the one address to receive DICOM on; empty: every interface
	verbose    bool
	cpuprofile string
	metrics    string
	sshConsole string
	version    bool
}

// parseFlags reads relaisd's arguments; flag.ErrHelp when asked for help.
// Errors of syntax are also written to stderr with the usage.
func parseFlags(args []string, stderr io.Writer) (daemonFlags, error) {
	var f daemonFlags
	fs := flag.NewFlagSet("relaisd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.data, "data", defaultDataDir, "data folder: store, configuration, control socket")
	fs.IntVar(&f.port, "port", 0, "DICOM port, overriding the configuration (default "+fmt.Sprint(defaultPort)+")")
	fs.StringVar(&f.ae, "ae", "", "our AE title, overriding the configuration (default RELAIS)")
	fs.StringVar(&f.listen, "listen", "", "receive DICOM on this `ADDR`ess of the box only, overriding the configuration's listen_address (default: every interface)")
	fs.StringVar(&f.config, "config", "", "configuration file (default DATA/relais.json)")
	fs.BoolVar(&f.verbose, "v", false, "log debug messages")
	fs.StringVar(&f.cpuprofile, "cpuprofile", "", "write a CPU profile to this file until relaisd stops (for benchmarks)")
	fs.StringVar(&f.metrics, "metrics", "", "serve Prometheus /metrics on this TCP address; tunnel:PORT (the images' tunnel:9104) serves them on the tunnel's own address, following it, and on 127.0.0.1")
	fs.StringVar(&f.sshConsole, "ssh-console", "", "hand connections to `tunnel:PORT` on the tunnel's own address to the console over SSH on a loopback address: tunnel:22=127.0.0.1:2222 (the images', where relais-ssh listens)")
	fs.BoolVar(&f.version, "version", false, "print relaisd's version and the system image it runs on, then exit")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected argument %q: relaisd takes flags only (relaisd -h lists them)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	return f, f.check(set)
}

// check validates the flags given (set) as the configuration's fields are.
func (f daemonFlags) check(set map[string]bool) error {
	var errs []error
	add := func(name, msg string) {
		if msg != "" {
			errs = append(errs, fmt.Errorf("-%s: %s", name, msg))
		}
	}
	if set["ae"] {
		add("ae", config.CheckAE(f.ae))
	}
	if set["port"] {
		add("port", config.CheckPort(f.port))
	}
	add("listen", config.CheckListenAddress(f.listen))
	if f.data == "" {
		add("data", "a data folder is required")
	}
	if f.metrics != "" {
		if _, _, err := net.SplitHostPort(f.metrics); err != nil {
			add("metrics", fmt.Sprintf("%q is not host:port, like :9104", f.metrics))
		}
	}
	if f.sshConsole != "" {
		if _, _, err := appliance.ParseSSHConsole(f.sshConsole); err != nil {
			add("ssh-console", err.Error())
		}
	}
	return errors.Join(errs...)
}
