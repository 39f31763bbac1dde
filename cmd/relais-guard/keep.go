package main

import (
	"context"
	"sync"
	"time"

	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/guard"
)

// keep runs after the verdict (or on the good image) until ctx ends: it
// delivers the last verdict to relaisd, and on a good image notes which
// destinations answer (the baseline the next update is judged against),
// every baselineEvery, in a goroutine of its own.
func keep(ctx context.Context, o options, g *guard.Guard, t *teller, ctl *control.Client) {
	var wg sync.WaitGroup
	defer wg.Wait()
	baselining := make(chan struct{}, 1)
	var lastBaseline time.Time
	tick := time.NewTicker(o.every)
	defer tick.Stop()
	for {
		if v := g.Last(); v != nil {
			logged, err := t.deliver(ctx, *v)
			switch {
			case err != nil:
				t.log.Debug("verdict not delivered yet", "err", err)
			case logged:
				if err := g.Reported(); err != nil {
					t.log.Warn("verdict delivered, not recorded as such", "err", err)
				}
			}
		}
		if time.Since(lastBaseline) >= o.baselineEvery || lastBaseline.IsZero() {
			select {
			case baselining <- struct{}{}:
				lastBaseline = time.Now()
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-baselining }()
					g.Baseline(ctx, baselineChecks(ctx, ctl))
				}()
			default: // the last one still runs
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
