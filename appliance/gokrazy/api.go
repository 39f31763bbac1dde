// Package gokrazy talks to gokrazy's init on the box through its local API
// (the same HTTP API as on the network, on a unix socket): switching root
// partitions and rebooting for the update guard, reading a service's state
// and output for it (service.go), stopping and restarting gokrazy's own
// services (its DHCP client) for the network settings.
package gokrazy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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

// LocalAPI is gokrazy's HTTP API over its unix socket (or, from
// NewRemoteAPI, over the network).
type LocalAPI struct {
	socket   string // where requests go, for errors
	base     string // the URL requests are made to
	password string // "" sends no Authorization
	client   *http.Client
}

// NewRemoteAPI talks to gokrazy's API on a box over the network (host:port
// in the tunnel), with the update password: make update reads the guard's
// verdict so.
func NewRemoteAPI(hostport, password string) *LocalAPI {
	return &LocalAPI{socket: hostport, base: "http://" + hostport, password: password, client: &http.Client{
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
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
		base:     "http://gokrazy",
		password: password,
		client: &http.Client{
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return d.DialContext(ctx, "unix", socket)
				},
			},
			Timeout: 30 * time.Second,
			// /stop and /restart answer with a redirect to the status page.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
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

// Stop stops one of gokrazy's services (for example /gokrazy/dhcp) until
// the next boot or Restart.
func (g *LocalAPI) Stop(ctx context.Context, service string) error {
	return g.service(ctx, "/stop", service)
}

// Restart (re)starts a service under supervision.
func (g *LocalAPI) Restart(ctx context.Context, service string) error {
	return g.service(ctx, "/restart", service)
}

// service posts the form gokrazy's status page posts. Its XSRF check
// compares a cookie with a form value, both ours here: the socket and the
// password are the protection.
func (g *LocalAPI) service(ctx context.Context, path, service string) error {
	const token = "4242"
	form := url.Values{"path": {service}, "xsrftoken": {token}}
	return g.do(ctx, path, strings.NewReader(form.Encode()), func(req *http.Request) {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: "gokrazy_xsrf", Value: token})
	})
}

func (g *LocalAPI) post(ctx context.Context, path string) error {
	return g.do(ctx, path, nil, nil)
}

func (g *LocalAPI) do(ctx context.Context, path string, body io.Reader, prepare func(*http.Request)) error {
	resp, err := g.send(ctx, http.MethodPost, path, body, prepare)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// send makes one authenticated request; a status other than 200 or 303 is
// an error carrying gokrazy's answer. The caller closes the body.
func (g *LocalAPI) send(ctx context.Context, method, path string, body io.Reader, prepare func(*http.Request)) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, g.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("gokrazy %s: %w", path, err)
	}
	if prepare != nil {
		prepare(req)
	}
	if g.password != "" {
		req.SetBasicAuth("gokrazy", g.password)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("gokrazy %s via %s: %w", path, g.socket, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusSeeOther {
		defer resp.Body.Close()
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		err := fmt.Errorf("gokrazy %s: %s: %s", path, resp.Status, strings.TrimSpace(string(answer)))
		if resp.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("%w (%w)", err, ErrNotFound)
		}
		return nil, err
	}
	return resp, nil
}
