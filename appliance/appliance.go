// Package appliance is the box's behaviour: it joins the DICOM stack
// (appliance/dimse) and the store into the daemon — ingest (the C-STORE
// path), forward (the queue's consumer), the caller policy, Storage
// Commitment, retention, and the control API the console and CLI use.
package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/appliance/forward"
	"github.com/relais/relais/store"
	"github.com/relais/relais/vpn"
)

// Options are how relaisd starts the appliance; they are not part of the
// configuration file.
type Options struct {
	// DataDir holds the store, the configuration and the control socket.
	DataDir string
	// ConfigPath defaults to DataDir/relais.json.
	ConfigPath string
	// Port, AETitle and ListenAddress, when set, override the
	// configuration file (relaisd's flags).
	Port          int
	AETitle       string
	ListenAddress string
	// DefaultPort is the port written into a new configuration (104 on the
	// box); 0 keeps config.Default's.
	DefaultPort int
	// Listen, when set, overrides the address the SCP listens on (tests).
	Listen string
	Logger *slog.Logger
	// Dial opens connections to destinations and modalities outside the
	// in-process tunnel; nil uses net.Dialer. In netstack mode the tunnel's
	// allowed networks go through the tunnel instead.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Store tunes the store; nil takes store.DefaultOptions.
	Store *store.Options
	// ProbeEvery is how often the box echoes its own DICOM service
	// (probe.go); 0 takes 45 s.
	ProbeEvery time.Duration
	// RetryMin and RetryMax bound the forwarders' exponential backoff
	// (defaults 2 s and 5 min).
	RetryMin, RetryMax time.Duration
	// DICOM timers; zero values take dimse's defaults.
	DIMSE dimse.Config
	// Network applies the box's network settings when they change; nil
	// where the host system owns the network (anywhere but the box).
	Network NetworkApplier
	// MetricsAddr, when set, serves Prometheus /metrics (and nothing else)
	// over TCP, for the regional team's monitoring through the tunnel. The
	// metrics hold counts and AE titles, no patient data. "tunnel:PORT"
	// (OnTunnel) serves them on the tunnel's own address, following it, and
	// on loopback; anything else is a listen address.
	MetricsAddr string
	// SSHConsole, "tunnel:PORT=ADDR" (ParseSSHConsole), hands each
	// connection to PORT on the tunnel's own address to the console over
	// SSH listening on ADDR, a loopback address (relais-ssh on the box),
	// after a PROXY protocol header naming its source. Nothing else
	// reaches the console: the hospital LAN does not.
	SSHConsole string
	// ConsoleKeysImage is the image's list of keys allowed on the console
	// over SSH, in force while the data folder has none
	// (consolekeys.ImageFile on the box; "": none).
	ConsoleKeysImage string
	// Image identifies the system image running (on gokrazy, its SBOM
	// hash), for the status and the metrics; "" outside an image.
	Image string
	// ClockFloor is a time the box's clock cannot be before once set (the
	// image's build time): before it, the status warns that the clock is
	// not set (clock.go). Zero: not known, no warning.
	ClockFloor time.Time
	// Clock is the wall clock the clock watch reads; nil: time.Now (tests
	// step it).
	Clock func() time.Time
}

// NetworkApplier sets the box's address (netconf.Applier on the box).
type NetworkApplier interface {
	Apply(ctx context.Context, n config.Network) error
}

// Appliance is the running box.
type Appliance struct {
	opts  Options
	log   *slog.Logger
	store *store.Store

	// cfg is the configuration file's content, an immutable snapshot
	// swapped whole: readers never wait for a change in progress.
	cfg   atomic.Pointer[config.Config]
	cfgMu sync.Mutex // serializes configuration changes (and the forwarders' set)

	// fwdMu guards fwd and fwdCounters. Forwarders take no lock of the
	// appliance's, so stopping one while holding fwdMu cannot wait on itself.
	fwdMu       sync.Mutex
	fwd         map[string]*forward.Forwarder
	fwdCounters map[string]*forward.Counters // by destination name, since start
	commits     *forward.Commitments

	callers *callerBook // unknown callers, with its own lock

	mu       sync.Mutex // guards the fields below
	sessions map[*dimse.Association]*session
	port     int // the port the SCP listens on
	ln       net.Listener

	server  *dimse.Server
	wgKey   vpn.SecretKey
	tun     tunnelState
	purgeCh chan struct{}
	ctx     context.Context
	wg      sync.WaitGroup
	started time.Time
	clock   *clockWatch
	recv    receiving
	// probeState is the box's own C-ECHO's outcome (probe.go).
	probeState probeState
	metrics    *metrics
	// metricsSrv serves /metrics (on MetricsAddr, and in the tunnel); it
	// is never nil once Run has started.
	metricsSrv   *http.Server
	inTunnel     []tunnelService                // set up by Run, before the tunnel
	tunnelFaults serviceFaults                  // why a tunnel service cannot be reached
	keysMu       sync.Mutex                     // serializes edits of the console's keys
	update       atomic.Pointer[control.Update] // the update guard's last verdict (guard_api.go)

	studies  studiesCache // the console's list of studies (studycache.go)
	prefixes sync.Pool    // *[]byte of header.MaxPrefix, for ingestSink
	room     roomMaker    // the purges refused stores ask for (retention.go)
	refusing refusal      // stores refused for space (diskfull.go)
	failing  refusal      // stores the disk failed to save (diskfull.go)
}

// receiving counts what arrives, for the status.
type receiving struct {
	instances atomic.Int64
	bytes     atomic.Int64
	lastAE    atomic.Value // string
	lastAt    atomic.Int64 // unix nano
	results   resultsToday
}

// resultsToday counts the instances the reading center sent back today
// (since start, when relaisd started today).
type resultsToday struct {
	mu  sync.Mutex
	day string
	n   int
}

func (r *resultsToday) add(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d := now.Format(time.DateOnly); d != r.day {
		r.day, r.n = d, 0
	}
	r.n++
}

func (r *resultsToday) count(now time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Format(time.DateOnly) != r.day {
		return 0
	}
	return r.n
}

// New opens the store and loads the configuration; Run starts the services.
func New(opts Options) (*Appliance, error) {
	if opts.DataDir == "" {
		return nil, errors.New("appliance: no data folder")
	}
	if opts.ConfigPath == "" {
		opts.ConfigPath = filepath.Join(opts.DataDir, "relais.json")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RetryMin == 0 {
		opts.RetryMin = 2 * time.Second
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = 5 * time.Minute
	}
	if opts.DIMSE.Logger == nil {
		opts.DIMSE.Logger = opts.Logger.With("part", "dimse")
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data folder %s: %w", opts.DataDir, err)
	}
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(opts.ConfigPath); errors.Is(err, os.ErrNotExist) {
		if opts.DefaultPort != 0 {
			cfg.Port = opts.DefaultPort
		}
		// Write the defaults, so the technician sees what can be set.
		if err := config.Save(opts.ConfigPath, cfg); err != nil {
			return nil, err
		}
	}
	// The box's WireGuard key is made on first start and never leaves it.
	key, err := vpn.LoadOrCreateKey(filepath.Join(opts.DataDir, keyDir))
	if err != nil {
		return nil, err
	}
	so := store.DefaultOptions()
	if opts.Store != nil {
		so = *opts.Store
	}
	so.Logger = opts.Logger.With("part", "store")
	var a *Appliance
	so.MakeRoom = func() { a.makeRoom() } // no writer before Run
	st, err := store.Open(filepath.Join(opts.DataDir, "store"), so)
	if err != nil {
		return nil, err
	}
	a = &Appliance{
		opts:        opts,
		log:         opts.Logger,
		store:       st,
		callers:     newCallerBook(),
		fwdCounters: map[string]*forward.Counters{},
		fwd:         map[string]*forward.Forwarder{},
		sessions:    map[*dimse.Association]*session{},
		purgeCh:     make(chan struct{}, 1),
		clock:       newClockWatch(opts.ClockFloor, opts.Clock),
		probeState:  newProbeState(),
		wgKey:       key,
	}
	a.cfg.Store(&cfg)
	a.commits = forward.NewCommitments(a.event)
	a.metrics = newMetrics(a)
	a.metrics.known(&cfg)
	return a, nil
}

// Store is the appliance's store (for tests and tools).
func (a *Appliance) Store() *store.Store { return a.store }

// Config returns the configuration in force, with flag overrides applied.
func (a *Appliance) Config() config.Config { return a.effective(a.fileConfig()) }

// fileConfig is the configuration as saved, without flag overrides. The
// slices are copies: the snapshot itself never changes.
func (a *Appliance) fileConfig() config.Config {
	c := *a.cfg.Load()
	c.Modalities = slices.Clone(c.Modalities)
	c.Destinations = slices.Clone(c.Destinations)
	return c
}

// effective applies the flag overrides to c.
func (a *Appliance) effective(c config.Config) config.Config {
	if a.opts.Port != 0 {
		c.Port = a.opts.Port
	}
	if a.opts.AETitle != "" {
		c.AETitle = a.opts.AETitle
	}
	if a.opts.ListenAddress != "" {
		c.ListenAddress = a.opts.ListenAddress
	}
	return c
}

// Addr is the address the DICOM SCP listens on, once Run has started it.
func (a *Appliance) Addr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln == nil {
		return nil
	}
	return a.ln.Addr()
}

// Run serves until ctx ends, then stops everything and closes the store.
func (a *Appliance) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.ctx = ctx
	a.started = time.Now()
	cfg := a.Config()
	a.server = &dimse.Server{
		Policy: a,
		Handlers: dimse.Handlers{
			Store:        a.ingest,
			Commit:       a.commitForModality,
			CommitReport: a.commits.Report,
		},
		Config: a.opts.DIMSE,
		Quiet:  a.quietAssociation,
	}
	a.server.SetMaxAssociations(cfg.MaxAssociations)
	// The control socket first: once DICOM answers, everything does.
	control, err := a.serveControl(ctx)
	if err != nil {
		a.store.Close()
		return err
	}
	if err := a.serveMetrics(); err != nil {
		control.Close()
		a.store.Close()
		return err
	}
	defer a.metricsSrv.Close()
	if a.opts.SSHConsole != "" {
		port, to, err := ParseSSHConsole(a.opts.SSHConsole)
		if err != nil {
			control.Close()
			a.store.Close()
			return fmt.Errorf("console over SSH: %w", err)
		}
		a.inTunnel = append(a.inTunnel, tunnelService{name: "the console over SSH", port: port, serve: a.forwardConsole(to), check: consoleAnswers(to)})
	}
	if err := a.listen(cfg.ListenAddress, cfg.Port); err != nil {
		control.Close()
		a.store.Close()
		return err
	}
	a.syncTunnel()
	a.cfgMu.Lock()
	a.syncForwarders()
	a.cfgMu.Unlock()
	a.wg.Add(4)
	go func() {
		defer a.wg.Done()
		a.retentionLoop(ctx)
	}()
	go func() {
		defer a.wg.Done()
		a.clockLoop(ctx)
	}()
	go func() {
		defer a.wg.Done()
		a.refusalLoop(ctx)
	}()
	go func() {
		defer a.wg.Done()
		a.probeLoop(ctx)
	}()
	// What the store holds, said at start: after an update or a power cut,
	// the status page (the process log) shows at once that nothing is gone.
	held := ""
	if st, err := a.store.Stats(); err == nil {
		held = fmt.Sprintf("; holding %d instance(s) of %d study(ies), %d waiting to be sent",
			st.Instances.Count, st.Studies, st.States[store.Pending].Count+st.States[store.InFlight].Count)
	}
	a.event(store.KindConfig, store.Info, fmt.Sprintf("Relais started: AE title %s, DICOM port %d%s, %d destination(s)%s",
		cfg.AETitle, a.port, onAddress(cfg.ListenAddress), len(cfg.Destinations), held), nil)

	<-ctx.Done()
	stopControl(control)
	a.stopListener()
	a.fwdMu.Lock()
	for _, f := range a.fwd {
		f.Stop()
	}
	a.fwdMu.Unlock()
	a.closeTunnel()
	a.wg.Wait()
	return a.store.Close()
}

// listen (re)starts the SCP on port, on one address of the box or, when
// address is empty, on all of them. The new listener is opened before the
// old one closes, so a failed change leaves the box receiving.
func (a *Appliance) listen(address string, port int) error {
	addr := a.opts.Listen
	if addr == "" {
		addr = net.JoinHostPort(address, strconv.Itoa(port))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for DICOM on %s: %w", addr, err)
	}
	a.mu.Lock()
	old := a.ln
	a.ln, a.port = ln, ln.Addr().(*net.TCPAddr).Port
	a.mu.Unlock()
	if old != nil {
		old.Close()
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.server.Serve(a.ctx, ln); err != nil {
			a.log.Debug("DICOM listener closed", "err", err)
		}
	}()
	return nil
}

func (a *Appliance) stopListener() {
	a.mu.Lock()
	ln := a.ln
	a.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
}

// event logs e for the technician (persistent, with the patient's name
// where the message has forward.PatientToken) and to the process log
// (without it: see forward.PatientToken).
func (a *Appliance) event(kind store.Kind, sev store.Severity, msg string, attrs map[string]string) {
	logMsg, args := forProcessLog(kind, msg, attrs)
	switch sev {
	case store.Error:
		a.log.Error(logMsg, args...)
	case store.Warning:
		a.log.Warn(logMsg, args...)
	default:
		a.log.Info(logMsg, args...)
	}
	msg = strings.ReplaceAll(msg, forward.PatientToken, attrs[forward.PatientAttr])
	if err := a.store.Log(store.Event{Kind: kind, Severity: sev, Message: msg, Attrs: attrs}); err != nil {
		a.log.Warn("event not recorded", "err", err)
	}
}

// withoutPatient drops the patient placeholder, with its parentheses, from
// a message for the process log.
var withoutPatient = strings.NewReplacer(" ("+forward.PatientToken+")", "", forward.PatientToken, "(patient)")

// forProcessLog is an event as stdout/stderr get it: no patient name in the
// message or the attributes.
func forProcessLog(kind store.Kind, msg string, attrs map[string]string) (string, []any) {
	args := []any{"kind", string(kind)}
	for k, v := range attrs {
		if k != forward.PatientAttr {
			args = append(args, k, v)
		}
	}
	return withoutPatient.Replace(msg), args
}

// SetConfig validates, saves and applies a new configuration.
func (a *Appliance) SetConfig(c config.Config) error {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	return a.setConfig(c)
}

// setConfig is called with cfgMu held.
func (a *Appliance) setConfig(c config.Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if err := config.Save(a.opts.ConfigPath, c); err != nil {
		return err
	}
	old, before := a.Config(), a.fileConfig()
	a.cfg.Store(&c)
	now := a.Config()
	a.metrics.known(&now)
	if a.server != nil {
		a.server.SetMaxAssociations(now.MaxAssociations)
		a.syncForwarders()
	}
	msg, attrs := describeChanges(config.Diff(before, c))
	a.event(store.KindConfig, store.Info, msg, attrs)
	for _, w := range c.Warnings() {
		a.event(store.KindConfig, store.Warning, "configuration: "+w.Error(), nil)
	}
	if a.server != nil {
		a.syncTunnel()
	}
	if a.server != nil && a.opts.Network != nil && !reflect.DeepEqual(now.Network, old.Network) {
		if err := a.opts.Network.Apply(a.ctx, now.Network); err != nil {
			a.event(store.KindConfig, store.Error, fmt.Sprintf("network settings not applied: %v", err), nil)
			return err
		}
		a.event(store.KindConfig, store.Info, "network settings applied: "+describeNetwork(now.Network), nil)
	}
	if a.server != nil && (now.Port != old.Port || now.ListenAddress != old.ListenAddress) && a.opts.Listen == "" {
		if err := a.listen(now.ListenAddress, now.Port); err != nil {
			a.event(store.KindConfig, store.Error, fmt.Sprintf("DICOM port %d%s could not be opened; still receiving on %d%s: %v",
				now.Port, onAddress(now.ListenAddress), old.Port, onAddress(old.ListenAddress), err), nil)
			return err
		}
		a.event(store.KindConfig, store.Info, fmt.Sprintf("now receiving on DICOM port %d%s", now.Port, onAddress(now.ListenAddress)), nil)
	}
	return nil
}

// updateConfig applies fn to a copy of the configuration and sets it.
func (a *Appliance) updateConfig(fn func(c *config.Config)) error {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	c := a.fileConfig()
	fn(&c)
	return a.setConfig(c)
}

// onAddress says which address the DICOM port is bound to, if only one.
func onAddress(address string) string {
	if address == "" {
		return ""
	}
	return " on " + address
}

// describeChanges is the "configuration changed" event: the first changes
// in its message, every change in its attributes (secrets masked).
func describeChanges(cs []config.Change) (string, map[string]string) {
	if len(cs) == 0 {
		return "configuration saved: nothing changed", nil
	}
	const shown = 5
	lines := make([]string, len(cs))
	for i, c := range cs {
		lines[i] = c.String()
	}
	msg := "configuration changed: " + strings.Join(lines[:min(shown, len(lines))], "; ")
	if len(lines) > shown {
		msg += fmt.Sprintf("; and %d more", len(lines)-shown)
	}
	return msg, map[string]string{"changes": strings.Join(lines, "\n")}
}

func describeNetwork(n config.Network) string {
	if !n.Static() {
		return "address by DHCP"
	}
	s := "static address " + n.Address
	if n.Gateway != "" {
		s += ", gateway " + n.Gateway
	}
	if len(n.DNS) > 0 {
		s += ", DNS " + strings.Join(n.DNS, " ")
	}
	return s
}
