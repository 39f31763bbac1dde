package appliance

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/store"
)

// Retention: studies done everywhere (committed, or delivered where the
// destination does not commit) are purged by age and by disk use; the
// store never purges what is not delivered. The watermarks are fitted to
// the disk by the store's model (store.Space): purging starts before any
// store is refused, and a store about to be refused for space waits for a
// purge first (makeRoom).

const (
	// retentionEvery is how often the whole policy runs (the age limit).
	retentionEvery = 10 * time.Minute
	// diskCheckEvery is how often the disk is looked at (checkDisk) when
	// no store arrives to do it.
	diskCheckEvery = 10 * time.Second
	// fruitlessPause: after a purge that found nothing to remove, a refused
	// store does not purge again before this, unless something was
	// delivered since. On a disk full of undelivered studies each refused
	// C-STORE would otherwise read every study.
	fruitlessPause = time.Minute
)

func purgePolicy(c *config.Config) store.Policy {
	r := c.Retention
	return store.Policy{
		MaxAge:        time.Duration(r.MaxAgeDays) * 24 * time.Hour,
		HighWatermark: float64(r.HighWatermarkPercent) / 100,
		LowWatermark:  float64(r.LowWatermarkPercent) / 100,
	}
}

// purgeSoon asks the retention loop to make room now (the disk is full).
func (a *Appliance) purgeSoon() {
	select {
	case a.purgeCh <- struct{}{}:
	default:
	}
}

func (a *Appliance) retentionLoop(ctx context.Context) {
	all := time.NewTicker(retentionEvery)
	defer all.Stop()
	disk := time.NewTicker(diskCheckEvery)
	defer disk.Stop()
	var clampNote string
	look := func() {
		cfg := a.Config()
		if sp, err := a.store.Space(); err == nil {
			// The watermarks too high for this disk are said once, when
			// they start to be (and again after a change).
			if note := watermarkNote(&cfg, sp); note != clampNote {
				if note != "" {
					a.event(store.KindConfig, store.Warning, note, nil)
				}
				clampNote = note
			}
		}
		a.checkDisk()
	}
	look()
	for {
		select {
		case <-ctx.Done():
			return
		case <-all.C:
			cfg := a.Config()
			a.Purge(ctx, purgePolicy(&cfg))
		case <-disk.C:
			look()
		case <-a.purgeCh: // checkDisk or a refused store asks
			a.makeRoom()
		}
	}
}

// Purge runs retention with p and records what it removed.
func (a *Appliance) Purge(ctx context.Context, p store.Policy) (store.PurgeResult, error) {
	res, err := a.store.Purge(ctx, p)
	if err != nil && ctx.Err() != nil {
		return res, err // cut by shutdown or the caller: no failure to record
	}
	if err != nil {
		a.event(store.KindPurge, store.Error, fmt.Sprintf("purge failed: %v", err), nil)
		return res, err
	}
	if res.Studies > 0 {
		a.event(store.KindPurge, store.Info, fmt.Sprintf("purged %d delivered stud(ies), %d instance(s), %.1f MB", res.Studies, res.Instances, float64(res.Bytes)/1e6), nil)
	}
	return res, nil
}

// roomMaker runs the purges that refused stores ask for, one at a time.
type roomMaker struct {
	runs atomic.Uint64 // purges finished
	mu   sync.Mutex    // held while one runs; guards the fields below
	// fruitless: the last purge removed nothing, at that time, with that
	// many deliveries and commitments counted.
	fruitless  bool
	at         time.Time
	deliveries int64
}

// makeRoom is the store's MakeRoom: a purge under the configuration's
// policy, on the refused writer's goroutine, so that the write is checked
// again once it is done. Writers refused together share one purge.
func (a *Appliance) makeRoom() {
	r := &a.room
	runs := r.runs.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.runs.Load() != runs {
		return // a purge ran while this writer waited: the write is checked again
	}
	done := a.deliveries()
	if r.fruitless && done == r.deliveries && time.Since(r.at) < fruitlessPause {
		return
	}
	ctx := a.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	cfg := a.Config()
	res, err := a.Purge(ctx, purgePolicy(&cfg))
	r.fruitless, r.at, r.deliveries = err == nil && res.Studies == 0, time.Now(), done
	r.runs.Add(1)
}

// deliveries counts the instances delivered and committed since relaisd
// started: when it has not moved, a purge has nothing new to remove.
func (a *Appliance) deliveries() int64 {
	a.fwdMu.Lock()
	defer a.fwdMu.Unlock()
	var n int64
	for _, c := range a.fwdCounters {
		n += c.Delivered.Load() + c.Committed.Load()
	}
	return n
}

// watermarkNote says, with the action, that the configured watermarks are
// too high for this disk and which ones apply; "" when they fit.
func watermarkNote(cfg *config.Config, sp store.Space) string {
	p, clamped := sp.Clamp(purgePolicy(cfg))
	if !clamped {
		return ""
	}
	r := cfg.Retention
	if p.HighWatermark == 0 {
		return fmt.Sprintf("retention watermarks %d/%d %% do not fit this %s disk: the store alone needs %s free; delivered studies are purged whenever less is free, and a larger disk is needed",
			r.HighWatermarkPercent, r.LowWatermarkPercent, mb(sp.Total), mb(sp.Purge))
	}
	return fmt.Sprintf("retention watermarks %d/%d %% are too high for this %s disk: %.0f/%.0f %% apply, so that purging starts while %s are free, before new studies are refused below %s; set retention.high_watermark_percent to %.0f or less",
		r.HighWatermarkPercent, r.LowWatermarkPercent, mb(sp.Total), 100*p.HighWatermark, 100*p.LowWatermark, mb(sp.Purge), mb(sp.Refuse), 100*p.HighWatermark)
}

// mb is a byte count in plain words.
func mb(n uint64) string {
	if n >= 10e9 {
		return fmt.Sprintf("%.0f GB", float64(n)/1e9)
	}
	return fmt.Sprintf("%.0f MB", float64(n)/1e6)
}
