package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/store"
	"github.com/relais/relais/testdata/peers"
)

// TestConfigAPIRefusesUnknownKeys: PUT /v1/config and POST
// /v1/config/validate read the body as config.Load reads the file: an
// unknown key, top level or nested, is a field error (422) with the path and a
// suggestion, a syntax error says line:column, and nothing is applied.
func TestConfigAPIRefusesUnknownKeys(t *testing.T) {
	b := startBox(t, testConfig(peers.FreePort(t), nil, false), boxOptions{})
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", SocketPath(b.dir))
	}}}
	send := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		rq, _ := http.NewRequest(method, "http://relaisd"+path, strings.NewReader(body))
		rsp, err := hc.Do(rq)
		if err != nil {
			t.Fatal(err)
		}
		defer rsp.Body.Close()
		var m map[string]any
		json.NewDecoder(rsp.Body).Decode(&m)
		return rsp.StatusCode, m
	}
	good, _ := json.Marshal(b.a.fileConfig())
	typo := strings.Replace(string(good), `"destinations"`, `"destinatons"`, 1)
	nested := strings.Replace(string(good), `"modalities":[{`, `"modalities":[{"adress":"10.0.0.1",`, 1)
	for _, path := range []string{"/v1/config/validate", "/v1/config"} {
		method := map[string]string{"/v1/config": "PUT", "/v1/config/validate": "POST"}[path]
		for _, tc := range []struct{ body, field, msg string }{
			{typo, "destinatons", "unknown field; did you mean destinations?"},
			{nested, "modalities[0].adress", "unknown field; did you mean address?"},
		} {
			code, m := send(method, path, tc.body)
			fields, _ := m["fields"].([]any)
			if code != 422 || len(fields) != 1 || fields[0].(map[string]any)["field"] != tc.field || fields[0].(map[string]any)["message"] != tc.msg {
				t.Errorf("%s %s: %d %v, want 422 and %s: %s", method, path, code, m, tc.field, tc.msg)
			}
		}
		code, m := send(method, path, "{\n\"port\": 104,\n}")
		if msg, _ := m["error"].(string); code != 400 || !strings.Contains(msg, "3:1: invalid character '}'") {
			t.Errorf("%s %s with a syntax error: %d %v", method, path, code, m)
		}
	}
	if code, m := send("PUT", "/v1/config", string(good)); code != 200 {
		t.Fatalf("the configuration as it is: %d %v", code, m)
	}
	if got := b.a.fileConfig(); len(got.Modalities) != 3 {
		t.Fatalf("a refused configuration was applied: %+v", got)
	}
}

// TestConfigChangeEventSaysWhatChanged: the event of a change lists the
// fields changed, old and new value.
func TestConfigChangeEventSaysWhatChanged(t *testing.T) {
	b := startBox(t, testConfig(peers.FreePort(t), nil, false), boxOptions{})
	c := b.a.fileConfig()
	c.Destinations = []config.Destination{{Name: "center", AETitle: "PACS", Host: "10.8.0.1", Port: 104}}
	c.Learning = true
	if err := b.a.SetConfig(c); err != nil {
		t.Fatal(err)
	}
	c = b.a.fileConfig() // a copy: SetConfig keeps the one it was given
	c.Destinations[0].Port = 11112
	if err := b.a.SetConfig(c); err != nil {
		t.Fatal(err)
	}
	evs, err := b.a.store.Events(t.Context(), store.EventQuery{Kinds: []store.Kind{store.KindConfig}, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, e := range evs {
		msgs = append(msgs, e.Message)
	}
	want := []string{
		"configuration changed: destinations[0].port: 104 → 11112",
		`configuration changed: learning: false → true; destinations[0]: added {name "center", ae_title "PACS", host "10.8.0.1", port 104}`,
	}
	if len(msgs) < 2 || msgs[0] != want[0] || msgs[1] != want[1] {
		t.Fatalf("events, newest first:\n %q\nwant first\n %q", msgs, want)
	}
}

// TestListenAddressBindsTheDICOMPortToOneAddress: listen_address (relaisd
// -listen) binds the SCP to one address; a change moves it; a bad one is
// refused.
func TestListenAddressBindsTheDICOMPortToOneAddress(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(peers.FreePort(t), nil, false)
	cfg.ListenAddress = "127.0.0.1"
	if err := config.Save(filepath.Join(dir, "relais.json"), cfg); err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{DataDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	peers.WaitForPort(t, cfg.Port)
	if got := a.Addr().String(); got != fmt.Sprintf("127.0.0.1:%d", cfg.Port) {
		t.Fatalf("listening on %s", got)
	}
	cfg.ListenAddress = "127.0.0.2"
	if err := a.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if got := a.Addr().String(); got != fmt.Sprintf("127.0.0.2:%d", cfg.Port) {
		t.Fatalf("after the change, listening on %s", got)
	}
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", cfg.Port)); err == nil {
		c.Close()
		t.Error("still listening on 127.0.0.1")
	}
	cfg.ListenAddress = "eth0"
	var ve config.ValidationError
	if err := a.SetConfig(cfg); !errors.As(err, &ve) || ve[0].Field != "listen_address" {
		t.Fatalf("listen_address eth0: %v", err)
	}
}
