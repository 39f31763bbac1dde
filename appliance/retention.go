package appliance

import (
	"context"
	"fmt"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/store"
)

// Retention: studies done everywhere (committed, or delivered where the
// destination does not commit) are purged by age and by disk use; the
// store never purges what is not delivered.

const retentionEvery = 10 * time.Minute

func purgePolicy(c *config.Config) store.Policy {
	r := c.Retention
	return store.Policy{
		MaxAge:        time.Duration(r.MaxAgeDays) * 24 * time.Hour,
		HighWatermark: float64(r.HighWatermarkPercent) / 100,
		LowWatermark:  float64(r.LowWatermarkPercent) / 100,
	}
}

// purgeSoon asks the retention loop to run now (the disk is full).
func (a *Appliance) purgeSoon() {
	select {
	case a.purgeCh <- struct{}{}:
	default:
	}
}

func (a *Appliance) retentionLoop(ctx context.Context) {
	t := time.NewTicker(retentionEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.purgeCh:
		}
		cfg := a.Config()
		a.Purge(ctx, purgePolicy(&cfg))
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
