package gokrazy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// ErrNotFound means gokrazy has no such service (the image does not run
// that package).
var ErrNotFound = errors.New("no such service")

// Service is what gokrazy's /status?path=… says of a supervised program,
// as its service.MarshalJSON writes it (github.com/gokrazy/gokrazy,
// supervise.go). There is no restart counter: every start sets StartTime
// (and a new Pid), one second after the previous run ended.
type Service struct {
	// Stopped is set when gokrazy will not start the program again: it
	// exited 0 or 125, or someone stopped it.
	Stopped   bool      `json:"Stopped"`
	StartTime time.Time `json:"StartTime"`
	Pid       int       `json:"Pid"`
	Path      string    `json:"Path"`
	Args      []string  `json:"Args"`
}

// ServicePath is where gokrazy installs a Go package's binary: /user/NAME,
// NAME being the last element of the package path.
func ServicePath(name string) string { return "/user/" + name }

// ServiceStatus is GET /status?path=PATH, in JSON (gokrazy answers JSON when
// the Accept header asks for it).
func (g *LocalAPI) ServiceStatus(ctx context.Context, path string) (Service, error) {
	resp, err := g.send(ctx, http.MethodGet, "/status?path="+url.QueryEscape(path), nil, func(req *http.Request) {
		req.Header.Set("Accept", "application/json")
	})
	if err != nil {
		return Service{}, err
	}
	defer resp.Body.Close()
	var s Service
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return Service{}, fmt.Errorf("gokrazy status of %s: %w", path, err)
	}
	return s, nil
}

// maxLines is how many lines gokrazy keeps per stream of a service.
const maxLines = 100

// Output returns what gokrazy kept of a service's stderr (where Go programs
// log and panic, and gokrazy writes "attempt N, starting"), oldest first.
// gokrazy's /log streams its ring buffer and then follows the output, never
// ending: Output reads for wait (a second is plenty on the local socket) and
// returns what came.
func (g *LocalAPI) Output(ctx context.Context, path string, wait time.Duration) ([]string, error) {
	return g.Log(ctx, path, "stderr", wait)
}

// Log is Output for one stream: stdout or stderr.
func (g *LocalAPI) Log(ctx context.Context, path, stream string, wait time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	resp, err := g.send(ctx, http.MethodGet, "/log?stream="+url.QueryEscape(stream)+"&path="+url.QueryEscape(path), nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > maxLines {
			lines = lines[1:]
		}
	}
	// The stream ends only by our deadline: what came until then is the
	// answer. An error before any line is a failure.
	if err := sc.Err(); err != nil && len(lines) == 0 && ctx.Err() == nil {
		return nil, fmt.Errorf("gokrazy %s of %s: %w", stream, path, err)
	}
	return lines, nil
}

// Overview is what gokrazy's status page (GET /, in JSON) says of the image.
type Overview struct {
	Hostname       string `json:"Hostname"`
	SBOMHash       string `json:"SBOMHash"`
	BuildTimestamp string `json:"BuildTimestamp"`
}

// Overview is GET / in JSON.
func (g *LocalAPI) Overview(ctx context.Context) (Overview, error) {
	resp, err := g.send(ctx, http.MethodGet, "/", nil, func(req *http.Request) {
		req.Header.Set("Accept", "application/json")
	})
	if err != nil {
		return Overview{}, err
	}
	defer resp.Body.Close()
	var o Overview
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
		return Overview{}, fmt.Errorf("gokrazy overview: %w", err)
	}
	return o, nil
}
