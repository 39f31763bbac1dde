package gokrazy

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeInit stands in for gokrazy's init on its unix socket (the real one
// runs only inside gokrazy), checking what gokrazy checks.
type fakeInit struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeInit) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if u, p, ok := r.BasicAuth(); !ok || u != "gokrazy" || p != "secret" {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "expected a POST request", http.StatusBadRequest)
		return
	}
	call := r.URL.Path
	if r.URL.Path == "/stop" || r.URL.Path == "/restart" {
		c, err := r.Cookie("gokrazy_xsrf")
		if err != nil || c.Value == "0" || r.FormValue("xsrftoken") != c.Value {
			http.Error(w, "XSRF token mismatch", http.StatusForbidden)
			return
		}
		call += " " + r.FormValue("path")
		defer http.Redirect(w, r, "/status?path="+r.FormValue("path"), http.StatusSeeOther)
	}
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.mu.Unlock()
}

func startFake(t *testing.T, password string) (*LocalAPI, *fakeInit) {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "gokrazy-http.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeInit{}
	srv := &http.Server{Handler: f}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	pw := filepath.Join(dir, "gokr-pw.txt")
	os.WriteFile(pw, []byte(password+"\n"), 0o600)
	api, err := NewLocalAPI(sock, pw)
	if err != nil {
		t.Fatal(err)
	}
	return api, f
}

func TestLocalAPIAuthenticatesAndDrivesServices(t *testing.T) {
	api, f := startFake(t, "secret")
	ctx := context.Background()
	for _, step := range []func() error{
		func() error { return api.Switch(ctx) },
		func() error { return api.Stop(ctx, "/gokrazy/dhcp") },
		func() error { return api.Restart(ctx, "/gokrazy/dhcp") },
		func() error { return api.Reboot(ctx) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	want := "/update/switch,/stop /gokrazy/dhcp,/restart /gokrazy/dhcp,/reboot"
	if got := strings.Join(f.calls, ","); got != want {
		t.Fatalf("calls %s, want %s", got, want)
	}
}

func TestLocalAPIWrongPasswordIsAnError(t *testing.T) {
	api, f := startFake(t, "wrong")
	if err := api.Reboot(context.Background()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("reboot with a wrong password: %v, want a 401 error", err)
	}
	if len(f.calls) != 0 {
		t.Fatalf("calls %v", f.calls)
	}
}
