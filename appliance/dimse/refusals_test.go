package dimse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais/relais/testdata/peers"
)

// recordLog keeps every log record, for tests that count them. The
// attributes of With are dropped: the tests look at messages and at the
// record's own attributes.
type recordLog struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *recordLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *recordLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *recordLog) WithGroup(string) slog.Handler            { return l }

func (l *recordLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}

func (l *recordLog) records() []slog.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]slog.Record(nil), l.recs...)
}

// TestRefusalFloodIsLoggedSparingly: 100 requests beyond a caller's share,
// 1,000 connections from 20 addresses that close before their request, and
// echoscu refused by the policy. At info level: the first failure of ten
// callers per minute and, when the server stops, one line counting the
// rest; every failure logged at debug level is counted in it, and none is
// lost. The policy's refusals are its owner's to report: debug level only.
func TestRefusalFloodIsLoggedSparingly(t *testing.T) {
	peers.Require(t, "echoscu")
	logs := &recordLog{}
	srv := &Server{Policy: &StaticPolicy{CalledAETitles: []string{"RELAIS"}, CallingAETitles: []string{"HOARD"}},
		Config: Config{ARTIM: 2 * time.Second, Logger: slog.New(logs)}}
	srv.SetMaxAssociations(2) // HOARD's share: one
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ctx, ln)
	}()
	addr := ln.Addr().String()
	start := time.Now()

	verification := []Proposal{{AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{ImplicitVRLittleEndian}}}
	hold, err := Dial(ctx, addr, DialParams{CallingAE: "HOARD", CalledAE: "RELAIS", Proposals: verification})
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Abort()
	const beyondShare, addresses, perAddress = 100, 20, 50
	for range beyondShare {
		_, err := Dial(ctx, addr, DialParams{CallingAE: "HOARD", CalledAE: "RELAIS", Proposals: verification})
		if rj := (*Rejection)(nil); !errors.As(err, &rj) || *rj != *RejectLocalLimit {
			t.Fatalf("request beyond the share: %v, want %v", err, RejectLocalLimit)
		}
	}
	for i := range addresses {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.0.%d", 2+i))}}
		for range perAddress {
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		}
	}
	if _, err := echoscu(t, addr, "STRANGER"); err == nil {
		t.Fatal("echoscu as a caller the policy refuses was answered")
	}
	hold.Abort()
	cancel()
	<-served
	windows := int(time.Since(start)/refusalWindow) + 1

	var info, debug, counted, summaries int
	var byPolicy []string
	for _, r := range logs.records() {
		switch {
		case r.Message == "association not established" && r.Level == slog.LevelInfo:
			info++
		case r.Message == "association not established" && r.Level == slog.LevelDebug:
			debug++
		case r.Message == "association refused by the policy":
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == "calling" {
					byPolicy = append(byPolicy, fmt.Sprintf("%s at %s", a.Value, r.Level))
				}
				return true
			})
		case strings.Contains(r.Message, "more association requests refused or failed"):
			n, err := strconv.Atoi(strings.Fields(r.Message)[0])
			if err != nil || r.Level != slog.LevelInfo {
				t.Fatalf("summary %s %q", r.Level, r.Message)
			}
			counted += n
			summaries++
			t.Logf("summary: %s", r.Message)
		}
	}
	closed := int(srv.Health().Closed)
	t.Logf("%d failures: %d at info level, %d at debug level counted in %d summaries, %d connections closed at once; the policy's refusals: %v",
		beyondShare+addresses*perAddress, info, debug, summaries, closed, byPolicy)
	if info+debug+closed != beyondShare+addresses*perAddress {
		t.Errorf("%d failures logged and %d closed at once, want %d", info+debug, closed, beyondShare+addresses*perAddress)
	}
	if info > refusalLines*windows {
		t.Errorf("%d failures at info level in %d window(s), want at most %d a window", info, windows, refusalLines)
	}
	if counted != debug || summaries == 0 {
		t.Errorf("the summaries count %d failures, %d were at debug level", counted, debug)
	}
	if len(byPolicy) != 1 || byPolicy[0] != "STRANGER at DEBUG" {
		t.Errorf("the policy's refusals logged as %v, want STRANGER's once at debug level", byPolicy)
	}
}
