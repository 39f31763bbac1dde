package appliance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/store"
)

// The metrics the regional team scrapes, through the Prometheus client on a
// registry of the appliance's own (no global state): the Go runtime and
// process collectors, the reception counters the C-STORE path keeps, and a
// collector that reads the box's state at each scrape (the store keeps its
// counts current, so a scrape scans nothing). Counters count since relaisd
// started. No label carries patient data: labels are destination names,
// configured modalities' AE titles, states and reasons.

// otherAE is the calling AE label of every sender that is not a configured
// modality: a misconfigured or hostile sender can't grow the label set.
const otherAE = "other"

type metrics struct {
	reg           *prometheus.Registry
	received      *prometheus.CounterVec // instances stored, by calling AE
	receivedBytes *prometheus.CounterVec
	refused       *prometheus.CounterVec // instances refused or discarded, by calling AE and reason
}

func newMetrics(a *Appliance) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_received_instances_total",
			Help: "Instances stored (acknowledged) since relaisd started, by calling AE title (\"other\": not a configured modality)."}, []string{"calling_ae"}),
		receivedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_received_bytes_total",
			Help: "Bytes of the instances stored since relaisd started, by calling AE title."}, []string{"calling_ae"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_refused_instances_total",
			Help: "Instances refused (a failure status) or discarded (the association ended inside one) since relaisd started, by calling AE title and reason; out_of_resources: the disk is full of undelivered studies."},
			[]string{"calling_ae", "reason"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.received, m.receivedBytes, m.refused,
		boxCollector{a},
	)
	return m
}

// serveMetrics starts the metrics server on Options.MetricsAddr. With
// "tunnel:PORT" it listens on loopback now, and on the tunnel's address
// whenever a tunnel comes up (intunnel.go).
func (a *Appliance) serveMetrics() error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.metrics.handler())
	a.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	addr := a.opts.MetricsAddr
	if addr == "" {
		return nil
	}
	if host, _, _ := net.SplitHostPort(addr); host == OnTunnel {
		port, err := tunnelPort(addr)
		if err != nil {
			return fmt.Errorf("metrics address: %w", err)
		}
		a.inTunnel = append(a.inTunnel, tunnelService{name: "metrics", port: port,
			serve: func(_ context.Context, ln net.Listener) error {
				if err := a.metricsSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
					return err
				}
				return nil
			}})
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	go a.metricsSrv.Serve(ln) // ends with metricsSrv.Close, when Run returns
	return nil
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// aeLabel is the label for a calling AE title: its own for a configured
// modality, otherAE for anyone else.
func aeLabel(cfg *config.Config, ae string) string {
	if slices.ContainsFunc(cfg.Modalities, func(m config.Modality) bool { return m.AETitle == ae }) {
		return ae
	}
	return otherAE
}

// known makes the reception counters of cfg's modalities (and of the
// others) exist from zero, so the first instance counts in a rate.
func (m *metrics) known(cfg *config.Config) {
	for _, mod := range cfg.Modalities {
		m.received.WithLabelValues(mod.AETitle)
		m.receivedBytes.WithLabelValues(mod.AETitle)
	}
	m.received.WithLabelValues(otherAE)
	m.receivedBytes.WithLabelValues(otherAE)
}

func (m *metrics) stored(cfg *config.Config, ae string, size int64) {
	l := aeLabel(cfg, ae)
	m.received.WithLabelValues(l).Inc()
	m.receivedBytes.WithLabelValues(l).Add(float64(size))
}

// refusal counts a refused instance; status 0 means discarded (aborted).
func (m *metrics) refusal(cfg *config.Config, ae string, status dimse.Status) {
	m.refused.WithLabelValues(aeLabel(cfg, ae), refusalReason(status)).Inc()
}

// refusalReason names a C-STORE failure status for a label (a fixed set).
func refusalReason(s dimse.Status) string {
	switch s {
	case 0:
		return "aborted"
	case dimse.StatusOutOfResources:
		return "out_of_resources"
	case dimse.StatusCannotUnderstand:
		return "cannot_understand"
	case dimse.StatusDataSetDoesNotMatchClass:
		return "does_not_match"
	case dimse.StatusProcessingFailure:
		return "processing_failure"
	}
	return "other"
}

// The box's state, read at each scrape.
var (
	descBuildInfo = prometheus.NewDesc("relais_build_info",
		"Always 1: the running relaisd's version, system image (gokrazy SBOM hash, \"none\" outside an image) and Go version.",
		[]string{"version", "image", "goversion"}, nil)
	descHealth = prometheus.NewDesc("relais_health",
		"Each part's health as the console shows it: 0 ok, 1 warning, 2 alarm.", []string{"part"}, nil)
	descAlarms = prometheus.NewDesc("relais_alarms",
		"Alarms the console shows now, by level.", []string{"level"}, nil)
	descAssociations = prometheus.NewDesc("relais_associations_active",
		"Incoming DICOM associations open now.", nil, nil)
	descStoredInstances = prometheus.NewDesc("relais_stored_instances", "Instances held in the store.", nil, nil)
	descStoredBytes     = prometheus.NewDesc("relais_stored_bytes", "Bytes of the instances held.", nil, nil)
	descStoredStudies   = prometheus.NewDesc("relais_stored_studies", "Studies held.", nil, nil)
	descConflicts       = prometheus.NewDesc("relais_conflicting_copies",
		"Copies of an instance that arrived with other bytes, waiting for review.", nil, nil)
	descDamaged = prometheus.NewDesc("relais_damaged_copies",
		"Stored copies found damaged or missing on the box's disk: not sent until their sender sends them again.", nil, nil)

	descDiskTotal = prometheus.NewDesc("relais_disk_total_bytes", "Size of the data filesystem.", nil, nil)
	descDiskFree  = prometheus.NewDesc("relais_disk_free_bytes", "Bytes of the data filesystem available to the store.", nil, nil)
	descDiskUsed  = prometheus.NewDesc("relais_disk_used_bytes", "Bytes of the data filesystem in use.", nil, nil)
	descDiskUndel = prometheus.NewDesc("relais_disk_undelivered_bytes",
		"Bytes held that some destination still waits for (waiting and parked instances): retention never removes them.", nil, nil)
	descDiskHigh = prometheus.NewDesc("relais_disk_high_watermark_ratio",
		"The retention's high watermark in force, a fraction of the filesystem (0: off): above it, delivered studies are purged. Lower than configured when the disk is too small for it.", nil, nil)
	descDiskRefuseBelow = prometheus.NewDesc("relais_disk_refuse_below_bytes",
		"New instances are refused (Out of Resources, A700) when less than this is free.", nil, nil)
	descDiskRefusing = prometheus.NewDesc("relais_disk_refusing",
		"1 while instances are refused because the disk is full (since the first refusal, until one is accepted or there is room again).", nil, nil)
	descDiskSaveFailing = prometheus.NewDesc("relais_disk_save_failing",
		"1 while the disk fails to save instances (an I/O error; since the first failure, until an instance is saved).", nil, nil)
	descClock = prometheus.NewDesc("relais_clock_seconds",
		"The box's wall clock as the scrape reads it, in seconds since 1970: against the scrape's own time it shows a clock unset or off.", nil, nil)

	descDestState = prometheus.NewDesc("relais_destination_state",
		"1 for the destination's forwarding state now, 0 for the others.", []string{"destination", "state"}, nil)
	descQueueInstances = prometheus.NewDesc("relais_queue_instances",
		"Instances waiting for the destination (pending, in flight, failed and retried).", []string{"destination"}, nil)
	descQueueBytes = prometheus.NewDesc("relais_queue_bytes",
		"Bytes waiting for the destination.", []string{"destination"}, nil)
	descOldestWaiting = prometheus.NewDesc("relais_oldest_waiting_seconds",
		"Age of the oldest instance waiting for the destination (0: none waits).", []string{"destination"}, nil)
	descDestInstances = prometheus.NewDesc("relais_destination_instances",
		"The destination's queue entries now, by state (pending, in_flight, failed, parked, delivered, committed, abandoned).",
		[]string{"destination", "state"}, nil)
	descConnFailures = prometheus.NewDesc("relais_destination_connection_failures",
		"Failed connections to the destination in a row (0: it answers).", []string{"destination"}, nil)
	descDelivered = prometheus.NewDesc("relais_delivered_instances_total",
		"Instances the destination accepted since relaisd started.", []string{"destination"}, nil)
	descDeliveredBytes = prometheus.NewDesc("relais_delivered_bytes_total",
		"Bytes of the instances the destination accepted since relaisd started.", []string{"destination"}, nil)
	descFailedAttempts = prometheus.NewDesc("relais_failed_attempts_total",
		"Attempts at one instance that failed at the destination since relaisd started (the instance is retried alone, or parked).",
		[]string{"destination"}, nil)
	descParked = prometheus.NewDesc("relais_parked_instances_total",
		"Instances parked at the destination since relaisd started.", []string{"destination"}, nil)
	descCommitted = prometheus.NewDesc("relais_committed_instances_total",
		"Instances the destination committed (Storage Commitment) since relaisd started.", []string{"destination"}, nil)
	descCommitFailures = prometheus.NewDesc("relais_commitment_failures_total",
		"Storage Commitment requests to the destination refused, failed or unanswered since relaisd started.", []string{"destination"}, nil)
	descCommitFailing = prometheus.NewDesc("relais_commitment_failing",
		"1 while Storage Commitment with the destination fails (until a report arrives).", []string{"destination"}, nil)
	descCommitOutstanding = prometheus.NewDesc("relais_commitment_outstanding_requests",
		"Storage Commitment requests waiting for the destination's report.", []string{"destination"}, nil)
	descLastDelivery = prometheus.NewDesc("relais_last_delivery_timestamp_seconds",
		"When the destination last accepted an instance (absent: not since relaisd started).", []string{"destination"}, nil)

	descTunnelConfigured = prometheus.NewDesc("relais_tunnel_configured",
		"1 when a WireGuard tunnel to the reading center is configured.", nil, nil)
	descTunnelUp = prometheus.NewDesc("relais_tunnel_up",
		"1 when the tunnel had a handshake within 180 s.", nil, nil)
	descTunnelHandshake = prometheus.NewDesc("relais_tunnel_last_handshake_timestamp_seconds",
		"When the tunnel last had a handshake (0: never since it came up).", nil, nil)
	descTunnelHandshakeAge = prometheus.NewDesc("relais_tunnel_handshake_age_seconds",
		"Seconds since the tunnel's last handshake (absent: none yet).", nil, nil)
	descTunnelRx = prometheus.NewDesc("relais_tunnel_received_bytes_total",
		"Bytes received through the tunnel since relaisd started.", nil, nil)
	descTunnelTx = prometheus.NewDesc("relais_tunnel_sent_bytes_total",
		"Bytes sent through the tunnel since relaisd started.", nil, nil)

	descGuardState = prometheus.NewDesc("relais_update_guard_state",
		"1 for the update guard's last decision about the running image, 0 for the others (absent: no guard, not on an image).",
		[]string{"state"}, nil)
	descLastRollback = prometheus.NewDesc("relais_update_last_rollback_timestamp_seconds",
		"When the update guard last switched back to the previous image (0: never, on record).", nil, nil)
)

// The label values of the enum-style gauges: every one is present, so an
// alert can compare states without absent().
var (
	destStates = []control.DestinationState{control.DestIdle, control.DestConnecting, control.DestSending,
		control.DestRetrying, control.DestStalled, control.DestPaused}
	queueStates = []store.State{store.Pending, store.InFlight, store.Failed, store.Parked,
		store.Delivered, store.Committed, store.Abandoned}
	guardStates = []string{control.UpdateGood, control.UpdateRolledBack, control.UpdateUnhealthy}
)

// boxCollector reads the appliance's state at each scrape.
type boxCollector struct{ a *Appliance }

func (boxCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBuildInfo, descHealth, descAlarms, descAssociations,
		descStoredInstances, descStoredBytes, descStoredStudies, descConflicts, descDamaged,
		descDiskTotal, descDiskFree, descDiskUsed, descDiskUndel, descDiskHigh, descDiskRefuseBelow, descDiskRefusing, descDiskSaveFailing, descClock,
		descDestState, descQueueInstances, descQueueBytes, descOldestWaiting, descDestInstances, descConnFailures,
		descDelivered, descDeliveredBytes, descFailedAttempts, descParked, descCommitted, descCommitFailures,
		descCommitFailing, descCommitOutstanding, descLastDelivery,
		descTunnelConfigured, descTunnelUp, descTunnelHandshake, descTunnelHandshakeAge, descTunnelRx, descTunnelTx,
		descGuardState, descLastRollback} {
		ch <- d
	}
}

func (c boxCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	stats, err := a.store.Stats()
	st := a.status(stats, err)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	image := st.Image
	if image == "" {
		image = "none"
	}
	gauge(descBuildInfo, 1, st.Version, image, runtime.Version())
	for part, level := range map[string]string{"receiving": st.Health.Receiving, "forwarding": st.Health.Forwarding,
		"tunnel": st.Health.Tunnel, "disk": st.Health.Disk} {
		gauge(descHealth, levelValue(level), part)
	}
	alarms := map[string]int{control.LevelWarning: 0, control.LevelAlarm: 0}
	for _, al := range st.Alarms {
		alarms[al.Level]++
	}
	for level, n := range alarms {
		gauge(descAlarms, float64(n), level)
	}
	gauge(descAssociations, float64(st.Receiving.Associations))
	gauge(descStoredInstances, float64(st.Stored.Instances))
	gauge(descStoredBytes, float64(st.Stored.Bytes))
	gauge(descStoredStudies, float64(st.Stored.Studies))
	gauge(descConflicts, float64(st.Stored.Conflicts))
	gauge(descDamaged, float64(st.Stored.Damaged))

	gauge(descDiskTotal, float64(st.Disk.Total))
	gauge(descDiskFree, float64(st.Disk.Free))
	gauge(descDiskUsed, float64(st.Disk.Total-min(st.Disk.Free, st.Disk.Total)))
	gauge(descDiskUndel, float64(st.Disk.Undelivered))
	gauge(descDiskHigh, st.Disk.HighWatermarkPercent/100)
	gauge(descDiskRefuseBelow, float64(st.Disk.RefuseBelow))
	gauge(descDiskRefusing, boolValue(!st.Disk.RefusingSince.IsZero()))
	gauge(descDiskSaveFailing, boolValue(!st.Disk.SaveFailingSince.IsZero()))
	gauge(descClock, float64(a.clock.wall().UnixNano())/1e9)

	for _, d := range st.Destinations {
		c.destination(d, stats.Queues[d.Name], gauge, counter)
	}
	c.tunnel(gauge, counter)
	// The update guard (cmd/relais-guard) tells its verdicts to relaisd.
	if u := a.updateVerdict(); u != nil {
		for _, s := range guardStates {
			gauge(descGuardState, boolValue(u.State == s), s)
		}
		if u.State == control.UpdateRolledBack {
			gauge(descLastRollback, unixSeconds(u.At))
		}
	}
}

type emit func(d *prometheus.Desc, v float64, labels ...string)

func (c boxCollector) destination(d control.DestinationStatus, q store.QueueStats, gauge, counter emit) {
	name := d.Name
	for _, s := range destStates {
		gauge(descDestState, boolValue(d.State == s), name, string(s))
	}
	gauge(descQueueInstances, float64(d.QueueDepth), name)
	gauge(descQueueBytes, float64(d.QueueBytes), name)
	gauge(descOldestWaiting, d.OldestWaitingSeconds, name)
	for _, s := range queueStates {
		gauge(descDestInstances, float64(q.States[s].Count), name, strings.ReplaceAll(s.String(), " ", "_"))
	}
	gauge(descConnFailures, float64(d.Attempts), name)
	k := c.a.destCounters(name)
	counter(descDelivered, float64(k.Delivered.Load()), name)
	counter(descDeliveredBytes, float64(k.BytesSent.Load()), name)
	counter(descFailedAttempts, float64(k.FailedAttempts.Load()), name)
	counter(descParked, float64(k.Parked.Load()), name)
	counter(descCommitted, float64(k.Committed.Load()), name)
	counter(descCommitFailures, float64(k.CommitFailures.Load()), name)
	gauge(descCommitFailing, boolValue(d.Commitment.Error != ""), name)
	gauge(descCommitOutstanding, float64(d.Commitment.Outstanding), name)
	if last := k.LastSuccess(); !last.IsZero() {
		gauge(descLastDelivery, unixSeconds(last), name)
	}
}

func (c boxCollector) tunnel(gauge, counter emit) {
	ts := &c.a.tun
	ts.mu.Lock()
	t, configured, rx, tx := ts.t, ts.cfg.Enabled(), ts.rxBase, ts.txBase
	ts.mu.Unlock()
	gauge(descTunnelConfigured, boolValue(configured))
	var up bool
	var last time.Time
	if t != nil {
		s := t.Status()
		up, last = s.State == "up", s.LastHandshake
		rx, tx = rx+s.RxBytes, tx+s.TxBytes
		if !last.IsZero() {
			gauge(descTunnelHandshakeAge, s.HandshakeAge.Seconds())
		}
	}
	gauge(descTunnelUp, boolValue(up))
	gauge(descTunnelHandshake, unixSeconds(last))
	counter(descTunnelRx, float64(rx))
	counter(descTunnelTx, float64(tx))
}

func levelValue(level string) float64 {
	switch level {
	case control.LevelWarning:
		return 1
	case control.LevelAlarm:
		return 2
	}
	return 0
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// unixSeconds is t as a Prometheus timestamp value; zero stays 0.
func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
