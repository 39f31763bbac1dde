package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Instance is one stored instance: the header fields the receiver passes to
// Commit, and the fields the store fills in.
type Instance struct {
	SOPInstanceUID    string
	SOPClassUID       string
	TransferSyntaxUID string
	StudyInstanceUID  string
	SeriesInstanceUID string
	PatientID         string
	PatientName       string
	StudyDate         string
	StudyDescription  string
	AccessionNumber   string
	Modality          string
	SeriesNumber      int // orders series within a study
	InstanceNumber    int // orders instances within a series
	CallingAE         string
	RemoteAddr        string
	ReceivedAt        time.Time // zero: the time of Commit
	Urgent            bool      // forward this study before the others

	// Set by the store.
	ID           uint64   // unique per stored copy
	Size         int64    // bytes, Part 10 header included
	SHA256       string   // hex, of the bytes as received
	Inline       bool     // the bytes are in the database, not in a file (small instances)
	Conflict     bool     // a copy whose UID was already held with other bytes
	Destinations []string // where it is queued
}

func (r *Instance) validate() error {
	switch {
	case r.SOPInstanceUID == "":
		return errors.New("missing SOP Instance UID")
	case r.StudyInstanceUID == "":
		return errors.New("missing Study Instance UID")
	case r.SeriesInstanceUID == "":
		return errors.New("missing Series Instance UID")
	}
	return nil
}

// Patient is a patient with stored studies.
type Patient struct {
	PatientID    string
	PatientName  string
	Studies      int
	LastReceived time.Time
}

// Study sums up a stored study.
type Study struct {
	StudyInstanceUID string
	PatientID        string
	PatientName      string
	StudyDate        string
	StudyDescription string
	AccessionNumber  string
	Modalities       []string
	Urgent           bool
	FirstReceived    time.Time
	LastReceived     time.Time
	Instances        int   // accepted copies
	Bytes            int64 // of accepted copies
	Conflicts        int   // flagged copies, kept beside the accepted ones
}

// Series sums up a stored series.
type Series struct {
	StudyInstanceUID  string
	SeriesInstanceUID string
	SeriesNumber      int
	Modality          string
	Instances         int
	Bytes             int64
}

// commitTxn adds rec to the index and the queue, with its bytes if they are
// inline (else its file is already durable), or finds that it is a
// duplicate or a conflict. A duplicate's file is doomed. Unless checked,
// rec holding the same bytes as the accepted copy changes nothing and
// returns that copy as an unchecked duplicate: its caller reads the copy
// first (see checkHeld).
func (s *Store) commitTxn(txn *badger.Txn, rec *Instance, inline []byte, checked bool) (Result, error) {
	res, err := s.commitRecord(txn, rec, checked)
	switch {
	case err != nil:
		return Result{}, err
	case res.unchecked:
		return res, nil
	case res.Outcome == Duplicate && !rec.Inline:
		err = txn.Set(doomedKey(rec.ID), nil)
	case res.Outcome != Duplicate && rec.Inline:
		err = txn.Set(inlineKey(rec.ID), inline)
	}
	return res, err
}

func (s *Store) commitRecord(txn *badger.Txn, rec *Instance, checked bool) (Result, error) {
	var held Instance
	found, err := getJSON(txn, instanceKey(rec.SOPInstanceUID), &held)
	if err != nil {
		return Result{}, err
	}
	if found {
		return s.commitCopy(txn, rec, &held, checked)
	}
	return Result{Outcome: Stored, Instance: *rec}, s.accept(txn, rec)
}

// accept makes rec the accepted copy of its UID: its record, its study
// sums and index row, and a pending queue entry per destination (or a held
// row when it has none).
func (s *Store) accept(txn *badger.Txn, rec *Instance) error {
	if err := setJSON(txn, instanceKey(rec.SOPInstanceUID), rec); err != nil {
		return err
	}
	if err := txn.Set(copyKey(rec.ID), instanceKey(rec.SOPInstanceUID)); err != nil {
		return err
	}
	st, err := s.addToStudy(txn, rec)
	if err != nil {
		return err
	}
	if err := txn.Set(studyInstanceKey(rec), instanceKey(rec.SOPInstanceUID)); err != nil {
		return err
	}
	if len(rec.Destinations) == 0 { // held: QueueHeld finds it by this row
		return txn.Set(heldKey(rec.SOPInstanceUID), nil)
	}
	for _, dest := range rec.Destinations {
		s.noteQueued(dest)
		if err := s.putEntry(txn, nil, newEntry(dest, rec, st)); err != nil {
			return err
		}
	}
	return nil
}

// commitCopy handles a UID already held: the same bytes again are a
// duplicate (or, when the held copy is damaged, its repair), other bytes a
// conflict kept under their own key.
func (s *Store) commitCopy(txn *badger.Txn, rec, held *Instance, checked bool) (Result, error) {
	if held.SHA256 == rec.SHA256 && held.Size == rec.Size {
		damaged, err := isDamaged(txn, held.ID)
		if err != nil || !damaged {
			return Result{Outcome: Duplicate, Instance: *held, unchecked: !checked}, err
		}
		return s.repair(txn, rec, held)
	}
	var dup *Instance
	// A commit is not cancelled half-way; this reads one UID's copies only.
	err := scanJSON(context.Background(), txn, conflictPrefix(rec.SOPInstanceUID), func(_ []byte, c *Instance) (bool, error) {
		if c.SHA256 == rec.SHA256 && c.Size == rec.Size {
			dup = c
			return false, nil
		}
		return true, nil
	})
	if err != nil || dup != nil {
		return Result{Outcome: Duplicate, Instance: deref(dup)}, err
	}
	rec.Conflict = true
	rec.Destinations = nil // a person decides which copy is right
	ck := conflictKey(rec.SOPInstanceUID, rec.ID)
	if err := setJSON(txn, ck, rec); err != nil {
		return Result{}, err
	}
	if err := txn.Set(copyKey(rec.ID), ck); err != nil {
		return Result{}, err
	}
	if _, err := s.addToStudy(txn, rec); err != nil {
		return Result{}, err
	}
	if err := txn.Set(studyInstanceKey(rec), ck); err != nil {
		return Result{}, err
	}
	return Result{Outcome: Conflict, Instance: *rec}, nil
}

func deref(r *Instance) Instance {
	if r == nil {
		return Instance{}
	}
	return *r
}

// addToStudy creates or updates the patient, study and series rows for rec.
func (s *Store) addToStudy(txn *badger.Txn, rec *Instance) (*Study, error) {
	var st Study
	found, err := getJSON(txn, studyKey(rec.StudyInstanceUID), &st)
	if err != nil {
		return nil, err
	}
	if !found {
		st = Study{
			StudyInstanceUID: rec.StudyInstanceUID,
			PatientID:        rec.PatientID,
			PatientName:      rec.PatientName,
			StudyDate:        rec.StudyDate,
			StudyDescription: rec.StudyDescription,
			AccessionNumber:  rec.AccessionNumber,
			FirstReceived:    rec.ReceivedAt,
			LastReceived:     rec.ReceivedAt,
		}
		if err := s.addPatientStudy(txn, rec); err != nil {
			return nil, err
		}
		if err := bumpTotal(txn, totalStudies, 1, 0); err != nil {
			return nil, err
		}
	} else if err := txn.Delete(studyAgeKey(st.LastReceived.UnixNano(), st.StudyInstanceUID)); err != nil {
		return nil, err
	}
	if rec.ReceivedAt.After(st.LastReceived) {
		st.LastReceived = rec.ReceivedAt
	}
	if rec.Modality != "" && !slices.Contains(st.Modalities, rec.Modality) {
		st.Modalities = append(st.Modalities, rec.Modality)
	}
	if err := bumpTotal(txn, copyTotal(rec), 1, rec.Size); err != nil {
		return nil, err
	}
	if rec.Conflict {
		st.Conflicts++
	} else {
		st.Instances++
		st.Bytes += rec.Size
		if err := s.addToSeries(txn, rec); err != nil {
			return nil, err
		}
	}
	if rec.Urgent && !st.Urgent {
		st.Urgent = true
		if err := s.setStudyUrgency(context.Background(), txn, st.StudyInstanceUID, true); err != nil {
			return nil, err
		}
	}
	if err := setJSON(txn, studyKey(st.StudyInstanceUID), &st); err != nil {
		return nil, err
	}
	return &st, txn.Set(studyAgeKey(st.LastReceived.UnixNano(), st.StudyInstanceUID), nil)
}

// copyTotal is the total that counts rec: accepted copies or flagged ones.
func copyTotal(rec *Instance) string {
	if rec.Conflict {
		return totalConflicts
	}
	return totalInstances
}

func (s *Store) addPatientStudy(txn *badger.Txn, rec *Instance) error {
	var p Patient
	found, err := getJSON(txn, patientKey(rec.PatientID), &p)
	if err != nil {
		return err
	}
	if !found {
		if err := bumpTotal(txn, totalPatients, 1, 0); err != nil {
			return err
		}
	}
	p.PatientID = rec.PatientID
	if rec.PatientName != "" {
		p.PatientName = rec.PatientName
	}
	p.Studies++
	if rec.ReceivedAt.After(p.LastReceived) {
		p.LastReceived = rec.ReceivedAt
	}
	if err := setJSON(txn, patientKey(rec.PatientID), &p); err != nil {
		return err
	}
	return txn.Set(patientStudyKey(rec.PatientID, rec.StudyInstanceUID), nil)
}

func (s *Store) addToSeries(txn *badger.Txn, rec *Instance) error {
	k := seriesKey(rec.StudyInstanceUID, rec.SeriesInstanceUID)
	se := Series{
		StudyInstanceUID:  rec.StudyInstanceUID,
		SeriesInstanceUID: rec.SeriesInstanceUID,
		SeriesNumber:      rec.SeriesNumber,
		Modality:          rec.Modality,
	}
	if _, err := getJSON(txn, k, &se); err != nil {
		return err
	}
	se.Instances++
	se.Bytes += rec.Size
	return setJSON(txn, k, &se)
}

// removeInstance deletes an accepted copy's rows, bytes and queue entries,
// and keeps the study, series and patient sums right.
func (s *Store) removeInstance(txn *badger.Txn, rec *Instance) error {
	for _, dest := range rec.Destinations {
		var e Entry
		found, err := getJSON(txn, queueKey(dest, rec.SOPInstanceUID), &e)
		if err != nil {
			return err
		}
		if found {
			if err := s.deleteEntry(txn, &e); err != nil {
				return err
			}
		}
	}
	dels := [][]byte{instanceKey(rec.SOPInstanceUID), studyInstanceKey(rec)}
	if len(rec.Destinations) == 0 {
		dels = append(dels, heldKey(rec.SOPInstanceUID))
	}
	for _, k := range dels {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	if err := dropBytes(txn, rec); err != nil {
		return err
	}

	sk := seriesKey(rec.StudyInstanceUID, rec.SeriesInstanceUID)
	var se Series
	if _, err := getJSON(txn, sk, &se); err != nil {
		return err
	}
	se.Instances--
	se.Bytes -= rec.Size
	if err := putOrDelete(txn, sk, &se, se.Instances > 0); err != nil {
		return err
	}
	return s.leaveStudy(txn, rec)
}

// leaveStudy takes rec (an accepted copy or a flagged one) out of its
// study's sums, and drops the study and its patient link when nothing is
// left of it.
func (s *Store) leaveStudy(txn *badger.Txn, rec *Instance) error {
	var st Study
	if _, err := getJSON(txn, studyKey(rec.StudyInstanceUID), &st); err != nil {
		return err
	}
	if err := bumpTotal(txn, copyTotal(rec), -1, -rec.Size); err != nil {
		return err
	}
	if rec.Conflict {
		st.Conflicts--
	} else {
		st.Instances--
		st.Bytes -= rec.Size
	}
	keep := st.Instances > 0 || st.Conflicts > 0
	if err := putOrDelete(txn, studyKey(st.StudyInstanceUID), &st, keep); err != nil {
		return err
	}
	if keep {
		return nil
	}
	if err := bumpTotal(txn, totalStudies, -1, 0); err != nil {
		return err
	}
	if err := txn.Delete(studyAgeKey(st.LastReceived.UnixNano(), st.StudyInstanceUID)); err != nil {
		return err
	}
	if err := txn.Delete(patientStudyKey(st.PatientID, st.StudyInstanceUID)); err != nil {
		return err
	}
	var p Patient
	if _, err := getJSON(txn, patientKey(st.PatientID), &p); err != nil {
		return err
	}
	p.Studies--
	if p.Studies <= 0 {
		if err := bumpTotal(txn, totalPatients, -1, 0); err != nil {
			return err
		}
	}
	return putOrDelete(txn, patientKey(st.PatientID), &p, p.Studies > 0)
}

func putOrDelete(txn *badger.Txn, k []byte, v any, keep bool) error {
	if keep {
		return setJSON(txn, k, v)
	}
	return txn.Delete(k)
}

// Instance returns the accepted copy of a SOP Instance UID.
func (s *Store) Instance(uid string) (Instance, error) {
	var rec Instance
	err := s.view(func(txn *badger.Txn) error {
		found, err := getJSON(txn, instanceKey(uid), &rec)
		if err == nil && !found {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return Instance{}, fmt.Errorf("instance %s: %w", uid, err)
	}
	return rec, nil
}

// Conflicts returns the flagged copies of a SOP Instance UID, oldest first.
func (s *Store) Conflicts(ctx context.Context, uid string) ([]Instance, error) {
	var out []Instance
	err := s.view(func(txn *badger.Txn) error {
		return scanJSON(ctx, txn, conflictPrefix(uid), func(_ []byte, r *Instance) (bool, error) {
			out = append(out, *r)
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("conflicts of %s: %w", uid, err)
	}
	return out, nil
}

// Patients lists the patients with stored studies, by patient ID.
func (s *Store) Patients(ctx context.Context) ([]Patient, error) {
	return list[Patient](ctx, s, []byte{tagPatient}, "patients")
}

// Studies lists the studies of a patient, or every study when patientID is
// empty, most recently received first. It reads every study; the console's
// list wants RecentStudies.
func (s *Store) Studies(ctx context.Context, patientID string) ([]Study, error) {
	out, err := s.newestStudies(ctx, 0, func(st *Study) bool { return patientID == "" || st.PatientID == patientID })
	if err != nil {
		return nil, fmt.Errorf("studies of %q: %w", patientID, err)
	}
	return out, nil
}

// RecentStudies returns the limit most recently received studies, newest
// first (every study when limit ≤ 0). It reads limit rows of the age index
// and their studies, however many the store holds.
func (s *Store) RecentStudies(ctx context.Context, limit int) ([]Study, error) {
	out, err := s.newestStudies(ctx, limit, func(*Study) bool { return true })
	if err != nil {
		return nil, fmt.Errorf("recent studies: %w", err)
	}
	return out, nil
}

// newestStudies walks the age index from the newest study and returns the
// first limit (0: all) that keep accepts.
func (s *Store) newestStudies(ctx context.Context, limit int, keep func(*Study) bool) ([]Study, error) {
	var out []Study
	err := s.view(func(txn *badger.Txn) error {
		return scan(ctx, txn, []byte{tagStudyAge}, true, func(item *badger.Item) (bool, error) {
			_, rest := readI64(item.Key()[1:])
			uid, _ := readStr(rest)
			var st Study
			found, err := getJSON(txn, studyKey(uid), &st)
			if err != nil {
				return false, fmt.Errorf("study %s: %w", uid, err)
			}
			if found && keep(&st) {
				out = append(out, st)
			}
			return limit <= 0 || len(out) < limit, nil
		})
	})
	return out, err
}

// Series lists the series of a study by series number.
func (s *Store) Series(ctx context.Context, studyUID string) ([]Series, error) {
	out, err := list[Series](ctx, s, seriesPrefix(studyUID), "series")
	slices.SortStableFunc(out, func(a, b Series) int { return a.SeriesNumber - b.SeriesNumber })
	return out, err
}

// Study returns a study and its instances, flagged copies included, in
// series number, series, instance number order.
func (s *Store) Study(ctx context.Context, studyUID string) (Study, []Instance, error) {
	var st Study
	var recs []Instance
	err := s.view(func(txn *badger.Txn) error {
		found, err := getJSON(txn, studyKey(studyUID), &st)
		if err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		recs, err = studyInstances(ctx, txn, studyUID)
		return err
	})
	if err != nil {
		return Study{}, nil, fmt.Errorf("study %s: %w", studyUID, err)
	}
	return st, recs, nil
}

// Instances lists the instances of one series in instance number order.
func (s *Store) Instances(ctx context.Context, studyUID, seriesUID string) ([]Instance, error) {
	_, recs, err := s.Study(ctx, studyUID)
	return slices.DeleteFunc(recs, func(r Instance) bool { return r.SeriesInstanceUID != seriesUID }), err
}

func studyInstances(ctx context.Context, txn *badger.Txn, studyUID string) ([]Instance, error) {
	var recs []Instance
	err := scan(ctx, txn, studyInstancePrefix(studyUID), false, func(item *badger.Item) (bool, error) {
		k, err := item.ValueCopy(nil)
		if err != nil {
			return false, err
		}
		var r Instance
		found, err := getJSON(txn, k, &r)
		if err != nil {
			return false, err
		}
		if !found {
			return false, fmt.Errorf("index row %q points to a missing record", item.Key())
		}
		recs = append(recs, r)
		return true, nil
	})
	return recs, err
}

func list[T any](ctx context.Context, s *Store, prefix []byte, what string) ([]T, error) {
	var out []T
	err := s.view(func(txn *badger.Txn) error {
		return scanJSON(ctx, txn, prefix, func(_ []byte, v *T) (bool, error) {
			out = append(out, *v)
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	return out, nil
}

// newEntry is the pending queue entry of rec for dest.
func newEntry(dest string, rec *Instance, st *Study) *Entry {
	return &Entry{
		Dest:               dest,
		SOPInstanceUID:     rec.SOPInstanceUID,
		StudyInstanceUID:   rec.StudyInstanceUID,
		SeriesInstanceUID:  rec.SeriesInstanceUID,
		SeriesNumber:       rec.SeriesNumber,
		InstanceNumber:     rec.InstanceNumber,
		Size:               rec.Size,
		ReceivedAt:         rec.ReceivedAt,
		StudyFirstReceived: st.FirstReceived,
		Urgent:             st.Urgent,
		State:              Pending,
	}
}
