package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pires/go-proxyproto"
	"golang.org/x/crypto/ssh"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/consolekeys"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/store"
)

// The console over SSH, for the regional team: relaisd owns the tunnel (in
// netstack mode nothing else can listen in it), so it forwards the tunnel's
// SSH port to the console program on loopback (relais-ssh on the box), and
// it keeps the list of keys allowed there, which the console edits.

// ParseSSHConsole reads Options.SSHConsole, "tunnel:PORT=ADDR": the port
// served on the tunnel's address, and the loopback address of the console.
func ParseSSHConsole(s string) (port, to string, err error) {
	listen, to, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", fmt.Errorf("%q: want %s:PORT=ADDR, like %s:22=127.0.0.1:2222", s, OnTunnel, OnTunnel)
	}
	if port, err = tunnelPort(listen); err != nil {
		return "", "", err
	}
	if err := consolekeys.CheckListen(to); err != nil {
		return "", "", err
	}
	return port, to, nil
}

// forwardConsole serves the tunnel's SSH port (intunnel.go): each
// connection is handed to the console on to.
func (a *Appliance) forwardConsole(to string) func(ctx context.Context, ln net.Listener) error {
	return func(ctx context.Context, ln net.Listener) error {
		for {
			c, err := ln.Accept()
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
					return nil
				}
				a.log.Warn("console over SSH: accept", "err", err)
				select { // out of descriptors, say: wait a little
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
				continue
			}
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				a.relayConsole(ctx, c, to)
			}()
		}
	}
}

// consoleAnswers checks that the console behind the forward listens: a
// relais-ssh that crashed or never started would otherwise be found only by
// the team trying to log in.
func consoleAnswers(to string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", to)
		if err != nil {
			return fmt.Errorf("the console (relais-ssh) does not answer on %s: %w", to, err)
		}
		return c.Close()
	}
}

// relayConsole copies one connection both ways until either side ends or
// ctx does (the tunnel is replaced, relaisd stops). The console past the
// forward would see loopback: a PROXY header tells it the source, and the
// event records it.
func (a *Appliance) relayConsole(ctx context.Context, c net.Conn, to string) {
	defer c.Close()
	from := c.RemoteAddr().String()
	host, _, _ := net.SplitHostPort(from)
	attrs := map[string]string{"from": from}
	d := net.Dialer{Timeout: 5 * time.Second}
	up, err := d.DialContext(ctx, "tcp", to)
	if err != nil && ctx.Err() != nil {
		return // the tunnel went, or relaisd stops
	}
	if err != nil {
		a.event(store.KindConsole, store.Warning, fmt.Sprintf("console over SSH: connection from %s dropped: the console does not answer on %s (%v)", host, to, err), attrs)
		return
	}
	defer up.Close()
	a.event(store.KindConsole, store.Info, "console over SSH: connection from "+host, attrs)
	began := time.Now()
	stop := context.AfterFunc(ctx, func() {
		c.Close()
		up.Close()
	})
	defer stop()
	if _, err := proxyproto.HeaderProxyFromAddrs(1, c.RemoteAddr(), c.LocalAddr()).WriteTo(up); err != nil {
		a.log.Warn("console over SSH: PROXY header", "err", err)
		return
	}
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(up, c)
		done <- struct{}{}
	}()
	go func() {
		io.Copy(c, up)
		done <- struct{}{}
	}()
	<-done
	c.Close()
	up.Close()
	<-done
	a.log.Info("console over SSH: connection closed", "from", from, "after", time.Since(began).Round(time.Second))
}

// consoleKeys is the console's list: the data folder's, or the image's
// while there is none.
func (a *Appliance) consoleKeys() consolekeys.Files {
	return consolekeys.In(a.opts.DataDir, a.opts.ConsoleKeysImage)
}

// ConsoleKeys is the list in force, as the console shows it.
func (a *Appliance) ConsoleKeys() control.ConsoleKeys {
	files := a.consoleKeys()
	keys, from, err := files.Load()
	out := control.ConsoleKeys{Keys: []control.ConsoleKey{}}
	switch from {
	case "":
	case files.Box:
		out.From = control.ConsoleKeysBox
	case files.Image:
		out.From = control.ConsoleKeysImage
	}
	if err != nil {
		out.Error = err.Error()
	}
	for _, k := range keys {
		out.Keys = append(out.Keys, describeKey(k))
	}
	if b, err := os.ReadFile(filepath.Join(a.opts.DataDir, consolekeys.HostKeyFile+".pub")); err == nil {
		if pk, _, _, _, err := ssh.ParseAuthorizedKey(b); err == nil {
			out.HostKey = ssh.FingerprintSHA256(pk)
		}
	}
	return out
}

func describeKey(k consolekeys.Key) control.ConsoleKey {
	return control.ConsoleKey{Fingerprint: k.Fingerprint(), Type: k.Type(), Comment: k.Comment}
}

// errKeyNotFound: no key of the list has the fingerprint.
var errKeyNotFound = errors.New("no such key in the console's list")

// editConsoleKeys changes the list in force and saves it as the box's own
// (the image's list, once edited, is copied). A list with bad lines is not
// edited: saving would drop them unseen.
func (a *Appliance) editConsoleKeys(edit func([]consolekeys.Key) ([]consolekeys.Key, error)) error {
	a.keysMu.Lock()
	defer a.keysMu.Unlock()
	files := a.consoleKeys()
	keys, _, err := files.Load()
	if err != nil {
		return fmt.Errorf("%w: fix or delete those lines first", err)
	}
	if keys, err = edit(keys); err != nil {
		return err
	}
	return config.WriteFileAtomic(files.Box, consolekeys.Format(keys), 0o600)
}

// AddConsoleKey allows a key (an authorized_keys line) on the console over
// SSH; who asked goes into the event.
func (a *Appliance) AddConsoleKey(line, who string) (control.ConsoleKey, error) {
	k, err := consolekeys.ParseLine(line)
	if err != nil {
		return control.ConsoleKey{}, err
	}
	added := false
	err = a.editConsoleKeys(func(keys []consolekeys.Key) ([]consolekeys.Key, error) {
		if consolekeys.Allows(keys, k.PublicKey) {
			return keys, nil
		}
		added = true
		return append(keys, k), nil
	})
	if err != nil {
		return control.ConsoleKey{}, err
	}
	if added {
		a.event(store.KindConsole, store.Info, fmt.Sprintf("console over SSH: key %s allowed, by %s", keyWords(k), who),
			map[string]string{"fingerprint": k.Fingerprint(), "by": who})
	}
	return describeKey(k), nil
}

// RemoveConsoleKey removes the key with fingerprint fp from the list.
func (a *Appliance) RemoveConsoleKey(fp, who string) error {
	var gone consolekeys.Key
	err := a.editConsoleKeys(func(keys []consolekeys.Key) ([]consolekeys.Key, error) {
		i := consolekeys.Index(keys, strings.TrimSpace(fp))
		if i < 0 {
			return nil, fmt.Errorf("%w: %s", errKeyNotFound, fp)
		}
		gone = keys[i]
		return append(keys[:i:i], keys[i+1:]...), nil
	})
	if err != nil {
		return err
	}
	a.event(store.KindConsole, store.Info, fmt.Sprintf("console over SSH: key %s removed, by %s", keyWords(gone), who),
		map[string]string{"fingerprint": gone.Fingerprint(), "by": who})
	return nil
}

// keyWords names a key in an event: its fingerprint, type and comment.
func keyWords(k consolekeys.Key) string {
	s := k.Fingerprint() + " (" + k.Type()
	if k.Comment != "" {
		s += ", " + k.Comment
	}
	return s + ")"
}

func (a *Appliance) consoleKeyRoutes(mux *http.ServeMux) {
	by := func(r *http.Request, req control.ConsoleKeyRequest) string {
		who := caller(r.Context())
		if req.By != "" {
			who = fmt.Sprintf("%s (%s)", req.By, who)
		}
		return who
	}
	mux.HandleFunc("GET /v1/console-keys", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, a.ConsoleKeys())
	})
	mux.HandleFunc("POST /v1/console-keys", func(w http.ResponseWriter, r *http.Request) {
		var req control.ConsoleKeyRequest
		if !readJSON(w, r, &req) {
			return
		}
		k, err := a.AddConsoleKey(req.Key, by(r, req))
		if err != nil {
			writeError(w, 422, err)
			return
		}
		writeJSON(w, 200, k)
	})
	mux.HandleFunc("POST /v1/console-keys/remove", func(w http.ResponseWriter, r *http.Request) {
		var req control.ConsoleKeyRequest
		if !readJSON(w, r, &req) {
			return
		}
		switch err := a.RemoveConsoleKey(req.Fingerprint, by(r, req)); {
		case errors.Is(err, errKeyNotFound):
			writeError(w, 404, err)
		case err != nil:
			writeError(w, 422, err)
		default:
			writeJSON(w, 200, struct{}{})
		}
	})
}
