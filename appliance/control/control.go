// Package control is the contract of relaisd's control API: HTTP and JSON
// on a unix socket in the data folder (owner only). It holds the types and
// a client; the console (tui) and the relais CLI use nothing else of the
// daemon. The server side lives in the appliance package.
package control

import (
	"fmt"
	"strings"
	"time"

	"github.com/relais/relais/appliance/config"
)

// SocketName is the control socket's name in the data folder.
const SocketName = "relais.sock"

// Status is the whole box at a glance.
type Status struct {
	Version string `json:"version"`
	Image   string `json:"image,omitempty"` // the system image running (gokrazy's SBOM hash); "" outside an image
	AETitle string `json:"ae_title"`
	Port    int    `json:"port"`
	// Addresses are where modalities send to (with AETitle and Port): the
	// box's addresses on the hospital network, the tunnel's left out.
	Addresses    []string            `json:"addresses,omitempty"`
	StartedAt    time.Time           `json:"started_at"`
	Health       Health              `json:"health"`
	Receiving    Receiving           `json:"receiving"`
	Destinations []DestinationStatus `json:"destinations"`
	Tunnel       Tunnel              `json:"tunnel"`
	Disk         Disk                `json:"disk"`
	Stored       Stored              `json:"stored"`
	Alarms       []Alarm             `json:"alarms"`
	Callers      []Caller            `json:"callers"` // the latest unknown callers, a bounded list
	// OtherCallers is how many refused callers were dropped from Callers
	// since start (a flood of made-up AE titles).
	OtherCallers int `json:"other_callers,omitempty"`
	// StoreError says why the store cannot be read ("" when it can): the
	// update guard requires it empty.
	StoreError string `json:"store_error,omitempty"`
	// Update is the update guard's last verdict, nil before its first.
	Update *Update `json:"update,omitempty"`
}

// SendTo is what a modality must be told: "RELAIS at 192.168.1.20 port
// 104"; "" when the box has no address on a network yet.
func (s Status) SendTo() string {
	if len(s.Addresses) == 0 {
		return ""
	}
	return fmt.Sprintf("%s at %s port %d", s.AETitle, strings.Join(s.Addresses, " or "), s.Port)
}

// Update is the update guard's last verdict (cmd/relais-guard judges each
// new image after a gokrazy update).
type Update struct {
	State   string    `json:"state"`             // good, rolled-back, unhealthy
	Image   string    `json:"image"`             // the image judged: its SBOM hash, 10 characters, as gokrazy's status page shows it
	Running string    `json:"running,omitempty"` // the image that runs since (the previous one after a rollback)
	Reason  string    `json:"reason,omitempty"`
	Message string    `json:"message"`          // the verdict in one sentence
	Output  []string  `json:"output,omitempty"` // the failing program's last lines
	At      time.Time `json:"at"`
}

// Update states.
const (
	UpdateGood       = "good"
	UpdateRolledBack = "rolled-back"
	UpdateUnhealthy  = "unhealthy"
)

// Summary is the verdict in one line for the console and relais status,
// with its level: the last update, when, and what came of it.
func (u *Update) Summary() (level, text string) {
	at := u.At.Local().Format("2006-01-02 15:04")
	switch u.State {
	case UpdateGood:
		return LevelOK, fmt.Sprintf("image %s judged good at %s", u.Image, at)
	case UpdateRolledBack:
		return LevelAlarm, fmt.Sprintf("image %s rolled back at %s (%s); %s runs", u.Image, at, u.Reason, u.Running)
	}
	return LevelWarning, fmt.Sprintf("image %s %s at %s: %s", u.Image, u.State, at, u.Message)
}

// GuardVerdict is what the update guard posts to /v1/events/guard.
type GuardVerdict struct {
	Update
	// Log asks for an event in the log: the first time the guard tells a
	// verdict. It tells it again, unlogged, whenever relaisd restarts.
	Log bool `json:"log"`
}

// Levels of Health fields and alarms.
const (
	LevelOK      = "ok"
	LevelWarning = "warning"
	LevelAlarm   = "alarm"
)

// Health is one word per part: ok, warning or alarm.
type Health struct {
	Receiving  string `json:"receiving"`
	Forwarding string `json:"forwarding"`
	Tunnel     string `json:"tunnel"`
	Disk       string `json:"disk"`
}

// Receiving is what arrived since the daemon started.
type Receiving struct {
	Associations int       `json:"associations"` // open now
	Instances    int64     `json:"instances"`
	Bytes        int64     `json:"bytes"`
	ResultsToday int       `json:"results_today"` // instances the reading center sent back today
	LastSender   string    `json:"last_sender,omitempty"`
	LastAt       time.Time `json:"last_at,omitzero"`
	// SelfEchoAt is when the DICOM service last answered the box's own
	// C-ECHO (every 45 s): the evidence that it receives.
	SelfEchoAt time.Time `json:"self_echo_at,omitzero"`
}

// DestinationState is what a destination's forwarding is doing.
type DestinationState string

const (
	DestIdle       DestinationState = "idle"
	DestConnecting DestinationState = "connecting"
	DestSending    DestinationState = "sending"
	DestRetrying   DestinationState = "retrying" // unreachable: waiting to try again
	DestStalled    DestinationState = "stalled"  // an association is open, nothing moves
	DestPaused     DestinationState = "paused"
)

// DestinationStatus is one destination's forwarding.
type DestinationStatus struct {
	Name                 string           `json:"name"`
	AETitle              string           `json:"ae_title"`
	Address              string           `json:"address"`
	State                DestinationState `json:"state"`
	LastError            string           `json:"last_error,omitempty"`
	FailingFor           string           `json:"failing_for,omitempty"`    // unreachable for, from the first failure
	FailingSince         time.Time        `json:"failing_since,omitzero"`   // survives a restart
	Attempts             int              `json:"attempts,omitempty"`       // failed connections in a row
	NextAttempt          time.Time        `json:"next_attempt,omitzero"`    //
	StalledFor           string           `json:"stalled_for,omitempty"`    // no progress on an open association
	Sending              string           `json:"sending,omitempty"`        // study being sent
	SentSince            int64            `json:"sent_since_start"`         //
	BytesSent            int64            `json:"bytes_sent_since_start"`   //
	LastSuccess          time.Time        `json:"last_success,omitzero"`    //
	QueueDepth           int              `json:"queue_depth"`              // waiting: pending, in flight, failed
	QueueBytes           int64            `json:"queue_bytes"`              //
	OldestWaiting        string           `json:"oldest_waiting,omitempty"` // age, e.g. "12m3s"
	OldestWaitingSeconds float64          `json:"oldest_waiting_seconds,omitempty"`
	Failed               int              `json:"failed"`    // instances retried after failing
	Parked               int              `json:"parked"`    // instances that need a person
	Delivered            int              `json:"delivered"` // not yet committed
	Committed            int              `json:"committed"`
	Commitment           Commitment       `json:"commitment,omitzero"`
}

// Commitment is how Storage Commitment with a destination goes.
type Commitment struct {
	Error        string    `json:"error,omitempty"` // why the last request failed, or went unanswered
	FailingSince time.Time `json:"failing_since,omitzero"`
	Outstanding  int       `json:"outstanding,omitempty"` // requests waiting for a report
	LastReport   time.Time `json:"last_report,omitzero"`
}

// Tunnel is the WireGuard tunnel's state.
type Tunnel struct {
	State        string  `json:"state"` // "not configured", starting, up, down
	Mode         string  `json:"mode,omitempty"`
	Error        string  `json:"error,omitempty"` // why it can't start
	HandshakeAge string  `json:"handshake_age,omitempty"`
	Endpoint     string  `json:"endpoint,omitempty"`
	RxBytes      int64   `json:"rx_bytes,omitempty"`
	TxBytes      int64   `json:"tx_bytes,omitempty"`
	RxRate       float64 `json:"rx_bytes_per_second,omitempty"`
	TxRate       float64 `json:"tx_bytes_per_second,omitempty"`
	PublicKey    string  `json:"public_key,omitempty"`
}

// TunnelInfo is the tunnel's configuration and state.
type TunnelInfo struct {
	Config config.Tunnel `json:"config"`
	Status Tunnel        `json:"status"`
}

// ImportResult answers a wg-quick import.
type ImportResult struct {
	Warning string `json:"warning,omitempty"`
}

// Network is the box's own address on the hospital network.
type Network struct {
	Mode    string   `json:"mode"` // dhcp or static
	Address string   `json:"address,omitempty"`
	Gateway string   `json:"gateway,omitempty"`
	DNS     []string `json:"dns,omitempty"`
}

// ConsoleKeys is who may open the console over SSH (the regional team,
// through the tunnel): the public keys of the list in force.
type ConsoleKeys struct {
	Keys []ConsoleKey `json:"keys"`
	// From is where the list in force is read: ConsoleKeysBox,
	// ConsoleKeysImage or "" (no list: every login is refused).
	From string `json:"from"`
	// Error names the list's bad lines ("" when none): they let nobody in.
	Error string `json:"error,omitempty"`
	// HostKey is the fingerprint of the console's SSH host key, for the
	// team to check at its first login; "" until the console made it.
	HostKey string `json:"host_key,omitempty"`
}

// Where a list of console keys comes from.
const (
	ConsoleKeysBox   = "box"   // the data folder's, edited from the console
	ConsoleKeysImage = "image" // the image's (a site file), until the box has its own
)

// ConsoleKey is one allowed key, as the console shows it: never the key
// itself beyond its fingerprint.
type ConsoleKey struct {
	Fingerprint string `json:"fingerprint"` // SHA256:…, as ssh-keygen -l prints it
	Type        string `json:"type"`        // ssh-ed25519…
	Comment     string `json:"comment,omitempty"`
}

// ConsoleKeyRequest adds a key (Key: an authorized_keys line) or removes
// one (Fingerprint).
type ConsoleKeyRequest struct {
	Key         string `json:"key,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	By          string `json:"by,omitempty"` // the person or session, when the caller knows
}

// Disk is the data folder's filesystem.
type Disk struct {
	Total       uint64  `json:"total"`
	Free        uint64  `json:"free"`
	UsedPercent float64 `json:"used_percent"`
	Undelivered int64   `json:"undelivered_bytes"`
	// RefuseBelow: new studies are refused (A700) when less is free.
	RefuseBelow uint64 `json:"refuse_below"`
	// The retention watermarks in force: the configured ones, lowered
	// when the disk is too small for them (an alarm says so).
	HighWatermarkPercent float64 `json:"high_watermark_percent"`
	LowWatermarkPercent  float64 `json:"low_watermark_percent"`
	// RefusingSince: stores are refused for space since then (zero: not
	// refusing), Refused of them.
	RefusingSince time.Time `json:"refusing_since,omitzero"`
	Refused       int       `json:"refused,omitempty"`
	// SaveFailingSince: the disk fails to save instances (an I/O error)
	// since then, and has not saved one since (zero: it saves); SaveFailed
	// of them were refused, the last for SaveError.
	SaveFailingSince time.Time `json:"save_failing_since,omitzero"`
	SaveFailed       int       `json:"save_failed,omitempty"`
	SaveError        string    `json:"save_error,omitempty"`
}

// Stored counts what the store holds.
type Stored struct {
	Patients  int   `json:"patients"`
	Studies   int   `json:"studies"`
	Instances int   `json:"instances"`
	Bytes     int64 `json:"bytes"`
	Conflicts int   `json:"conflicts"`
	// Damaged: accepted copies whose bytes on disk are missing or differ
	// from what was received; they are not sent until the sender sends
	// them again.
	Damaged int `json:"damaged"`
}

// An Alarm is a problem in plain words, with the console key that fixes it.
type Alarm struct {
	Level   string `json:"level"`
	Message string `json:"message"`
	Key     string `json:"key,omitempty"`
}

// Caller is a device that tried to send and is not allowed (or, in
// learning mode, was let in).
type Caller struct {
	AETitle   string    `json:"ae_title"`
	Address   string    `json:"address"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Attempts  int       `json:"attempts"`
	Learned   bool      `json:"learned"`
}

// StudyState is where a study stands, all destinations together.
type StudyState string

const (
	StudyReceiving StudyState = "receiving"
	StudyHeld      StudyState = "held"       // no destination is configured: kept until one is
	StudyNotRouted StudyState = "not routed" // no destination takes it (their filters): kept
	StudyQueued    StudyState = "queued"
	StudySending   StudyState = "sending"
	StudyFailed    StudyState = "failed" // some instances failed and are retried
	StudyParked    StudyState = "parked" // some instances failed too often: a person must act
	StudyDelivered StudyState = "delivered"
	StudyCommitted StudyState = "committed"
)

// Study is a stored study with its forwarding state.
type Study struct {
	StudyInstanceUID string        `json:"study_instance_uid"`
	PatientID        string        `json:"patient_id"`
	PatientName      string        `json:"patient_name"`
	StudyDate        string        `json:"study_date"`
	Description      string        `json:"description"`
	AccessionNumber  string        `json:"accession_number"`
	Modalities       []string      `json:"modalities"`
	Urgent           bool          `json:"urgent"`
	FirstReceived    time.Time     `json:"first_received"`
	LastReceived     time.Time     `json:"last_received"`
	Instances        int           `json:"instances"`
	Bytes            int64         `json:"bytes"`
	Conflicts        int           `json:"conflicts"`
	State            StudyState    `json:"state"`
	Destinations     []StudyAtDest `json:"destinations"`
}

// StudyAtDest is a study's progress towards one destination.
type StudyAtDest struct {
	Name      string `json:"name"`
	Pending   int    `json:"pending"`
	InFlight  int    `json:"in_flight"`
	Failed    int    `json:"failed"`
	Parked    int    `json:"parked"`
	Abandoned int    `json:"abandoned,omitempty"`
	Delivered int    `json:"delivered"`
	Committed int    `json:"committed"`
	LastError string `json:"last_error,omitempty"`
}

// ParkedInstance is an instance that failed too often at a destination and
// waits for a person: retry it, or abandon it.
type ParkedInstance struct {
	Destination      string    `json:"destination"`
	SOPInstanceUID   string    `json:"sop_instance_uid"`
	StudyInstanceUID string    `json:"study_instance_uid"`
	PatientName      string    `json:"patient_name"`
	PatientID        string    `json:"patient_id"`
	StudyDescription string    `json:"study_description,omitempty"`
	TransferSyntax   string    `json:"transfer_syntax"` // by name
	Attempts         int       `json:"attempts"`
	FirstFailure     time.Time `json:"first_failure,omitzero"`
	Reason           string    `json:"reason"`
}

// InstanceRequest names an instance at a destination (retry, abandon).
type InstanceRequest struct {
	Destination    string `json:"destination"`
	SOPInstanceUID string `json:"sop_instance_uid"`
	Reason         string `json:"reason,omitempty"` // abandon: why, for the audit event
	By             string `json:"by,omitempty"`     // who, for the audit event
}

// StudyRequest names a study, and optionally one destination (retry, resend).
type StudyRequest struct {
	StudyInstanceUID string `json:"study_instance_uid"`
	Destination      string `json:"destination,omitempty"`
}

// Changed says how many instances an action changed.
type Changed struct {
	Instances int `json:"instances"`
}

// EventKinds are the kinds of events relaisd logs (the store's kinds and
// the update guard's), for EventQuery.Kinds.
func EventKinds() []string {
	return []string{"association", "store", "reject", "forward", "retry", "commit", "purge", "config", "review", "update"}
}

// Event is a line of the event log.
type Event struct {
	Time     time.Time         `json:"time"`
	Kind     string            `json:"kind"`
	Severity string            `json:"severity"`
	Message  string            `json:"message"`
	Attrs    map[string]string `json:"attrs,omitempty"`
}

// EchoRequest names what to echo: a destination, a modality (by AE
// title), or any address (Host, Port and CalledAE, as echoscu -aec takes
// them; CallingAE defaults to the box's AE title).
type EchoRequest struct {
	Destination string `json:"destination,omitempty"`
	Modality    string `json:"modality,omitempty"`
	Host        string `json:"host,omitempty"`
	Port        int    `json:"port,omitempty"`
	CalledAE    string `json:"called_ae,omitempty"`
	CallingAE   string `json:"calling_ae,omitempty"`
}

// EchoResult is the outcome of a C-ECHO.
type EchoResult struct {
	Target string  `json:"target"`
	OK     bool    `json:"ok"`
	Status string  `json:"status,omitempty"`
	Error  string  `json:"error,omitempty"`
	RTTms  float64 `json:"rtt_ms"`
}

// DestinationRequest names a destination (retry, pause, resume).
type DestinationRequest struct {
	Destination string `json:"destination"`
}

// UrgentRequest marks a study urgent or not.
type UrgentRequest struct {
	StudyInstanceUID string `json:"study_instance_uid"`
	Urgent           bool   `json:"urgent"`
}

// CallerRequest approves or denies a caller.
type CallerRequest struct {
	AETitle string `json:"ae_title"`
	Address string `json:"address,omitempty"`
}

// PurgeResult says what a purge removed.
type PurgeResult struct {
	Studies   int   `json:"studies"`
	Instances int   `json:"instances"`
	Bytes     int64 `json:"bytes"`
}

// ConflictCopy is one stored copy of an instance under review.
type ConflictCopy struct {
	ID          uint64    `json:"id"`
	CallingAE   string    `json:"calling_ae"`
	RemoteAddr  string    `json:"remote_addr"`
	ReceivedAt  time.Time `json:"received_at"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	PatientName string    `json:"patient_name"`
	StudyUID    string    `json:"study_instance_uid"`
	// How this copy's header differs from the held copy's (GET
	// /v1/conflicts/{uid} only, flagged copies only).
	Changes     []HeaderChange `json:"changes,omitempty"`
	MoreChanges int            `json:"more_changes,omitempty"` // differing elements left out
	Note        string         `json:"note,omitempty"`         // why no change is listed
}

// HeaderChange is one element whose value differs between two copies.
type HeaderChange struct {
	Tag  string `json:"tag"`  // (gggg,eeee)
	Name string `json:"name"` // keyword; empty for private elements
	Old  string `json:"old"`  // values cut at 64 characters
	New  string `json:"new"`
	// Added: absent from the held copy; Removed: absent from the flagged one.
	Added   bool `json:"added,omitempty"`
	Removed bool `json:"removed,omitempty"`
}

// Conflict is a SOP Instance UID that arrived again with other bytes: the
// copy held (forwarded) and the flagged copies waiting for a decision.
type Conflict struct {
	SOPInstanceUID string         `json:"sop_instance_uid"`
	Held           *ConflictCopy  `json:"held,omitempty"` // nil: purged with its study
	Copies         []ConflictCopy `json:"copies"`
}

// Actions on a flagged copy.
const (
	ConflictCorrect = "correct" // the flagged copy replaces the held one and is forwarded again
	ConflictDiscard = "discard" // the flagged copy is removed
)

// ConflictRequest resolves one flagged copy. Reason is required: it goes
// into the audit event with who asked.
type ConflictRequest struct {
	SOPInstanceUID string `json:"sop_instance_uid"`
	ConflictID     uint64 `json:"conflict_id"`
	Action         string `json:"action"` // ConflictCorrect or ConflictDiscard
	Reason         string `json:"reason"`
	By             string `json:"by,omitempty"` // the person, when the caller knows
}

// ConflictResult says what was done, in plain words.
type ConflictResult struct {
	Message string `json:"message"`
}

// Error is the body of every failed request; Fields lists configuration
// problems field by field.
type Error struct {
	Message string              `json:"error"`
	Fields  []config.FieldError `json:"fields,omitempty"`
}

func (e *Error) Error() string { return e.Message }
