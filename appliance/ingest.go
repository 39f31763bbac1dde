package appliance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/appliance/header"
	"github.com/relais/relais/appliance/part10"
	"github.com/relais/relais/store"
)

// The C-STORE path: each data set streams into a store writer fragment by
// fragment, behind a Part 10 meta header made from the command; the first
// bytes are kept (bounded) to read the header when the last fragment is in.
// Success is answered only after the store's synced commit.

type ingestSink struct {
	a      *Appliance
	assoc  *dimse.Association
	req    dimse.StoreRequest
	w      *store.Writer
	prefix []byte
	size   int64
	err    error // first failure; the rest of the data set is discarded
}

// ingest is the dimse Store handler.
func (a *Appliance) ingest(_ context.Context, assoc *dimse.Association, req *dimse.StoreRequest) dimse.StoreSink {
	s := &ingestSink{a: a, assoc: assoc, req: *req, prefix: a.getPrefix()}
	a.sessionFor(assoc) // the session's clock starts with its first command
	w, err := a.store.NewWriter()
	if err != nil {
		s.err = err
		return s
	}
	s.w = w
	// The meta header depends on the data set alone (no sender, no
	// version), so the same instance sent twice, by anyone, is the same
	// bytes: a duplicate, not a conflict. The sender is in the index.
	meta := part10.AppendHeader(nil, part10.Meta{
		MediaStorageSOPClassUID:    req.SOPClassUID,
		MediaStorageSOPInstanceUID: req.SOPInstanceUID,
		TransferSyntaxUID:          req.TransferSyntaxUID,
		ImplementationClassUID:     dimse.ImplementationClassUID,
	})
	if _, err := w.Write(meta); err != nil {
		s.err = err
	}
	return s
}

// getPrefix returns an empty buffer for a data set's first bytes. They are
// pooled: growing one per instance cost about a tenth of the receiving CPU
// for 0.5 MB CT slices (growslice and clearing, the whole slice each time).
func (a *Appliance) getPrefix() []byte {
	if b, ok := a.prefixes.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, header.MaxPrefix)
}

// release returns the prefix buffer; the sink reads it no more.
func (s *ingestSink) release() {
	if cap(s.prefix) == header.MaxPrefix {
		b := s.prefix[:0]
		s.a.prefixes.Put(&b)
	}
	s.prefix = nil
}

func (s *ingestSink) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	s.size += int64(len(p))
	if room := header.MaxPrefix - len(s.prefix); room > 0 {
		s.prefix = append(s.prefix, p[:min(room, len(p))]...)
	}
	if _, err := s.w.Write(p); err != nil {
		s.err = err
		return 0, err
	}
	return len(p), nil
}

func (s *ingestSink) Abort(err error) {
	defer s.release()
	if s.w != nil {
		s.w.Abort()
	}
	cfg := s.a.Config()
	s.a.metrics.refusal(&cfg, s.assoc.CallingAE(), 0)
	s.a.event(store.KindStore, store.Warning, fmt.Sprintf("instance from %s discarded: the association ended inside it (%v)", s.assoc.CallingAE(), err),
		s.attrs())
}

func (s *ingestSink) attrs() map[string]string {
	return map[string]string{"calling_ae": s.assoc.CallingAE(), "address": addrOf(s.assoc.RemoteAddr()).String(), "sop_instance_uid": s.req.SOPInstanceUID}
}

// fail discards the instance, records why and returns the status.
func (s *ingestSink) fail(status dimse.Status, sev store.Severity, why string) dimse.Status {
	s.a.event(store.KindStore, sev, fmt.Sprintf("instance %s from %s refused (%v): %s", s.req.SOPInstanceUID, s.assoc.CallingAE(), status, why), s.attrs())
	return s.refuse(status)
}

// storeFailed refuses an instance the store could not take: for space, or
// because the disk failed to save it.
func (s *ingestSink) storeFailed(err error) dimse.Status {
	if errors.Is(err, store.ErrFull) {
		return s.full()
	}
	s.a.saveFailed(err)
	return s.fail(dimse.StatusProcessingFailure, store.Error, "the disk failed to save it: "+err.Error())
}

// full refuses the instance for space: Out of Resources, counted in the
// refusal the disk alarm shows (one event for all of it), and a purge.
func (s *ingestSink) full() dimse.Status {
	s.a.purgeSoon()
	s.a.refusedForSpace()
	return s.refuse(dimse.StatusOutOfResources)
}

// refuse discards the instance and counts the refusal.
func (s *ingestSink) refuse(status dimse.Status) dimse.Status {
	if s.w != nil {
		s.w.Abort()
	}
	s.a.sessionRefused(s.assoc)
	cfg := s.a.Config()
	s.a.metrics.refusal(&cfg, s.assoc.CallingAE(), status)
	return status
}

func (s *ingestSink) Close() dimse.Status {
	defer s.release()
	if s.err != nil {
		return s.storeFailed(s.err)
	}
	if s.size == 0 {
		return s.fail(dimse.StatusCannotUnderstand, store.Warning, "empty data set")
	}
	s.w.Seal() // the file syncs while the header is read
	h, err := header.Parse(s.req.TransferSyntaxUID, s.prefix)
	if err != nil {
		return s.fail(dimse.StatusCannotUnderstand, store.Warning, "the data set cannot be read: "+err.Error())
	}
	if h.SOPInstanceUID != s.req.SOPInstanceUID {
		return s.fail(dimse.StatusDataSetDoesNotMatchClass, store.Warning,
			fmt.Sprintf("its SOP Instance UID %q differs from the command's %q", h.SOPInstanceUID, s.req.SOPInstanceUID))
	}
	if h.SOPClassUID != "" && h.SOPClassUID != s.req.SOPClassUID {
		return s.fail(dimse.StatusDataSetDoesNotMatchClass, store.Warning,
			fmt.Sprintf("its SOP Class UID %q differs from the command's %q", h.SOPClassUID, s.req.SOPClassUID))
	}
	if h.StudyInstanceUID == "" || h.SeriesInstanceUID == "" {
		return s.fail(dimse.StatusCannotUnderstand, store.Warning, "it has no Study or Series Instance UID")
	}
	cfg := s.a.Config()
	callingAE := s.assoc.CallingAE()
	meta := store.Instance{
		SOPInstanceUID:    s.req.SOPInstanceUID,
		SOPClassUID:       s.req.SOPClassUID,
		TransferSyntaxUID: s.req.TransferSyntaxUID,
		StudyInstanceUID:  h.StudyInstanceUID,
		SeriesInstanceUID: h.SeriesInstanceUID,
		PatientID:         h.PatientID,
		PatientName:       h.PatientName,
		StudyDate:         h.StudyDate,
		StudyDescription:  h.StudyDescription,
		AccessionNumber:   h.AccessionNumber,
		Modality:          h.Modality,
		SeriesNumber:      h.SeriesNumber,
		InstanceNumber:    h.InstanceNumber,
		CallingAE:         callingAE,
		RemoteAddr:        s.assoc.RemoteAddr().String(),
		Urgent:            urgent(&cfg, callingAE, h),
	}
	var dests []string
	for _, d := range cfg.Destinations {
		if d.Takes(callingAE, h.Modality) {
			dests = append(dests, d.Name)
		}
	}
	res, err := s.w.Commit(context.Background(), meta, dests)
	if err != nil {
		return s.storeFailed(err)
	}
	s.a.saved()
	s.a.diskSeen(res.Space) // the commit looked at the disk: no statfs of our own
	s.a.sessionStored(s.assoc, meta.StudyInstanceUID, meta.PatientName, s.size)
	s.a.recv.instances.Add(1)
	s.a.recv.bytes.Add(s.size)
	s.a.recv.lastAE.Store(callingAE)
	s.a.recv.lastAt.Store(time.Now().UnixNano())
	if _, ok := cfg.DestinationByAE(callingAE); ok && res.Outcome == store.Stored {
		s.a.recv.results.add(time.Now())
	}
	s.a.metrics.stored(&cfg, callingAE, s.size)
	switch res.Outcome {
	case store.Conflict:
		s.a.event(store.KindStore, store.Warning, fmt.Sprintf("instance %s from %s was already held with other bytes: kept both, flagged for review", s.req.SOPInstanceUID, callingAE), s.attrs())
	case store.Repaired:
		s.a.event(store.KindStore, store.Info, fmt.Sprintf("instance %s from %s: its damaged stored copy was replaced by the good copy just received, which goes out where the damaged one had not arrived", s.req.SOPInstanceUID, callingAE), s.attrs())
		fallthrough
	case store.Stored:
		// (The store makes the whole study urgent when one instance is.)
		for _, d := range dests {
			s.a.wake(d)
		}
	}
	return dimse.StatusSuccess
}

// urgent applies the urgency rules to one instance.
func urgent(c *config.Config, callingAE string, h *header.Header) bool {
	for _, r := range c.Urgent {
		if r.CallingAETitle != "" && r.CallingAETitle != callingAE {
			continue
		}
		if r.Modality != "" && !strings.EqualFold(r.Modality, h.Modality) {
			continue
		}
		if r.Element != "" {
			v, ok := h.Value(r.Element)
			if !ok || !strings.EqualFold(v, r.Value) {
				continue
			}
		}
		return true
	}
	return false
}
