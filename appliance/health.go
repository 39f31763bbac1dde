package appliance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/appliance/forward"
	"github.com/relais/relais/store"
)

// The box's health: one word per part and alarms in plain words, each with
// the action to take, derived from what the forwarders and the store saw.

// Status assembles the whole box's state, echoing the box's own DICOM
// service first when the last echo is old (probe.go).
func (a *Appliance) Status(ctx context.Context) control.Status {
	if a.server != nil {
		a.probeResult(ctx)
	}
	stats, err := a.store.Stats()
	return a.status(stats, err)
}

// status assembles the box's state around the store's figures (the
// metrics read both).
func (a *Appliance) status(stats store.Stats, statsErr error) control.Status {
	cfg := a.Config()
	st := control.Status{
		Version:   Version,
		Image:     a.opts.Image,
		AETitle:   cfg.AETitle,
		StartedAt: a.started,
		Tunnel:    a.tunnelStatus(),
		Health:    control.Health{Receiving: control.LevelOK, Forwarding: control.LevelOK, Tunnel: control.LevelOK, Disk: control.LevelOK},
	}
	st.Callers, st.OtherCallers = a.Callers()
	a.mu.Lock()
	st.Port = a.port
	var listen net.IP
	if a.ln != nil {
		listen = a.ln.Addr().(*net.TCPAddr).IP
	}
	a.mu.Unlock()
	tunnel, _ := netip.ParsePrefix(cfg.Tunnel.Address)
	st.Addresses = boxAddresses(listen, tunnel.Addr())
	h := health{st: &st}
	if a.server != nil {
		lh := a.server.Health()
		st.Receiving.Associations = lh.Associations
		h.listener(lh)
		r, _ := a.probeState.result()
		h.probe(lh, r, a.probeEvery(), time.Now())
	}
	st.Receiving.Instances = a.recv.instances.Load()
	st.Receiving.Bytes = a.recv.bytes.Load()
	st.Receiving.ResultsToday = a.recv.results.count(time.Now())
	if ae, ok := a.recv.lastAE.Load().(string); ok {
		st.Receiving.LastSender = ae
		st.Receiving.LastAt = time.Unix(0, a.recv.lastAt.Load())
	}
	st.Update = a.updateVerdict()
	if statsErr != nil {
		st.StoreError = statsErr.Error()
		h.alarm(&st.Health.Disk, control.LevelAlarm, "", "the store cannot be read: %v; restart the box, and call the regional team if it stays", statsErr)
	}
	st.Stored = control.Stored{Patients: stats.Patients, Studies: stats.Studies, Instances: stats.Instances.Count, Bytes: stats.Instances.Bytes, Conflicts: stats.Conflicts.Count, Damaged: stats.Damaged.Count}
	st.Disk = control.Disk{Total: stats.Space.Total, Free: stats.Space.Free, UsedPercent: 100 * stats.Space.Used(), Undelivered: undelivered(stats)}
	if len(cfg.Destinations) == 0 {
		h.alarm(&st.Health.Forwarding, control.LevelWarning, "s", "no destination configured: studies are kept here until one is (Setup → Destinations)")
	}
	now := time.Now()
	for _, d := range a.destinationStatus(&cfg) {
		q := stats.Queues[d.Name]
		d.QueueDepth = q.Depth
		d.QueueBytes = waiting(q)
		d.Failed = q.States[store.Failed].Count
		d.Parked = q.States[store.Parked].Count
		d.Delivered = q.States[store.Delivered].Count
		d.Committed = q.States[store.Committed].Count
		if age := a.clock.waited(stats.OldestWaitingAge(d.Name, now), now, a.started); q.Depth > 0 && age > 0 {
			d.OldestWaiting = age.Round(time.Second).String()
			d.OldestWaitingSeconds = age.Seconds()
		}
		h.destination(&cfg, d)
		st.Destinations = append(st.Destinations, d)
	}
	if st.Stored.Damaged > 0 {
		ds, n, err := a.store.DamagedCopies(context.Background(), damagedListed)
		h.damaged(ds, n, err)
	}
	if st.Stored.Conflicts > 0 {
		h.alarm(&st.Health.Receiving, control.LevelWarning, "", "%d conflicting cop(ies) wait for review: the same instance arrived with other bytes; review them (relais conflicts)", st.Stored.Conflicts)
	}
	h.tunnel(&cfg, a.tunnelFaults.list())
	h.clock(a.clock, st.Tunnel.State != "not configured")
	h.callers()
	if statsErr == nil {
		h.disk(a, &cfg, stats.Space)
	}
	// Alarms before warnings, each level in the order the parts were looked
	// at: every client (the console's first screen, relais status) shows
	// the most urgent first, and the console's cursor indexes this list.
	slices.SortStableFunc(st.Alarms, func(x, y control.Alarm) int { return severity(y.Level) - severity(x.Level) })
	return st
}

// disk turns the store's model of the disk and the stores refused for
// space into the disk's health: an alarm while stores are refused (or will
// be: less is free than new studies need), a warning once retention has
// to purge, and a warning when the configured watermarks do not fit.
func (h health) disk(a *Appliance, cfg *config.Config, sp store.Space) {
	d := &h.st.Disk
	p, _ := sp.Clamp(purgePolicy(cfg))
	d.RefuseBelow, d.HighWatermarkPercent, d.LowWatermarkPercent = sp.Refuse, 100*p.HighWatermark, 100*p.LowWatermark
	d.RefusingSince, d.Refused, _ = a.refusing.state()
	d.SaveFailingSince, d.SaveFailed, d.SaveError = a.failing.state()
	if at, err := a.store.WriteFailure(); err != nil {
		// Said even when no instance was refused yet: the failed write may
		// have been the forwarder's.
		if d.SaveFailingSince.IsZero() || at.Before(d.SaveFailingSince) {
			d.SaveFailingSince = at
		}
		d.SaveError = err.Error()
		h.alarm(&h.st.Health.Disk, control.LevelAlarm, "", "the disk failed a write at %s (%v): the box stores nothing more until it restarts; every instance is refused (Processing Failure) and stays with its sender (%d so far), and nothing is forwarded (a delivery could not be recorded); %s",
			at.Local().Format(time.TimeOnly), err, d.SaveFailed, saveFailAction)
		if len(cfg.Destinations) > 0 {
			// Nothing can be leased, so nothing moves: said by the disk's alarm.
			h.st.Health.Forwarding = worse(h.st.Health.Forwarding, control.LevelAlarm)
		}
	} else if !d.SaveFailingSince.IsZero() {
		h.alarm(&h.st.Health.Disk, control.LevelAlarm, "", "the disk failed to save %d instance(s) since %s and has saved none since (last: %s); they were refused (Processing Failure) and stay with their senders, nothing stored before is affected; %s",
			d.SaveFailed, d.SaveFailingSince.Local().Format(time.TimeOnly), d.SaveError, saveFailAction)
	}
	facts := diskFullFacts(sp, d.Undelivered)
	switch {
	case !d.RefusingSince.IsZero():
		h.alarm(&h.st.Health.Disk, control.LevelAlarm, "", "disk full: refusing new studies (A700) since %s, %d refused: %s; %s",
			d.RefusingSince.Local().Format(time.TimeOnly), d.Refused, facts, diskFullAction)
	case sp.Refusing():
		h.alarm(&h.st.Health.Disk, control.LevelAlarm, "", "disk full: new studies will be refused (A700): %s; %s", facts, diskFullAction)
	case sp.Purging(p):
		h.alarm(&h.st.Health.Disk, control.LevelWarning, "", "disk %.0f %% used: delivered studies are being purged to keep room for new ones; %s", d.UsedPercent, facts)
	}
	if note := watermarkNote(cfg, sp); note != "" {
		h.alarm(&h.st.Health.Disk, control.LevelWarning, "", "%s", note)
	}
}

// damagedListed is how many damaged copies the status reads to name their
// studies: the alarm names a few, and the count says the rest.
const damagedListed = 50

// damagedStudies is how many studies the damaged-copy alarm names.
const damagedStudies = 3

// damaged turns the stored copies found damaged or missing into an alarm:
// they are not sent, and only their sender can mend them, by sending them
// again (the store then replaces them and queues the good copies).
func (h health) damaged(ds []store.Damage, n int, err error) {
	copies := "copies are"
	if n == 1 {
		copies = "copy is"
	}
	if err != nil {
		h.alarm(&h.st.Health.Disk, control.LevelAlarm, "", "%d stored %s damaged or missing on this box's disk and not sent; the list cannot be read: %v", n, copies, err)
		return
	}
	type study struct {
		uid, ae string
		n       int
	}
	var studies []*study
	byUID := map[string]*study{}
	for _, d := range ds {
		s := byUID[d.StudyInstanceUID]
		if s == nil {
			s = &study{uid: d.StudyInstanceUID, ae: d.CallingAE}
			byUID[d.StudyInstanceUID] = s
			studies = append(studies, s)
		}
		s.n++
	}
	var named []string
	for _, s := range studies[:min(len(studies), damagedStudies)] {
		named = append(named, fmt.Sprintf("study %s from %s (%d of its instances)", s.uid, s.ae, s.n))
	}
	list := strings.Join(named, ", ")
	if len(ds) < n || len(studies) > damagedStudies {
		list += ", and more (relais parked)"
	}
	action := "ask each modality to send its study again: the good copies replace the damaged ones and go out by themselves"
	if len(studies) == 1 && len(ds) == n {
		action = forward.AskAgain(studies[0].ae, "study "+studies[0].uid)
	}
	h.alarm(&h.st.Health.Disk, control.LevelAlarm, "", "%d stored %s damaged or missing on this box's disk and not sent: %s; %s. If it happens again, have the disk checked",
		n, copies, list, action)
}

// damagedAmong tells, in the parked alarm, that some parked instances may
// be damaged copies, which a retry cannot send.
func damagedAmong(damaged int) string {
	if damaged == 0 {
		return ""
	}
	return "; damaged copies among them wait to be sent again by their modality (see the disk alarm)"
}

type health struct{ st *control.Status }

// alarm adds an alarm and raises part to its level.
func (h health) alarm(part *string, level, key, format string, args ...any) {
	*part = worse(*part, level)
	h.st.Alarms = append(h.st.Alarms, control.Alarm{Level: level, Message: fmt.Sprintf(format, args...), Key: key})
}

// listener turns the DICOM listener's evidence into an alarm: while it
// fails to accept, every modality is refused, whatever else looks fine.
func (h health) listener(lh dimse.ListenerHealth) {
	if !lh.Failing {
		return
	}
	since := lh.FailingSince.Local().Format(time.TimeOnly)
	if lh.OutOfFiles {
		h.alarm(&h.st.Health.Receiving, control.LevelAlarm, "", "the box cannot accept new DICOM connections since %s: too many open connections (%d); find the sender that holds connections open and stop it, or restart the box if it stays", since, lh.Open)
		return
	}
	h.alarm(&h.st.Health.Receiving, control.LevelAlarm, "", "the box cannot accept new DICOM connections since %s: %s; restart the box if it stays", since, lh.LastError)
}

// probe turns the box's own echo into an alarm: a service that accepts
// connections and does not answer (wedged) refuses every modality as
// surely as a dead listener. A failing listener has its own alarm.
func (h health) probe(lh dimse.ListenerHealth, r probeResult, every time.Duration, now time.Time) {
	h.st.Receiving.SelfEchoAt = r.answered
	if lh.Failing {
		return // the listener's own alarm says more
	}
	// An answer that old says nothing of the service now: the check itself
	// is stuck.
	if !r.at.IsZero() && now.Sub(r.at) > 3*every {
		h.alarm(&h.st.Health.Receiving, control.LevelAlarm, "", "not known to be receiving: the box has not been able to echo its own DICOM service since %s; restart relaisd, or the box if it stays",
			r.at.Local().Format(time.TimeOnly))
		return
	}
	if r.err == nil {
		return
	}
	since := r.since.Local().Format(time.TimeOnly)
	if rj := (*dimse.Rejection)(nil); errors.As(r.err, &rj) && rj.Result == 2 {
		h.alarm(&h.st.Health.Receiving, control.LevelAlarm, "", "not receiving: the DICOM service does not answer an echo from the box itself since %s: every association slot is in use (%v), so modalities are refused too; find the senders that hold associations open, raise max_associations, or restart relaisd",
			since, r.err)
		return
	}
	h.alarm(&h.st.Health.Receiving, control.LevelAlarm, "", "not receiving: the DICOM service does not answer an echo from the box itself since %s (%v); restart relaisd, or the box if it stays",
		since, r.err)
}

// destination turns one destination's state into alarms.
func (h health) destination(cfg *config.Config, d control.DestinationStatus) {
	fw := &h.st.Health.Forwarding
	switch d.State {
	case control.DestRetrying:
		h.alarm(fw, control.LevelAlarm, "r", "%s unreachable for %s (attempt %d), next try at %s: %s",
			d.Name, d.FailingFor, d.Attempts, d.NextAttempt.Local().Format(time.TimeOnly), d.LastError)
	case control.DestStalled:
		h.alarm(fw, control.LevelAlarm, "r", "%s accepted an association but nothing has moved for %s while %d instance(s) wait: the PACS may be hung; check it, or pause it and use another destination",
			d.Name, d.StalledFor, d.QueueDepth)
	case control.DestPaused:
		h.alarm(fw, control.LevelWarning, "p", "%s is paused: %d instance(s) waiting", d.Name, d.QueueDepth)
	}
	if d.Parked > 0 {
		h.alarm(fw, control.LevelAlarm, "r", "%d instance(s) parked at %s after repeated failures: they stay stored; see why, then retry or abandon them (relais parked)%s", d.Parked, d.Name, damagedAmong(h.st.Stored.Damaged))
	}
	if d.Failed > 0 && d.State != control.DestRetrying {
		h.alarm(fw, control.LevelWarning, "r", "%d instance(s) not accepted by %s, retried on their own: %s", d.Failed, d.Name, lastInstanceError(d))
	}
	if limit := cfg.Alarms.OldestWaiting(); d.OldestWaitingSeconds > limit.Seconds() && d.State != control.DestPaused {
		h.alarm(fw, control.LevelAlarm, "r", "the oldest study waiting for %s has waited %s (more than %v): check %s's other alarms",
			d.Name, d.OldestWaiting, limit, d.Name)
	}
	if c := d.Commitment; c.Error != "" {
		h.alarm(fw, control.LevelAlarm, "r", "Storage Commitment with %s failing for %s: %s", d.Name, time.Since(c.FailingSince).Round(time.Second), c.Error)
	}
}

// callerAlarms is how many unknown callers get an alarm line each; the
// rest are one line, so a flood does not bury the other alarms.
const callerAlarms = 3

func (h health) callers() {
	others := h.st.OtherCallers
	shown := 0
	for _, c := range h.st.Callers {
		switch {
		case c.Learned:
		case shown < callerAlarms:
			h.alarm(&h.st.Health.Receiving, control.LevelWarning, "a", "unknown modality %s (%s) tried to send", c.AETitle, c.Address)
			shown++
		default:
			others++
		}
	}
	if others > 0 {
		h.alarm(&h.st.Health.Receiving, control.LevelWarning, "a", "and %d other callers tried to send (relais callers lists the latest %d)", others, maxCallers)
	}
}

func lastInstanceError(d control.DestinationStatus) string {
	if d.LastError != "" {
		return d.LastError
	}
	return "see the events"
}

func (h health) tunnel(cfg *config.Config, faults []string) {
	t := h.st.Tunnel
	switch t.State {
	case "up":
		// The tunnel works, but the regional team cannot use it to watch
		// or reach the box.
		for _, f := range faults {
			h.alarm(&h.st.Health.Tunnel, control.LevelWarning, "", "the regional team cannot reach %s; restart relaisd, or the box if it stays", f)
		}
	case "not configured":
		if len(cfg.Destinations) > 0 {
			h.alarm(&h.st.Health.Tunnel, control.LevelWarning, "t", "no tunnel: destinations are reached over the hospital network (Setup → Tunnel)")
		}
	default:
		msg := "tunnel to the reading center is " + t.State
		if t.Error != "" {
			msg += ": " + t.Error
		}
		h.alarm(&h.st.Health.Tunnel, control.LevelAlarm, "t", "%s; check the box's network and the center's endpoint", msg)
	}
}
