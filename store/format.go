package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// formatVersion is the layout this code reads and writes.
//
//	1  no version key: records, index, queue and events (up to December 2026)
//	2  the counts and indexes of derivedTags, kept in the same transactions
//	3  instance bytes in files (chunks in Badger before), and the copy rows
//	4  the tallies of each study's entries per destination, and its last errors (studyTags)
const formatVersion = 4

// oldestReader is the oldest format whose program opens a store of this
// format as its own. The update guard rolls a crash-looping update back to
// the image before it, which must then open the store the update already
// upgraded, or the box receives nothing. So a format change adds rows the
// version before ignores (new tags) and sets oldestReader below
// formatVersion; that version opens the store, records its own format, and
// the rows it did not keep are rebuilt by the next upgrade (build drops
// them first). Format 4 is the first to know this key: format 3 refuses any
// newer store, so 4 can claim no older reader.
const oldestReader = 4

// ErrNewerFormat is returned by Open for a store written by a newer version
// of the program: its layout is unknown here, so it is left untouched.
var ErrNewerFormat = errors.New("store: format is newer than this program")

// upgrade says what checkFormat did to a store written by an older version.
type upgrade struct {
	from      uint64
	reader    bool // a newer store this version can read: a rollback (see oldestReader)
	instances int  // accepted and flagged copies held
	moved     int  // copies whose bytes moved from chunks to files
}

// checkFormat reads the store's format version. An older store is upgraded
// once: its counts and indexes built (format 1; only the study tallies for
// formats 2 and 3), its bytes moved to files (format 2 and before); the
// version is recorded last, so an upgrade cut short starts again, from
// where it was, at the next Open. A newer store that this version can read
// (see oldestReader) is taken as its own format; any other newer store is
// refused before anything is written to it.
func (s *Store) checkFormat() (upgrade, error) {
	v, err := s.readFormat()
	up := upgrade{from: v}
	if err != nil {
		return up, err
	}
	switch {
	case v > formatVersion:
		r, found, err := s.readUint64(readerKey())
		if err != nil {
			return up, err
		}
		if !found || r > formatVersion {
			return up, fmt.Errorf("%w: the data was written with format %d, this relaisd knows up to %d; install the newer relaisd again (the data is untouched)", ErrNewerFormat, v, formatVersion)
		}
		up.reader = true
		return up, s.recordFormat()
	case v == formatVersion:
		return up, s.dropChunks() // left by an upgrade cut after its version was recorded
	}
	for _, tag := range []byte{tagInstance, tagConflict} {
		n, err := s.countKeys(tag)
		if err != nil {
			return up, err
		}
		up.instances += n
	}
	build := s.buildCounts
	if v >= 2 {
		build = s.buildStudyTallies
	}
	if err := build(v); err != nil {
		return up, err
	}
	if v < 3 {
		if up.moved, err = s.moveChunks(up.instances); err != nil {
			return up, fmt.Errorf("move instances to files: %w", err)
		}
	}
	if err := s.recordFormat(); err != nil {
		return up, err
	}
	return up, s.dropChunks()
}

// recordFormat writes this version's format and its oldest reader, last
// in an upgrade.
func (s *Store) recordFormat() error {
	err := s.db.Update(func(txn *badger.Txn) error {
		if err := txn.Delete(movedKey()); err != nil {
			return err
		}
		if err := txn.Set(readerKey(), binary.BigEndian.AppendUint64(nil, oldestReader)); err != nil {
			return err
		}
		return txn.Set(formatKey(), binary.BigEndian.AppendUint64(nil, formatVersion))
	})
	if err != nil {
		return fmt.Errorf("record format %d: %w", formatVersion, err)
	}
	return nil
}

// reportUpgrade says in the event log what the upgrade at Open did.
func (s *Store) reportUpgrade(up upgrade) error {
	if up.reader {
		return s.Log(Event{
			Kind:     KindStore,
			Severity: Warning,
			Message:  fmt.Sprintf("store opened by an older relaisd: written with format %d, read as format %d; an update was probably rolled back. Nothing is lost: the newer relaisd rebuilds its additions when it is installed again", up.from, formatVersion),
			Attrs:    map[string]string{"format": strconv.FormatUint(up.from, 10), "read_as": strconv.Itoa(formatVersion)},
		})
	}
	if up.from == formatVersion || up.instances == 0 {
		return nil
	}
	done := fmt.Sprintf("%d instances moved to files", up.moved)
	if up.from >= 3 {
		done = fmt.Sprintf("study tallies built for %d instances", up.instances)
	}
	return s.Log(Event{
		Kind:     KindStore,
		Severity: Info,
		Message:  fmt.Sprintf("store upgraded: %s (format %d to %d)", done, up.from, formatVersion),
		Attrs:    map[string]string{"instances": strconv.Itoa(up.instances), "moved": strconv.Itoa(up.moved)},
	})
}

// readFormat returns the recorded version, 1 when none is recorded.
func (s *Store) readFormat() (uint64, error) {
	v, found, err := s.readUint64(formatKey())
	if !found {
		v = 1
	}
	return v, err
}

// buildStep reads records in txn for a rebuild, writes the rows it derives
// to wb and adds the counters to counts (by key).
type buildStep func(txn *badger.Txn, wb *badger.WriteBatch, counts map[string]Tally) error

// buildCounts derives the counts and indexes of derivedTags from the
// records, once, at the first Open of a store written before they existed.
func (s *Store) buildCounts(from uint64) error {
	return s.build(from, "counters", derivedTags, countRecords, countStudies, countEntries, countDamaged)
}

// buildStudyTallies derives the study tallies (studyTags) of a store of
// format 2 or 3, which keeps the other counts already.
func (s *Store) buildStudyTallies(from uint64) error {
	return s.build(from, "study tallies", studyTags, countStudyEntries)
}

// build drops the rows under tags and derives them again by steps. It runs
// at Open, before anything else writes. Rows go through a write batch
// (there may be millions); the counters go last, in one transaction, and
// the version after them, so a crash midway leaves the old version and the
// next Open builds again.
func (s *Store) build(from uint64, what string, tags []byte, steps ...buildStep) error {
	start := time.Now()
	n, err := s.countKeys(tagInstance)
	if err != nil {
		return err
	}
	if n > 0 {
		s.opts.Logger.Info(fmt.Sprintf("building %s: %d instances…", what, n), "dir", s.dir, "format", from, "to", formatVersion)
	}
	if err := s.dropDerived(tags); err != nil {
		return err
	}
	counts := map[string]Tally{} // by key
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	err = s.db.View(func(txn *badger.Txn) error {
		for _, step := range steps {
			if err := step(txn, wb, counts); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = wb.Flush()
	}
	if err != nil {
		return fmt.Errorf("build %s: %w", what, err)
	}
	err = s.db.Update(func(txn *badger.Txn) error {
		for k, t := range counts {
			if err := txn.Set([]byte(k), encodeTally(t)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record %s: %w", what, err)
	}
	if n > 0 {
		s.opts.Logger.Info(what+" built", "dir", s.dir, "instances", n, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// countKeys counts the keys under tag without reading their values.
func (s *Store) countKeys(tag byte) (int, error) {
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		return scan(context.Background(), txn, []byte{tag}, false, func(*badger.Item) (bool, error) {
			n++
			return true, nil
		})
	})
	return n, err
}

// dropDerived removes the rows under tags left by an earlier build that a
// crash cut short, so that the build starts from nothing.
func (s *Store) dropDerived(tags []byte) error {
	var prefixes [][]byte
	for _, tag := range tags {
		n := 0
		err := s.db.View(func(txn *badger.Txn) error {
			return scan(context.Background(), txn, []byte{tag}, false, func(*badger.Item) (bool, error) {
				n++
				return false, nil
			})
		})
		if err != nil {
			return err
		}
		if n > 0 {
			prefixes = append(prefixes, []byte{tag})
		}
	}
	if len(prefixes) == 0 {
		return nil
	}
	if err := s.db.DropPrefix(prefixes...); err != nil {
		return fmt.Errorf("drop old counters: %w", err)
	}
	return nil
}

// countRecords counts accepted and flagged copies and writes the held rows.
func countRecords(txn *badger.Txn, wb *badger.WriteBatch, counts map[string]Tally) error {
	for _, tag := range []byte{tagInstance, tagConflict} {
		err := scanJSON(context.Background(), txn, []byte{tag}, func(_ []byte, r *Instance) (bool, error) {
			addCount(counts, totalKey(copyTotal(r)), r.Size)
			if !r.Conflict && len(r.Destinations) == 0 {
				return true, wb.Set(heldKey(r.SOPInstanceUID), nil)
			}
			return true, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// countStudies counts study and patient records (keys only).
func countStudies(txn *badger.Txn, _ *badger.WriteBatch, counts map[string]Tally) error {
	for tag, name := range map[byte]string{tagStudy: totalStudies, tagPatient: totalPatients} {
		err := scan(context.Background(), txn, []byte{tag}, false, func(*badger.Item) (bool, error) {
			addCount(counts, totalKey(name), 0)
			return true, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// countEntries tallies queue entries, their studies' too, and writes their
// derived index rows and each destination's oldest waiting pointer.
func countEntries(txn *badger.Txn, wb *badger.WriteBatch, counts map[string]Tally) error {
	oldest := map[string][]byte{} // dest → W key
	studies := newStudyCounts()
	err := scanJSON(context.Background(), txn, []byte{tagQueue}, func(_ []byte, e *Entry) (bool, error) {
		addCount(counts, tallyKey(e.Dest, e.State), e.Size)
		studies.add(e)
		for _, r := range entryRows(e) {
			if !isDerived(r.k) {
				continue
			}
			if err := wb.Set(r.k, r.v); err != nil {
				return false, err
			}
			if cur, ok := oldest[e.Dest]; r.k[0] == tagWaitingSince && (!ok || bytes.Compare(r.k, cur) < 0) {
				oldest[e.Dest] = r.k
			}
		}
		return true, nil
	})
	for dest, k := range oldest {
		if err == nil {
			err = wb.Set(oldestKey(dest), k)
		}
	}
	if err != nil {
		return err
	}
	return studies.write(wb)
}

// countStudyEntries tallies queue entries by study alone (see
// buildStudyTallies).
func countStudyEntries(txn *badger.Txn, wb *badger.WriteBatch, _ map[string]Tally) error {
	studies := newStudyCounts()
	err := scanJSON(context.Background(), txn, []byte{tagQueue}, func(_ []byte, e *Entry) (bool, error) {
		studies.add(e)
		return true, nil
	})
	if err != nil {
		return err
	}
	return studies.write(wb)
}

// studyCounts gathers a rebuild's study tallies and error rows (see
// retally). There are a few per study, too many for the one transaction of
// the other counters, so they go through the write batch.
type studyCounts struct {
	tallies map[string]Tally  // by key
	errs    map[string]string // by key
}

func newStudyCounts() *studyCounts {
	return &studyCounts{tallies: map[string]Tally{}, errs: map[string]string{}}
}

func (c *studyCounts) add(e *Entry) {
	addCount(c.tallies, studyTallyKey(e.StudyInstanceUID, e.Dest, e.State), e.Size)
	if e.State.failing() { // which failed last is not recorded: the last one read
		c.errs[string(studyErrorKey(e.StudyInstanceUID, e.Dest))] = e.LastError
	}
}

func (c *studyCounts) write(wb *badger.WriteBatch) error {
	for k, t := range c.tallies {
		if err := wb.Set([]byte(k), encodeTally(t)); err != nil {
			return err
		}
	}
	for k, msg := range c.errs {
		if err := wb.Set([]byte(k), []byte(msg)); err != nil {
			return err
		}
	}
	return nil
}

func addCount(counts map[string]Tally, k key, bytes int64) {
	t := counts[string(k)]
	t.add(1, bytes)
	counts[string(k)] = t
}

func isDerived(k []byte) bool {
	return len(k) > 0 && bytes.IndexByte(derivedTags, k[0]) >= 0
}
