package guard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// gokrazy's local API: its init serves the same HTTP API as on the network
// on a unix socket (github.com/gokrazy/gokrazy, listeners.go), with the same
// Basic authentication (user gokrazy, the password the packer wrote to
// /etc/gokr-pw.txt) unless the image has no password.
const (
	LocalSocket  = "/run/gokrazy-http.sock"
	PasswordFile = "/etc/gokr-pw.txt"
)

// API is what the guard asks of gokrazy to go back to the previous image.
type API interface {
	// Switch makes the inactive root partition the one to boot next. After
	// an update reboot, the inactive partition holds the image from before.
	Switch(ctx context.Context) error
	// Reboot restarts the machine. gokrazy stops the services (relaisd gets
	// SIGTERM) and unmounts /perm first.
	Reboot(ctx context.Context) error
}

// LocalAPI is gokrazy's HTTP API over its unix socket.
type LocalAPI struct {
	socket   string
	password string // "" sends no Authorization
	client   *http.Client
}

// NewLocalAPI talks to gokrazy through socket, authenticating with the
// password in passwordFile (none if the file does not exist).
func NewLocalAPI(socket, passwordFile string) (*LocalAPI, error) {
	var password string
	switch b, err := os.ReadFile(passwordFile); {
	case err == nil:
		password = strings.TrimSpace(string(b))
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("gokrazy API password: %w", err)
	}
	var d net.Dialer
	return &LocalAPI{
		socket:   socket,
		password: password,
		client: &http.Client{
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return d.DialContext(ctx, "unix", socket)
				},
			},
			Timeout: 30 * time.Second,
		},
	}, nil
}

// Switch is POST /update/switch.
func (g *LocalAPI) Switch(ctx context.Context) error {
	return g.post(ctx, "/update/switch")
}

// Reboot is POST /reboot, asynchronous (gokrazy answers before it stops the
// services, relaisd included) and without kexec: a full restart through the
// firmware, as after a power cut, which does not depend on the image being
// left.
func (g *LocalAPI) Reboot(ctx context.Context) error {
	return g.post(ctx, "/reboot?async=true&kexec=off")
}

func (g *LocalAPI) post(ctx context.Context, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://gokrazy"+path, nil)
	if err != nil {
		return fmt.Errorf("gokrazy %s: %w", path, err)
	}
	if g.password != "" {
		req.SetBasicAuth("gokrazy", g.password)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return fmt.Errorf("gokrazy %s via %s: %w", path, g.socket, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("gokrazy %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
