package gokrazy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeStatus serves /status and /log as gokrazy does: JSON when asked for,
// and a log stream that never ends.
func fakeStatus(t *testing.T) *LocalAPI {
	t.Helper()
	started := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("path") != "/user/relaisd" {
			http.Error(w, "service not found", http.StatusNotFound)
			return
		}
		if !strings.Contains(r.Header.Get("Accept"), "application/json") {
			fmt.Fprint(w, "<html>")
			return
		}
		fmt.Fprintf(w, `{"Stopped":false,"StartTime":%q,"Pid":42,"Path":"/user/relaisd","Args":["/user/relaisd","-data=/perm/relais"],"Diverted":""}`, started.Format(time.RFC3339Nano))
	})
	mux.HandleFunc("/log", func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("stream") != "stderr" {
			http.Error(w, "stream not found", http.StatusNotFound)
			return
		}
		for i := range 120 {
			fmt.Fprintf(w, "line %d\n", i)
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	dir := t.TempDir()
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	api, err := NewLocalAPI(sock, filepath.Join(dir, "no-password"))
	if err != nil {
		t.Fatal(err)
	}
	return api
}

func TestServiceStatusReadsGokrazysJSON(t *testing.T) {
	api := fakeStatus(t)
	s, err := api.ServiceStatus(context.Background(), ServicePath("relaisd"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Stopped || s.Pid != 42 || s.StartTime.Hour() != 10 || len(s.Args) != 2 {
		t.Fatalf("status %+v", s)
	}
	if _, err := api.ServiceStatus(context.Background(), ServicePath("relais-guard")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a missing service: %v, want ErrNotFound", err)
	}
}

func TestOutputReturnsTheLastLinesOfANeverEndingStream(t *testing.T) {
	api := fakeStatus(t)
	start := time.Now()
	lines, err := api.Output(context.Background(), ServicePath("relaisd"), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != maxLines || lines[len(lines)-1] != "line 119" {
		t.Fatalf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
}
