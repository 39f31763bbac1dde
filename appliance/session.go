package appliance

import (
	"fmt"
	"sort"
	"time"

	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/appliance/forward"
	"github.com/relais/relais/store"
)

// A session sums up what one association delivered, so the event log says
// "received 300 instances of study X from CT1" once, not 300 times.
type session struct {
	callingAE string
	address   string
	start     time.Time
	studies   map[string]*sessionStudy
	refused   int
}

type sessionStudy struct {
	patient   string
	instances int
	bytes     int64
}

// sessionFor returns the association's session, starting it (and the
// goroutine that reports it when the association ends) on first use.
func (a *Appliance) sessionFor(assoc *dimse.Association) *session {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, ok := a.sessions[assoc]; ok {
		return s
	}
	s := &session{callingAE: assoc.CallingAE(), address: addrOf(assoc.RemoteAddr()).String(), start: time.Now(), studies: map[string]*sessionStudy{}}
	a.sessions[assoc] = s
	go func() {
		<-assoc.Done()
		a.mu.Lock()
		delete(a.sessions, assoc)
		a.mu.Unlock()
		a.reportSession(s)
	}()
	return s
}

// stored and refused are called by ingest sinks (one association runs one
// C-STORE at a time, but the status page reads concurrently: hence a.mu).
func (a *Appliance) sessionStored(assoc *dimse.Association, study, patient string, size int64) {
	s := a.sessionFor(assoc)
	a.mu.Lock()
	defer a.mu.Unlock()
	st := s.studies[study]
	if st == nil {
		st = &sessionStudy{patient: patient}
		s.studies[study] = st
	}
	st.instances++
	st.bytes += size
}

func (a *Appliance) sessionRefused(assoc *dimse.Association) {
	s := a.sessionFor(assoc)
	a.mu.Lock()
	s.refused++
	a.mu.Unlock()
}

func (a *Appliance) reportSession(s *session) {
	a.mu.Lock()
	var uids []string
	for uid := range s.studies {
		uids = append(uids, uid)
	}
	a.mu.Unlock()
	sort.Strings(uids)
	secs := time.Since(s.start).Seconds()
	// What a destination sends us is a result of the reading center (a
	// report, key images): the study's timeline says so.
	what := "received"
	cfg := a.Config()
	if d, ok := cfg.DestinationByAE(s.callingAE); ok {
		what = "result from " + d.Name + ":"
	}
	for _, uid := range uids {
		st := s.studies[uid]
		a.event(store.KindStore, store.Info, fmt.Sprintf("%s %d instance(s), %.1f MB, of study %s (%s) from %s in %.1f s",
			what, st.instances, float64(st.bytes)/1e6, uid, forward.PatientToken, s.callingAE, secs),
			map[string]string{"study": uid, "calling_ae": s.callingAE, "address": s.address, forward.PatientAttr: st.patient})
	}
	if s.refused > 0 {
		a.event(store.KindStore, store.Warning, fmt.Sprintf("%d instance(s) from %s were refused on this association (see the events before)", s.refused, s.callingAE),
			map[string]string{"calling_ae": s.callingAE, "address": s.address})
	}
}
