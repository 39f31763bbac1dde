package vpn

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tunnel addresses of the test pair: A is the box, B the reading center.
var (
	testAddrA = netip.MustParsePrefix("10.213.0.1/24")
	testAddrB = netip.MustParsePrefix("10.213.0.2/24")
)

const testSCPPort = 11112

// pairConfigs are the two ends of a test tunnel: A (the box) dials B at
// endpointB; B has no endpoint and learns A's from its handshake.
func pairConfigs(mode Mode, keyA, keyB SecretKey, psk *SecretKey, endpointB string) (a, b Config) {
	a = Config{Mode: mode, Address: testAddrA, Peer: Peer{
		PublicKey: keyB.PublicKey(), PresharedKey: psk, Endpoint: endpointB,
		AllowedIPs:          []netip.Prefix{netip.PrefixFrom(testAddrB.Addr(), 32)},
		PersistentKeepalive: 25 * time.Second,
	}}
	b = Config{Mode: mode, Address: testAddrB, Peer: Peer{
		PublicKey: keyA.PublicKey(), PresharedKey: psk,
		AllowedIPs: []netip.Prefix{netip.PrefixFrom(testAddrA.Addr(), 32)},
	}}
	return a, b
}

// logRecorder keeps every log line, debug included, to look for secrets.
type logRecorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *logRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if testing.Verbose() {
		os.Stderr.Write(p)
	}
	return r.buf.Write(p)
}

func (r *logRecorder) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(r, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// checkNoSecrets fails if a secret key appears in the logs, in base64 or
// in hex (as UAPI writes them).
func (r *logRecorder) checkNoSecrets(t *testing.T, keys ...SecretKey) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.buf.Len() == 0 {
		t.Error("nothing logged")
	}
	for _, k := range keys {
		if bytes.Contains(r.buf.Bytes(), []byte(k.base64())) || bytes.Contains(r.buf.Bytes(), []byte(hex.EncodeToString(k.b[:]))) {
			t.Errorf("a secret key was logged:\n%s", r.buf.String())
		}
	}
}

func mustKey(t testing.TB) SecretKey {
	t.Helper()
	k, err := GenerateSecretKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestNetstackCStoreThroughTunnel: two netstack peers in this process, no
// privileges; our own SCU C-STOREs through the tunnel to an SCP listening on
// the other side's tunnel address, and the bytes arrive unchanged.
func TestNetstackCStoreThroughTunnel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	keyA, keyB, psk := mustKey(t), mustKey(t), mustKey(t)

	var logs logRecorder
	defer logs.checkNoSecrets(t, keyA, keyB, psk)

	// The responder first, or the first handshake is lost for 5 s.
	_, cfgB := pairConfigs(ModeNetstack, keyA, keyB, &psk, "")
	b, err := Up(ctx, cfgB, keyB, Options{Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	portB := b.Status().ListenPort
	if portB == 0 {
		t.Fatal("responder reports no listen port")
	}

	events := make(chan Event, 10)
	// A named endpoint, as the regional team gives it.
	cfgA, _ := pairConfigs(ModeNetstack, keyA, keyB, &psk, "localhost:"+strconv.Itoa(portB))
	a, err := Up(ctx, cfgA, keyA, Options{Logger: logs.logger(), PollInterval: 20 * time.Millisecond,
		OnEvent: func(e Event) { events <- e }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Mode() != ModeNetstack {
		t.Fatalf("mode %s", a.Mode())
	}
	// Up only on evidence: a handshake. (Its keepalive may have made one
	// already, so down is not required here.)
	if s := a.Status(); s.State == StateUp && s.LastHandshake.IsZero() {
		t.Fatalf("before any traffic: %+v", s)
	}

	ln, err := b.Listen(ctx, "tcp", ":"+strconv.Itoa(testSCPPort))
	if err != nil {
		t.Fatal(err)
	}
	var srv scp
	served := make(chan error, 1)
	go func() { served <- srv.serve(ctx, ln) }()

	in, err := newInstance(1)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(testAddrB.Addr(), testSCPPort).String()
	if err := echoAndStore(ctx, a.DialContext, addr, in); err != nil {
		t.Fatalf("through the tunnel: %v", err)
	}
	if got, ok := srv.sum(in.sopInstance); !ok || got != sha256.Sum256(in.data) {
		t.Fatalf("the SCP behind the tunnel got %x (present %v), want the sent data set", got, ok)
	}

	s := a.Status()
	if s.State != StateUp || s.LastHandshake.IsZero() || s.Endpoint != "127.0.0.1:"+strconv.Itoa(portB) {
		t.Errorf("after a store: state %s, last handshake %v, endpoint %q", s.State, s.LastHandshake, s.Endpoint)
	}
	if s.TxBytes < int64(len(in.data)) || s.RxBytes == 0 {
		t.Errorf("counters: tx %d rx %d, want tx ≥ %d", s.TxBytes, s.RxBytes, len(in.data))
	}
	if s.PublicKey != keyA.PublicKey() || s.Peer != keyB.PublicKey() || s.Address != testAddrA {
		t.Errorf("identity: %+v", s)
	}
	if e := <-events; e.State != StateUp {
		t.Errorf("first event %s, want up", e.State)
	}

	// Closing the tunnel ends it: a down event, and no more dialing.
	a.Close()
	if e := <-events; e.State != StateDown {
		t.Errorf("event at close %s, want down", e.State)
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
}

// TestUpRefusesBadConfig: nothing starts on an incomplete configuration,
// and the error says what is missing.
func TestUpRefusesBadConfig(t *testing.T) {
	_, err := Up(context.Background(), Config{Mode: ModeNetstack}, mustKey(t), Options{})
	if err == nil {
		t.Fatal("Up accepted an empty configuration")
	}
	for _, want := range []string{"no tunnel address", "no peer public key", "no allowed IPs"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
