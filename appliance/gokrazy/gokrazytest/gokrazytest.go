// Package gokrazytest fakes gokrazy's init on its local API socket, for
// tests of the programs that talk to it (the real one runs only inside
// gokrazy): the service status and log routes, the update switch and
// reboot, with gokrazy's Basic authentication.
package gokrazytest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais/relais/appliance/gokrazy"
)

// Password is the fake's update password.
const Password = "s3cret-_"

// Init is the fake init. Its zero value has no service.
type Init struct {
	mu       sync.Mutex
	calls    []string
	services map[string]*Service
	// FailSwitch answers this many switches with an error.
	FailSwitch int
	// SBOM is the running image's SBOM hash, on the status page.
	SBOM string
}

// Service is a supervised program as the fake reports it.
type Service struct {
	Stopped   bool
	StartTime time.Time
	Pid       int
	Stdout    []string
	Stderr    []string
}

// Update changes the service at path (adding it) under the fake's lock.
func (f *Init) Update(path string, change func(*Service)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.services == nil {
		f.services = map[string]*Service{}
	}
	s := f.services[path]
	if s == nil {
		s = &Service{}
		f.services[path] = s
	}
	change(s)
}

// Start is a start of the program at path by the supervisor, as gokrazy
// logs it; lines are what it writes to stderr.
func (f *Init) Start(path string, lines ...string) {
	f.Update(path, func(s *Service) {
		s.Pid++
		s.StartTime = time.Now()
		s.Stderr = append(s.Stderr, fmt.Sprintf("%s gokrazy: attempt %d, starting [%q]", time.Now().Format("2006/01/02 15:04:05"), s.Pid-1, path))
		s.Stderr = append(s.Stderr, lines...)
	})
}

// Calls are the POSTs made, "POST /update/switch" and so on.
func (f *Init) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *Init) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if u, p, ok := r.BasicAuth(); !ok || u != "gokrazy" || p != Password {
		http.Error(w, "invalid username/password", http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	svc := f.services[r.FormValue("path")]
	var s Service
	if svc != nil {
		s = *svc
		s.Stdout, s.Stderr = slices.Clone(s.Stdout), slices.Clone(s.Stderr)
	}
	f.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/":
		f.mu.Lock()
		sbom := f.SBOM
		f.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"Hostname": "relais-test", "SBOMHash": sbom, "BuildTimestamp": "2026-12-01T10:00:00Z"})
	case r.Method == http.MethodGet && (r.URL.Path == "/status" || r.URL.Path == "/log"):
		if svc == nil {
			http.Error(w, "service not found", http.StatusNotFound)
			return
		}
		if r.URL.Path == "/status" {
			if !strings.Contains(r.Header.Get("Accept"), "application/json") {
				fmt.Fprint(w, "<html>status page</html>")
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"Stopped": s.Stopped, "StartTime": s.StartTime, "Pid": s.Pid, "Path": r.FormValue("path"), "Args": []string{r.FormValue("path")}, "Diverted": ""})
			return
		}
		lines := map[string][]string{"stdout": s.Stdout, "stderr": s.Stderr}[r.FormValue("stream")]
		for _, l := range lines[max(0, len(lines)-100):] {
			fmt.Fprintln(w, l)
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done() // gokrazy follows the output until the client leaves
	case r.Method == http.MethodPost:
		f.mu.Lock()
		defer f.mu.Unlock()
		if r.URL.Path == "/update/switch" && f.FailSwitch > 0 {
			f.FailSwitch--
			http.Error(w, "cmdline.txt: read-only file system", http.StatusInternalServerError)
			return
		}
		f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	default:
		http.Error(w, "not faked", http.StatusNotImplemented)
	}
}

// SetSBOM sets the running image's SBOM hash (an update).
func (f *Init) SetSBOM(sbom string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.SBOM = sbom
}

// ServeTCP serves f on a loopback port, as a box in the tunnel, until the
// test ends, and returns its host:port.
func ServeTCP(t testing.TB, f *Init) string {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Serve serves f on a unix socket until the test ends and returns a
// LocalAPI for it.
func Serve(t testing.TB, f *Init) *gokrazy.LocalAPI {
	t.Helper()
	return ServeHandler(t, f)
}

// ServeHandler serves any fake of gokrazy's local API like Serve.
func ServeHandler(t testing.TB, f http.Handler) *gokrazy.LocalAPI {
	t.Helper()
	dir, err := os.MkdirTemp("", "gk") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "gokrazy-http.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	pw := filepath.Join(dir, "gokr-pw.txt")
	if err := os.WriteFile(pw, []byte(Password+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	api, err := gokrazy.NewLocalAPI(sock, pw)
	if err != nil {
		t.Fatal(err)
	}
	return api
}
