package vpn

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestStateFromHandshakeAge(t *testing.T) {
	now := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		last time.Time
		want State
	}{
		{time.Time{}, StateDown}, // never
		{now, StateUp},
		{now.Add(-5 * time.Second), StateUp},
		{now.Add(-UpWithin), StateUp},
		{now.Add(-UpWithin - time.Second), StateDown},
		{now.Add(-time.Hour), StateDown},
		{now.Add(2 * time.Second), StateUp}, // clock stepped back
	} {
		if got := stateAt(tc.last, now); got != tc.want {
			t.Errorf("handshake %v before now: %s, want %s", now.Sub(tc.last), got, tc.want)
		}
	}
}

func TestRate(t *testing.T) {
	if got := rate(1000, 3000, 2*time.Second); got != 1000 {
		t.Errorf("rate %v, want 1000 B/s", got)
	}
	if got := rate(3000, 10, time.Second); got != 0 {
		t.Errorf("counter reset: rate %v, want 0", got)
	}
	if got := rate(0, 10, 0); got != 0 {
		t.Errorf("no interval: rate %v, want 0", got)
	}
}

func TestNeedResolve(t *testing.T) {
	now := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	for _, tc := range []struct {
		name                       string
		lastResolve, lastHandshake time.Time
		known, want                bool
	}{
		{"answering", ago(time.Hour), ago(10 * time.Second), true, false},
		{"silent, looked up long ago", ago(time.Hour), ago(ReresolveAfter), true, true},
		{"silent, just looked up", ago(time.Second), ago(time.Hour), true, false},
		{"never answered", ago(ReresolveAfter), time.Time{}, true, true},
		{"never resolved, retried soon", ago(retryResolve), time.Time{}, false, true},
		{"never resolved, just tried", ago(time.Second), time.Time{}, false, false},
	} {
		if got := needResolve(now, tc.lastResolve, tc.lastHandshake, tc.known); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestResolveEndpoint(t *testing.T) {
	ctx := context.Background()
	for ep, want := range map[string]string{
		"192.0.2.1:51820":   "192.0.2.1:51820",
		"[2001:db8::1]:443": "[2001:db8::1]:443",
		"localhost:51820":   "127.0.0.1:51820", // a name; IPv4 preferred
	} {
		got, err := resolveEndpoint(ctx, net.DefaultResolver, ep)
		if err != nil || got.String() != want {
			t.Errorf("%s: %v %v, want %s", ep, got, err, want)
		}
	}
	for _, ep := range []string{"192.0.2.1", "host:0", ":51820", "host:port"} {
		if _, err := resolveEndpoint(ctx, net.DefaultResolver, ep); err == nil {
			t.Errorf("%s accepted", ep)
		}
	}
}
