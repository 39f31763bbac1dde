package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/relais/relais/appliance/config"
)

// ErrNotAvailable means the daemon has no such endpoint (an older relaisd,
// or a setting this box cannot change yet).
var ErrNotAvailable = errors.New("not yet available on this box")

// notAvailable is the daemon's own word on why it can't: errors.Is(err,
// ErrNotAvailable) holds.
type notAvailable struct{ msg string }

func (e *notAvailable) Error() string { return e.msg }
func (e *notAvailable) Unwrap() error { return ErrNotAvailable }

// Client talks to relaisd's control socket.
type Client struct {
	http *http.Client
}

// NewClient returns a client for the socket at path. Each request is bounded
// by its context; the console passes short deadlines so that a slow daemon
// shows as "not answering" instead of freezing the screen.
func NewClient(path string) *Client {
	return &Client{http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns: 2,
	}}}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://relaisd"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rsp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("relaisd not answering: %w", err)
	}
	defer rsp.Body.Close()
	if rsp.StatusCode >= 300 {
		e := &Error{}
		if rsp.StatusCode == http.StatusNotImplemented {
			json.NewDecoder(rsp.Body).Decode(e)
			return &notAvailable{e.Message}
		}
		if json.NewDecoder(rsp.Body).Decode(e) != nil || e.Message == "" {
			if rsp.StatusCode == http.StatusNotFound || rsp.StatusCode == http.StatusMethodNotAllowed || rsp.StatusCode == http.StatusNotImplemented {
				// Not one of our answers: the daemon has no such endpoint.
				return fmt.Errorf("%s %s: %w", method, path, ErrNotAvailable)
			}
			e.Message = rsp.Status
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(rsp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, "GET", "/v1/status", nil, &s)
}

// PostGuardVerdict hands relaisd the update guard's verdict.
func (c *Client) PostGuardVerdict(ctx context.Context, v GuardVerdict) error {
	return c.do(ctx, "POST", "/v1/events/guard", v, nil)
}

func (c *Client) Config(ctx context.Context) (config.Config, error) {
	var cfg config.Config
	return cfg, c.do(ctx, "GET", "/v1/config", nil, &cfg)
}

// ValidateConfig checks a configuration without applying it; a *Error
// lists the fields in error.
func (c *Client) ValidateConfig(ctx context.Context, cfg config.Config) error {
	return c.do(ctx, "POST", "/v1/config/validate", cfg, nil)
}

// SetConfig validates, saves and applies a configuration.
func (c *Client) SetConfig(ctx context.Context, cfg config.Config) error {
	return c.do(ctx, "PUT", "/v1/config", cfg, nil)
}

func (c *Client) Studies(ctx context.Context, limit int) ([]Study, error) {
	var s []Study
	return s, c.do(ctx, "GET", "/v1/studies?limit="+strconv.Itoa(limit), nil, &s)
}

func (c *Client) Study(ctx context.Context, uid string) (Study, []Event, error) {
	var out struct {
		Study    Study   `json:"study"`
		Timeline []Event `json:"timeline"`
	}
	err := c.do(ctx, "GET", "/v1/studies/"+url.PathEscape(uid), nil, &out)
	return out.Study, out.Timeline, err
}

// EventQuery selects events; zero fields do not restrict.
type EventQuery struct {
	Since, Until time.Time
	Kinds        []string
	Limit        int
}

func (q EventQuery) values() url.Values {
	v := url.Values{}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.Format(time.RFC3339Nano))
	}
	if len(q.Kinds) > 0 {
		v.Set("kind", strings.Join(q.Kinds, ","))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// Events returns events newest first.
func (c *Client) Events(ctx context.Context, q EventQuery) ([]Event, error) {
	var e []Event
	return e, c.do(ctx, "GET", "/v1/events?"+q.values().Encode(), nil, &e)
}

// StreamEvents calls fn with each new event as it is logged, oldest first,
// until ctx ends or fn returns false.
func (c *Client) StreamEvents(ctx context.Context, q EventQuery, fn func(Event) bool) error {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://relaisd/v1/events/stream?"+q.values().Encode(), nil)
	if err != nil {
		return err
	}
	rsp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("relaisd not answering: %w", err)
	}
	defer rsp.Body.Close()
	sc := bufio.NewScanner(rsp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var e Event
		if json.Unmarshal([]byte(line), &e) == nil && !fn(e) {
			return nil
		}
	}
	return sc.Err()
}

func (c *Client) Callers(ctx context.Context) ([]Caller, error) {
	var cs []Caller
	return cs, c.do(ctx, "GET", "/v1/callers", nil, &cs)
}

func (c *Client) Echo(ctx context.Context, r EchoRequest) (EchoResult, error) {
	var res EchoResult
	return res, c.do(ctx, "POST", "/v1/actions/echo", r, &res)
}

func (c *Client) Retry(ctx context.Context, dest string) error {
	return c.do(ctx, "POST", "/v1/actions/retry", DestinationRequest{dest}, nil)
}

// Parked lists the instances parked after repeated failures (0: all).
func (c *Client) Parked(ctx context.Context, limit int) ([]ParkedInstance, error) {
	var out []ParkedInstance
	return out, c.do(ctx, "GET", fmt.Sprintf("/v1/parked?limit=%d", limit), nil, &out)
}

// RetryInstance makes one failed or parked instance due now at a destination.
func (c *Client) RetryInstance(ctx context.Context, r InstanceRequest) (Changed, error) {
	var out Changed
	return out, c.do(ctx, "POST", "/v1/actions/retry-instance", r, &out)
}

// RetryStudy makes a study's failed and parked instances due now.
func (c *Client) RetryStudy(ctx context.Context, r StudyRequest) (Changed, error) {
	var out Changed
	return out, c.do(ctx, "POST", "/v1/actions/retry-study", r, &out)
}

// Resend queues a whole study again, whatever it reached.
func (c *Client) Resend(ctx context.Context, r StudyRequest) (Changed, error) {
	var out Changed
	return out, c.do(ctx, "POST", "/v1/actions/resend", r, &out)
}

// Abandon gives up on a parked instance at a destination (an audit event).
func (c *Client) Abandon(ctx context.Context, r InstanceRequest) error {
	return c.do(ctx, "POST", "/v1/actions/abandon", r, nil)
}

func (c *Client) Pause(ctx context.Context, dest string) error {
	return c.do(ctx, "POST", "/v1/actions/pause", DestinationRequest{dest}, nil)
}

func (c *Client) Resume(ctx context.Context, dest string) error {
	return c.do(ctx, "POST", "/v1/actions/resume", DestinationRequest{dest}, nil)
}

func (c *Client) MarkUrgent(ctx context.Context, study string, urgent bool) error {
	return c.do(ctx, "POST", "/v1/actions/urgent", UrgentRequest{study, urgent}, nil)
}

func (c *Client) Approve(ctx context.Context, ae, address string) error {
	return c.do(ctx, "POST", "/v1/actions/approve", CallerRequest{ae, address}, nil)
}

func (c *Client) Deny(ctx context.Context, ae, address string) error {
	return c.do(ctx, "POST", "/v1/actions/deny", CallerRequest{ae, address}, nil)
}

func (c *Client) Purge(ctx context.Context) (PurgeResult, error) {
	var r PurgeResult
	return r, c.do(ctx, "POST", "/v1/actions/purge", nil, &r)
}

// Conflicts lists the instances that arrived again with other bytes.
func (c *Client) Conflicts(ctx context.Context) ([]Conflict, error) {
	var cs []Conflict
	return cs, c.do(ctx, "GET", "/v1/conflicts", nil, &cs)
}

// Conflict returns one instance's copies, each flagged one with how its
// header differs from the held copy's.
func (c *Client) Conflict(ctx context.Context, uid string) (Conflict, error) {
	var x Conflict
	return x, c.do(ctx, "GET", "/v1/conflicts/"+url.PathEscape(uid), nil, &x)
}

// ResolveConflict corrects with, or discards, a flagged copy.
func (c *Client) ResolveConflict(ctx context.Context, r ConflictRequest) (ConflictResult, error) {
	var res ConflictResult
	return res, c.do(ctx, "POST", "/v1/actions/conflict", r, &res)
}

// Tunnel returns the tunnel's configuration and state (with our public key).
func (c *Client) Tunnel(ctx context.Context) (TunnelInfo, error) {
	var t TunnelInfo
	return t, c.do(ctx, "GET", "/v1/tunnel", nil, &t)
}

// SetTunnel validates, saves and applies the tunnel's configuration.
func (c *Client) SetTunnel(ctx context.Context, t config.Tunnel) error {
	return c.do(ctx, "PUT", "/v1/tunnel", t, nil)
}

// ImportTunnel hands relaisd a wg-quick file; its private key, if any, is
// ignored (the box keeps its own) and the answer says so.
func (c *Client) ImportTunnel(ctx context.Context, wgQuick string) (ImportResult, error) {
	var r ImportResult
	return r, c.do(ctx, "POST", "/v1/tunnel/import", wgQuick, &r)
}

// ExportTunnel returns the tunnel as a wg-quick file, without secrets.
func (c *Client) ExportTunnel(ctx context.Context) (string, error) {
	var s string
	return s, c.do(ctx, "GET", "/v1/tunnel/export", nil, &s)
}

// Network returns the box's network settings.
func (c *Client) Network(ctx context.Context) (Network, error) {
	var n Network
	return n, c.do(ctx, "GET", "/v1/network", nil, &n)
}

// SetNetwork applies the box's network settings.
func (c *Client) SetNetwork(ctx context.Context, n Network) error {
	return c.do(ctx, "PUT", "/v1/network", n, nil)
}

// ConsoleKeys returns the keys allowed on the console over SSH.
func (c *Client) ConsoleKeys(ctx context.Context) (ConsoleKeys, error) {
	var k ConsoleKeys
	return k, c.do(ctx, "GET", "/v1/console-keys", nil, &k)
}

// AddConsoleKey allows one more key (an authorized_keys line) on the
// console over SSH; by names who asks, for the log.
func (c *Client) AddConsoleKey(ctx context.Context, line, by string) (ConsoleKey, error) {
	var k ConsoleKey
	return k, c.do(ctx, "POST", "/v1/console-keys", ConsoleKeyRequest{Key: line, By: by}, &k)
}

// RemoveConsoleKey removes the key with this fingerprint from the console's list.
func (c *Client) RemoveConsoleKey(ctx context.Context, fingerprint, by string) error {
	return c.do(ctx, "POST", "/v1/console-keys/remove", ConsoleKeyRequest{Fingerprint: fingerprint, By: by}, nil)
}
