package appliance

import (
	"slices"
	"sync"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
)

// studiesCache keeps the last list Studies built. The console asks for the
// same list every second; building it reads a few keys per study listed
// (its record and its tallies, store.StudyProgress), which is cheap but not
// free while an ingest changes the store every second. The list is served again while the store has not
// changed since it was built (store.Generation), the configuration is the
// same snapshot, and no study in it has left the receiving state (which
// ends with time, not with a change).
type studiesCache struct {
	mu      sync.Mutex
	gen     int64
	cfg     *config.Config
	limit   int
	until   time.Time // zero: no study in it is receiving
	studies []control.Study
}

// get returns the cached list if it was built under the same generation,
// configuration and limit, and nothing in it turned stale with time.
func (c *studiesCache) get(gen int64, cfg *config.Config, limit int, now time.Time) ([]control.Study, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.studies == nil || c.gen != gen || c.cfg != cfg || c.limit != limit || !c.until.IsZero() && !now.Before(c.until) {
		return nil, false
	}
	return slices.Clone(c.studies), true
}

// put keeps a list built from reads made after gen and cfg were taken.
func (c *studiesCache) put(gen int64, cfg *config.Config, limit int, studies []control.Study) {
	var until time.Time
	for _, s := range studies {
		if s.State != control.StudyReceiving {
			continue
		}
		if end := s.LastReceived.Add(receivingQuiet); until.IsZero() || end.Before(until) {
			until = end
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen, c.cfg, c.limit, c.until, c.studies = gen, cfg, limit, until, slices.Clone(studies)
}
