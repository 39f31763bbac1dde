package vpn

import (
	"net/netip"
	"time"
)

// UpWithin is how recent the last handshake must be for the tunnel to count
// as up. WireGuard renews the session every 2 minutes while traffic flows
// (and with a keepalive), and drops keys after 180 s without a handshake.
const UpWithin = 180 * time.Second

// State is the tunnel's state as the console and the metrics show it.
type State string

const (
	StateUp   State = "up"   // a handshake within UpWithin
	StateDown State = "down" // none, or older
)

// stateAt says whether a tunnel whose last handshake was at last is up at
// now. A handshake slightly in the future (clock stepped back) counts as
// recent.
func stateAt(last, now time.Time) State {
	if last.IsZero() || now.Sub(last) > UpWithin {
		return StateDown
	}
	return StateUp
}

// Status is a snapshot of the tunnel.
type Status struct {
	Mode      Mode   // the mode actually running (never ModeAuto)
	Interface string // link name; "" in netstack mode
	Address   netip.Prefix
	PublicKey Key // ours, to give to the reading center
	Peer      Key // the reading center's

	State State
	// LastHandshake is zero before the first handshake; HandshakeAge is
	// then 0 as well.
	LastHandshake time.Time
	HandshakeAge  time.Duration
	// Endpoint is the peer's current address ("" when unknown), ListenPort
	// our UDP port.
	Endpoint   string
	ListenPort int

	// RxBytes and TxBytes count since the tunnel came up; the rates are
	// bytes per second over the last poll interval.
	RxBytes, TxBytes int64
	RxRate, TxRate   float64
}

// Event tells of the tunnel going up or down.
type Event struct {
	Time   time.Time
	State  State
	Status Status
}

// rate is bytes per second between two counter samples; a counter that went
// back (device recreated) gives 0.
func rate(prev, cur int64, dt time.Duration) float64 {
	if dt <= 0 || cur < prev {
		return 0
	}
	return float64(cur-prev) / dt.Seconds()
}
