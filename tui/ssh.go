package tui

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"

	tea "charm.land/bubbletea/v2"
	"charm.land/ssh"
	"charm.land/wish/v2"
	"charm.land/wish/v2/activeterm"
	"charm.land/wish/v2/bubbletea"
	"github.com/relais/relais/appliance/consolekeys"
)

// Over SSH, the regional team gets the same console through the tunnel.
// Only the keys of the console's list may log in (appliance/consolekeys:
// the data folder's, or the image's while there is none), read at each
// login; the host key is made on first use and kept in the data folder,
// readable by the owner only.

// SSH is where the console over SSH keeps its keys, and how it is reached.
type SSH struct {
	// DataDir holds the host key and the box's list of allowed keys.
	DataDir string
	// ImageKeys is the image's list, used while DataDir has none ("": none).
	ImageKeys string
	// ProxyProtocol: each connection begins with a PROXY protocol header
	// naming its real source (relaisd's forward from the tunnel does it).
	// The header is believed: for a loopback listener only.
	ProxyProtocol bool
	// Logger gets logins, refused keys and unreadable lists; nil discards.
	Logger *slog.Logger
}

// ServeSSH serves a console to each SSH session on ln until ctx ends.
// opts.Where is set per session. With no key listed it serves all the same,
// refusing every login until a key is added.
func ServeSSH(ctx context.Context, ln net.Listener, s SSH, opts Options) error {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	files := consolekeys.In(s.DataDir, s.ImageKeys)
	if keys, from, err := files.Load(); err != nil {
		log.Warn("console over SSH: the list of allowed keys has bad lines", "err", err)
	} else if len(keys) == 0 {
		log.Warn("console over SSH: no key allowed yet, every login is refused until one is added (the console's Setup, Console keys)",
			"list", files.Box, "image_list", files.Image, "from", from)
	}
	sopts := []ssh.Option{
		wish.WithHostKeyPath(filepath.Join(s.DataDir, consolekeys.HostKeyFile)),
		wish.WithPublicKeyAuth(func(ctx ssh.Context, key ssh.PublicKey) bool {
			keys, _, err := files.Load()
			if err != nil {
				log.Warn("console over SSH: the list of allowed keys has bad lines", "err", err)
			}
			ok := consolekeys.Allows(keys, key)
			log.Info("console over SSH: login", "user", ctx.User(), "from", ctx.RemoteAddr().String(),
				"key", consolekeys.Key{PublicKey: key}.Fingerprint(), "allowed", ok)
			return ok
		}),
		wish.WithMiddleware(
			bubbletea.MiddlewareWithProgramHandler(func(s ssh.Session) *tea.Program {
				o := opts
				o.Where = "ssh " + s.User() + "@" + s.RemoteAddr().String()
				return tea.NewProgram(New(o), append(bubbletea.MakeOptions(s), tea.WithFilter(overSSH))...)
			}),
			activeterm.Middleware(), // a console needs a terminal: ssh -t
		),
	}
	if s.ProxyProtocol {
		sopts = append(sopts, ssh.EnableProxyProtocol())
	}
	srv, err := wish.NewServer(sopts...)
	if err != nil {
		return fmt.Errorf("console over SSH: %w", err)
	}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, ssh.ErrServerClosed) {
		return fmt.Errorf("console over SSH: %w", err)
	}
	return nil
}

// overSSH filters a session's messages: a remote session is never
// suspended (as wish's own filter does), and a terminal of 0×0 (ssh -tt with
// no terminal of its own, like a serial line) is taken as 80×24, or nothing
// would be drawn.
func overSSH(_ tea.Model, msg tea.Msg) tea.Msg {
	switch m := msg.(type) {
	case tea.SuspendMsg:
		return tea.ResumeMsg{}
	case tea.WindowSizeMsg:
		if m.Width <= 0 || m.Height <= 0 {
			return tea.WindowSizeMsg{Width: 80, Height: 24}
		}
	}
	return msg
}
