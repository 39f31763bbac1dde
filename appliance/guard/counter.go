package guard

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/relais/relais/appliance/guard/bootcount"
)

// RecordFile is the guard's record in its folder on /perm. gokrazy updates
// write the boot and root partitions only, so it survives every update, and
// so does the store next to it. The boot counter (bootcount) reads its
// good and rejected images.
const RecordFile = bootcount.RecordFile

// historyLen bounds the decisions kept in the record.
const historyLen = 20

// record is what the guard knows across boots. Every change is written
// (synced, atomically) before the guard acts on it, so a power cut at any
// instant leaves a record that still prevents a loop.
type record struct {
	// Good is the image that last passed the health checks (or the first
	// image the guard saw, on a fresh box); GoodSince when that was decided.
	Good      *Image    `json:"good,omitempty"`
	GoodSince time.Time `json:"good_since,omitzero"`

	// Trial is the image under test after an update, with its boot
	// counter: how many times relaisd started on it (boots and restarts)
	// without passing the checks.
	Trial *trial `json:"trial,omitempty"`

	// Rejected are images the guard switched away from since the good image
	// last ran. Finding one of them running again means the switch did not
	// take (or pointed at another untested image): the guard does not switch
	// again, so the box never reboots in a loop.
	Rejected []Image `json:"rejected,omitempty"`

	// Baseline tells, for each check, whether it passed on the good image at
	// its last look (Guard.Watch). Checks marked IfHealthyBefore are required
	// after an update only where their baseline is true.
	Baseline   map[string]bool `json:"baseline,omitempty"`
	BaselineAt time.Time       `json:"baseline_at,omitzero"`

	// History is the last decisions, newest last, for the regional team.
	History []Entry `json:"history,omitempty"`

	// Last is the last verdict on an update, kept until relaisd has it in
	// its event log (it may come from the image before a rollback).
	Last *Verdict `json:"last,omitempty"`
}

// The guard program prints each verdict to stdout as one line,
// VerdictPrefix and a control.Update in JSON, and VerdictChecking while it
// judges: make update reads them through gokrazy's /log on the box.
const (
	VerdictPrefix   = "verdict "
	VerdictChecking = "checking"
)

// Verdict is the guard's decision on an update, as relaisd's event log, the
// console and make update show it.
type Verdict struct {
	Entry
	// Running is the image that runs after the verdict (the previous one,
	// after a rollback).
	Running Image `json:"running"`
	// Output is the last lines of the failing program's output.
	Output []string `json:"output,omitempty"`
	// Reported is set once relaisd has logged the verdict.
	Reported bool `json:"reported,omitempty"`
}

// Message is the verdict in one sentence: "update to 1a2b3c4d5e rolled
// back: relaisd crashed 5 times in 30 s: panic: …".
func (v Verdict) Message() string {
	switch v.State {
	case Good:
		return fmt.Sprintf("update to %s is good: %s; %s runs", v.Image.Short(), v.Reason, v.Running.Short())
	case RolledBack:
		return fmt.Sprintf("update to %s rolled back: %s", v.Image.Short(), v.Reason)
	}
	return fmt.Sprintf("update to %s %s: %s", v.Image.Short(), v.State, v.Reason)
}

type trial struct {
	Image  Image `json:"image"`
	Starts int   `json:"starts"`
}

// Entry is one decision of the guard.
type Entry struct {
	At     time.Time `json:"at"`
	Image  Image     `json:"image"`
	State  State     `json:"state"`
	Reason string    `json:"reason,omitempty"`
}

func (r *record) rejected(img Image) bool { return slices.Contains(r.Rejected, img) }

func (r *record) note(e Entry) {
	r.History = append(r.History, e)
	if n := len(r.History) - historyLen; n > 0 {
		r.History = slices.Delete(r.History, 0, n)
	}
}

// loadRecord reads the record in dir; a missing file is an empty record (a
// fresh box). A damaged one is an error: guessing could roll back a good
// image or keep a bad one.
func loadRecord(dir string) (*record, error) {
	path := filepath.Join(dir, RecordFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &record{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read guard record: %w", err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read guard record %s: %w", path, err)
	}
	return &r, nil
}

// save writes r to dir, synced, replacing the old record atomically.
func (r *record) save(dir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("save guard record: %w", err)
	}
	return bootcount.WriteFile(filepath.Join(dir, RecordFile), append(b, '\n'))
}
