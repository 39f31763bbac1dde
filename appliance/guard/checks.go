package guard

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"
)

// Check is one health check relaisd plugs in: the store, the SCP on
// loopback, the tunnel, the reading center.
type Check struct {
	Name string
	// Run returns nil when healthy. It is called again after a failure
	// (every Config.Retry) until it passes or the deadline ends, so it need
	// not wait for things that come up with the box (the tunnel's first
	// handshake); ctx carries the deadline.
	Run func(ctx context.Context) error
	// IfHealthyBefore makes the check required after an update only if it
	// passed on the previous image at the guard's last look (the reading
	// center may have been unreachable for reasons no image can fix).
	IfHealthyBefore bool
}

// results maps a check's name to its last error (nil: passed).
type results map[string]error

// failed lists the failures among the named checks, "name: error; …".
func (r results) failed(names []string) string {
	var b strings.Builder
	for _, n := range names {
		if err, ok := r[n]; !ok || err != nil {
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			if !ok {
				err = errors.New("no answer before the deadline")
			}
			fmt.Fprintf(&b, "%s: %v", n, err)
		}
	}
	return b.String()
}

// runChecks runs checks until each has passed once or ctx ends, waiting retry
// between rounds. The checks of a round run at once, so that one that hangs
// (a C-ECHO to nobody) delays no other; a check that passed is not run
// again. After each check it hands a copy of the results so far to each of
// progress.
func runChecks(ctx context.Context, checks []Check, retry time.Duration, progress ...func(results)) results {
	res := results{}
	var mu sync.Mutex // guards res
	for {
		var wg sync.WaitGroup
		pending := 0
		for _, c := range checks {
			mu.Lock()
			err, done := res[c.Name]
			mu.Unlock()
			if done && err == nil {
				continue
			}
			pending++
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := runOne(ctx, c)
				mu.Lock()
				defer mu.Unlock()
				if ctx.Err() != nil && err != nil {
					if _, ran := res[c.Name]; ran {
						return // keep the last real failure
					}
				}
				res[c.Name] = err
				for _, f := range progress {
					f(maps.Clone(res))
				}
			}()
		}
		wg.Wait()
		if pending == 0 || ctx.Err() != nil {
			return res
		}
		if res.failed(names(checks)) == "" {
			return res
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return res
		case <-t.C:
		}
	}
}

// runOne runs c, turning a panic into a failure: a broken check must fail
// the image, not crash relaisd into a restart loop.
func runOne(ctx context.Context, c Check) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return c.Run(ctx)
}
