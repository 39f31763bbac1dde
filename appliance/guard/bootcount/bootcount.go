// Package bootcount is the update guard's boot counter: the part of the
// guard that must work when the guard itself (cmd/relais-guard) cannot run
// at all — a guard that panics in init, hangs, or is missing from the image.
// It runs as its own tiny program at every boot (cmd/relais-bootcount),
// imports nothing but the standard library and gokrazy's local API, and:
//
//  1. identifies the running image; on the image the guard marked good (or
//     when none is marked yet, or the guard switched away from this one
//     already) there is nothing to count and it exits;
//  2. otherwise counts this boot of the image in boots.json, synced;
//  3. if the image has now booted more than Boots times without a verdict of
//     the guard, it switches back to the previous root partition and
//     reboots — once: if that image runs again the switch did not take, and
//     it stays, so the box never reboots in a loop;
//  4. else it waits up to Wait for the guard's verdict (Settle, or the
//     guard's record naming the image good or rejected); none by then
//     means the guard cannot run: it reboots, and step 3 decides at the
//     next boot.
//
// Only a verdict of the guard resets the counter.
package bootcount

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Files in the guard's folder (/perm/relais/guard on the box). The guard
// owns RecordFile; this package reads two of its fields.
const (
	CounterFile = "boots.json"
	RecordFile  = "guard.json"
)

// Counter is boots.json.
type Counter struct {
	// Image is the image being counted; Boots how many times it booted
	// since the guard last gave a verdict on it.
	Image Image `json:"image"`
	Boots int   `json:"boots"`
	// Verdict is the guard's last verdict on Image ("" while none).
	Verdict string `json:"verdict,omitempty"`
	// RolledBack is set when the counter switched back; the guard reports
	// it on the image the box comes back to, then clears it.
	RolledBack *Rollback `json:"rolled_back,omitempty"`
}

// Rollback is a switch back made by the counter.
type Rollback struct {
	Image  Image     `json:"image"` // the image left
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// LoadCounter reads dir's counter; a missing file is a zero counter.
func LoadCounter(dir string) (Counter, error) {
	var c Counter
	b, err := os.ReadFile(filepath.Join(dir, CounterFile))
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("boot counter: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("boot counter %s: %w", filepath.Join(dir, CounterFile), err)
	}
	return c, nil
}

func (c Counter) save(dir string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("boot counter: %w", err)
	}
	return WriteFile(filepath.Join(dir, CounterFile), append(b, '\n'))
}

// Settle is the guard's verdict on img: the counter starts again from zero
// and the waiting step (4) ends.
func Settle(dir string, img Image, verdict string) error {
	c, err := LoadCounter(dir)
	if err != nil {
		c = Counter{} // a damaged counter is replaced: the guard ran
	}
	c.Image, c.Boots, c.Verdict = img, 0, verdict
	return c.save(dir)
}

// TakeRollback returns the counter's switch back, if one is not reported
// yet, and forgets it.
func TakeRollback(dir string) (*Rollback, error) {
	c, err := LoadCounter(dir)
	if err != nil || c.RolledBack == nil {
		return nil, err
	}
	rb := c.RolledBack
	c.RolledBack = nil
	return rb, c.save(dir)
}

// guardRecord is what the counter reads of the guard's record.
type guardRecord struct {
	Good     *Image  `json:"good"`
	Rejected []Image `json:"rejected"`
}

func loadGuardRecord(dir string) (guardRecord, error) {
	var r guardRecord
	b, err := os.ReadFile(filepath.Join(dir, RecordFile))
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil {
		return r, fmt.Errorf("guard record: %w", err)
	}
	return r, nil
}

// API is what the counter asks of gokrazy (gokrazy.LocalAPI on the box).
type API interface {
	Switch(ctx context.Context) error
	Reboot(ctx context.Context) error
}

// Config sets up Run. Zero values take the defaults.
type Config struct {
	Dir string
	API API
	// Image identifies the running image (default RunningImage).
	Image func() (Image, error)
	// Boots is how many boots a new image gets for the guard to judge it
	// (default 1: the second boot without a verdict switches back).
	Boots int
	// Wait is how long a boot of a new image waits for the guard's verdict
	// before rebooting (default 6 minutes: the guard's own deadlines are 2
	// and 3 minutes after boot).
	Wait time.Duration
	// Poll is how often the verdict is looked for (default 5 s).
	Poll time.Duration
	Now  func() time.Time
	Log  *log.Logger
}

// Outcome is what Run did.
type Outcome string

const (
	Nothing      Outcome = "nothing to count" // the good image, a fresh box, or a rejected image that runs again
	Settled      Outcome = "settled"          // the guard gave its verdict in time
	Rebooted     Outcome = "rebooted"         // no verdict in time: rebooting to count again
	SwitchedBack Outcome = "switched back"    // too many boots without a verdict
	Stuck        Outcome = "stuck"            // switched back already, yet this image runs: left alone
)

// Run is the boot counter's step for this boot (see the package comment).
func Run(ctx context.Context, cfg Config) (Outcome, error) {
	if cfg.Image == nil {
		cfg.Image = RunningImage
	}
	if cfg.Boots == 0 {
		cfg.Boots = 1
	}
	if cfg.Wait == 0 {
		cfg.Wait = 6 * time.Minute
	}
	if cfg.Poll == 0 {
		cfg.Poll = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = log.New(os.Stderr, "", 0)
	}
	img, err := cfg.Image()
	if err != nil {
		return Nothing, err
	}
	if decided, err := judged(cfg.Dir, img); err != nil || decided {
		return Nothing, err
	}
	c, err := LoadCounter(cfg.Dir)
	if err != nil {
		return Nothing, err
	}
	if c.Image != img {
		c = Counter{Image: img, RolledBack: c.RolledBack}
	}
	c.Boots++
	if err := c.save(cfg.Dir); err != nil {
		return Nothing, err
	}
	cfg.Log.Printf("image %s: boot %d without a verdict of the guard (switching back after %d)", img.Short(), c.Boots, cfg.Boots)
	switch {
	case c.Boots == cfg.Boots+1:
		return switchBack(ctx, cfg, c)
	case c.Boots > cfg.Boots+1:
		return Stuck, nil
	}
	return waitForVerdict(ctx, cfg, img)
}

// judged reports whether img needs no counting: no image is marked good
// yet (the guard marks the first one good), img is the good one, or the
// guard switched away from it already.
func judged(dir string, img Image) (bool, error) {
	r, err := loadGuardRecord(dir)
	if err != nil {
		return false, err
	}
	return r.Good == nil || *r.Good == img || slices.Contains(r.Rejected, img), nil
}

func switchBack(ctx context.Context, cfg Config, c Counter) (Outcome, error) {
	reason := fmt.Sprintf("the update guard gave no verdict in %d boot(s) of this image: it could not run", cfg.Boots)
	cfg.Log.Printf("image %s: %s; switching back to the previous image", c.Image.Short(), reason)
	if err := cfg.API.Switch(ctx); err != nil {
		return Stuck, fmt.Errorf("switch back: %w", err)
	}
	c.RolledBack = &Rollback{Image: c.Image, At: cfg.Now(), Reason: reason}
	if err := c.save(cfg.Dir); err != nil {
		cfg.Log.Printf("%v (switched back all the same)", err)
	}
	if err := cfg.API.Reboot(ctx); err != nil {
		return SwitchedBack, fmt.Errorf("switched back, but the reboot failed: %w", err)
	}
	return SwitchedBack, nil
}

func waitForVerdict(ctx context.Context, cfg Config, img Image) (Outcome, error) {
	deadline := time.NewTimer(cfg.Wait)
	defer deadline.Stop()
	tick := time.NewTicker(cfg.Poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return Nothing, ctx.Err() // shut down (a reboot): the next boot counts
		case <-tick.C:
			if settled(cfg.Dir, img) {
				return Settled, nil
			}
		case <-deadline.C:
			if settled(cfg.Dir, img) {
				return Settled, nil
			}
			cfg.Log.Printf("image %s: no verdict of the update guard in %v: rebooting, to count again", img.Short(), cfg.Wait)
			if err := cfg.API.Reboot(ctx); err != nil {
				return Rebooted, fmt.Errorf("reboot: %w", err)
			}
			return Rebooted, nil
		}
	}
}

// settled reports whether the guard gave a verdict on img.
func settled(dir string, img Image) bool {
	if c, err := LoadCounter(dir); err == nil && c.Image == img && c.Verdict != "" {
		return true
	}
	decided, err := judged(dir, img)
	return err == nil && decided
}
