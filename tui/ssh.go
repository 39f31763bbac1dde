package tui

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	tea "charm.land/bubbletea/v2"
	"charm.land/ssh"
	"charm.land/wish/v2"
	"charm.land/wish/v2/activeterm"
	"charm.land/wish/v2/bubbletea"
)

// Over SSH, the regional team gets the same console through the tunnel.
// Only keys listed in the data folder may log in; the host key is made on
// first use and kept there, readable by the owner only.
const (
	AuthorizedKeysFile = "console_authorized_keys"
	HostKeyFile        = "console_host_key"
)

// ServeSSH serves a console to each SSH session on ln until ctx ends.
// opts.Where is set per session.
func ServeSSH(ctx context.Context, ln net.Listener, dataDir string, opts Options) error {
	keys := filepath.Join(dataDir, AuthorizedKeysFile)
	if _, err := os.Stat(keys); err != nil {
		return fmt.Errorf("console over SSH needs the allowed public keys in %s: %w", keys, err)
	}
	srv, err := wish.NewServer(
		wish.WithHostKeyPath(filepath.Join(dataDir, HostKeyFile)),
		wish.WithAuthorizedKeys(keys),
		wish.WithMiddleware(
			bubbletea.Middleware(func(s ssh.Session) (tea.Model, []tea.ProgramOption) {
				o := opts
				o.Where = "ssh " + s.User() + "@" + s.RemoteAddr().String()
				return New(o), nil
			}),
			activeterm.Middleware(), // a console needs a terminal: ssh -t
		),
	)
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
