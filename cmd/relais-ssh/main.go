// relais-ssh serves the console over SSH to the regional team, on the box.
// It listens on loopback only: relaisd forwards the tunnel's port 22 to it
// (relaisd -ssh-console=tunnel:22=127.0.0.1:2222), so that the reading
// center's side reaches it and the hospital LAN does not. Each connection
// starts with a PROXY header from relaisd naming its real source, which the
// console's header shows.
//
// The allowed keys are read at each login (appliance/consolekeys): the data
// folder's list, edited from the console, or while there is none the
// image's (a site file's RELAIS_CONSOLE_KEYS). With none, it serves all the
// same and refuses every login, so that gokrazy does not restart it in a
// loop and a key added later works at once.
//
// It exits 0 when stopped, 125 on bad flags (gokrazy leaves it stopped),
// 1 when it cannot listen (restarted).
package main

import (
	"context"
	"flag"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/relais/relais/appliance/consolekeys"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/tui"
)

func main() {
	var (
		data   = flag.String("data", "/perm/relais", "relaisd's data folder: its control socket, the list of allowed keys, the host key")
		listen = flag.String("listen", "127.0.0.1:2222", "loopback `ADDR`ess relaisd forwards the tunnel's SSH port to")
		image  = flag.String("image-keys", consolekeys.ImageFile, "the image's list of allowed keys, used while the data folder has none")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := consolekeys.CheckListen(*listen); err != nil {
		log.Error("relais-ssh: -listen", "err", err)
		os.Exit(125)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Error("relais-ssh: cannot listen", "err", err)
		os.Exit(1)
	}
	log.Info("console over SSH: serving", "listen", ln.Addr().String(), "keys", filepath.Join(*data, consolekeys.File), "image_keys", *image)
	s := tui.SSH{DataDir: *data, ImageKeys: *image, ProxyProtocol: true, Logger: log}
	if err := tui.ServeSSH(ctx, ln, s, tui.Options{Socket: filepath.Join(*data, control.SocketName)}); err != nil {
		log.Error("relais-ssh stopped", "err", err)
		os.Exit(1)
	}
}
