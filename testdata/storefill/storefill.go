// Package storefill makes the many small instances that fill a store for
// the measurements of what a large store costs (the store's scale tests and
// the bench's scale scenario): n instances, perStudy to a study, the last
// held ones received with no destination, put by several writers at once.
//
// It knows nothing of the store (whose own tests use it): the caller puts
// each instance with the store's API.
package storefill

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// Spec says what to make.
type Spec struct {
	N        int // instances
	PerStudy int // instances in each study, one series each
	Held     int // the last ones, received with no destination
	Writers  int // putting at once; 0 means 16
}

// Instance is one instance to put.
type Instance struct {
	Index          int
	Study, Series  string // Study and Series Instance UIDs
	SOPInstanceUID string
	InstanceNumber int  // within its series, from 0
	Queued         bool // false for the last Held: no destination takes it
	Data           []byte
}

// Fill calls put for each instance of spec, from Writers goroutines, and
// returns the first error (the others stop at their next instance).
func Fill(ctx context.Context, spec Spec, put func(Instance) error) error {
	if spec.PerStudy <= 0 {
		return fmt.Errorf("fill %d instances: %d per study", spec.N, spec.PerStudy)
	}
	writers := spec.Writers
	if writers <= 0 {
		writers = 16
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= spec.N {
					return
				}
				if err := put(Make(spec, i)); err != nil {
					cancel(fmt.Errorf("put instance %d: %w", i, err))
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// Make returns instance i of spec.
func Make(spec Spec, i int) Instance {
	study := fmt.Sprintf("1.2.826.0.1.%d", i/spec.PerStudy)
	return Instance{
		Index:          i,
		Study:          study,
		Series:         study + ".1",
		SOPInstanceUID: fmt.Sprintf("%s.1.%d", study, i),
		InstanceNumber: i % spec.PerStudy,
		Queued:         i < spec.N-spec.Held,
		Data:           fmt.Appendf(nil, "instance %d %0400d", i, i),
	}
}
