package store

import "encoding/binary"

// Key layout. Every key starts with one tag byte. Strings are length-prefixed
// (two bytes, big endian) so that a string component never runs into the next
// one and a prefix scan over "study X" cannot match "study X1". Numbers are
// big endian so byte order is numeric order; signed numbers have their sign
// bit flipped for the same reason.
const (
	tagInline        = 'b' // b id                  → the bytes of a small instance (see Options.InlineMax)
	tagCopy          = 'f' // f id                  → key of the record holding copy id (accepted or flagged)
	tagDoomed        = 'x' // x id                  → (empty) copy id's file is to be removed: its record is gone
	tagSwept         = 'u' // u                     → id: no file of an id up to it lacks a record or a doomed marker
	tagIssued        = 'g' // g                     → id: the highest id handed out (none above it is on disk)
	tagInstance      = 'i' // i uid                 → Instance (the accepted copy)
	tagConflict      = 'k' // k uid id              → Instance (a different copy, flagged)
	tagPatient       = 'P' // P patientID           → Patient
	tagPatientStudy  = 'A' // A patientID study     → (empty)
	tagStudy         = 'S' // S study               → Study
	tagStudyAge      = 'T' // T lastReceived study  → (empty), oldest first for retention
	tagSeries        = 'R' // R study series        → Series
	tagStudyInstance = 'I' // I study sn series in uid id → key of the Instance record
	tagQueue         = 'q' // q dest uid            → Entry
	tagWaiting       = 'Q' // Q dest urgency first study sn series in uid → uid (waiting or in flight)
	tagParked        = 'X' // X dest uid            → (empty) parked entries, for the attention list
	tagDest          = 'd' // d dest                → Destination
	tagEvent         = 'e' // e unixnano seq        → Event
	tagEventKind     = 'E' // E kind unixnano seq   → (empty), a kind's events oldest first, for trimming
	tagEventCount    = 'N' // N kind                → count, last seq (16 bytes, big endian)

	// Kept in the transactions that change what they describe, so that the
	// console's status and the periodic loops read a few keys, never the
	// whole store. Rebuilt from the records above by a format upgrade.
	tagTotal        = 'n' // n name                → count, bytes: studies, patients, instances, conflicts
	tagTally        = 's' // s dest state          → count, bytes of dest's entries in that state
	tagStudyTally   = 't' // t study dest state    → count, bytes of the study's entries at dest in that state
	tagStudyError   = 'L' // L study dest          → the last error of the study's failed or parked entries at dest
	tagWaitingSince = 'W' // W dest receivedAt uid → (empty) waiting entries, oldest received first
	tagOldest       = 'O' // O dest                → the W key of dest's oldest waiting entry
	tagHeld         = 'H' // H uid                 → (empty) accepted instances queued nowhere
	tagDelivered    = 'D' // D dest receivedAt uid → (empty) delivered, not yet committed
	tagFormat       = 'V' // V                     → store format version, 8 bytes
	tagReader       = 'Y' // Y                     → the oldest format that can open this store (oldestReader), 8 bytes
	tagDamaged      = 'z' // z id                  → Damage: an accepted copy found damaged (damage.go)

	// Format 2 kept instance bytes in Badger; the upgrade to 3 moves them
	// to files and drops these keys.
	tagChunk   = 'c' // c id seq → instance bytes, one chunk
	tagPending = 'p' // p id     → (empty) chunks written, not committed
)

// derivedTags are the keys a format upgrade drops and rebuilds from the
// records: the ones above, and the parked list, which format 1 could leave
// stale (a corrected copy's entry kept its parked row).
var derivedTags = []byte{tagTotal, tagTally, tagStudyTally, tagStudyError, tagWaitingSince, tagOldest, tagHeld, tagDelivered, tagParked}

// studyTags are the derived keys format 4 added, which its upgrade builds.
var studyTags = []byte{tagStudyTally, tagStudyError}

type key []byte

func newKey(tag byte) key { return key{tag} }

func (k key) str(s string) key {
	if len(s) > 0xffff {
		s = s[:0xffff]
	}
	k = binary.BigEndian.AppendUint16(k, uint16(len(s)))
	return append(k, s...)
}

func (k key) u64(v uint64) key { return binary.BigEndian.AppendUint64(k, v) }

func (k key) i64(v int64) key { return k.u64(uint64(v) ^ (1 << 63)) }

func (k key) u8(v byte) key { return append(k, v) }

func chunkPrefix(id uint64) key             { return newKey(tagChunk).u64(id) }
func chunkKey(id uint64, seq uint32) key    { return binary.BigEndian.AppendUint32(chunkPrefix(id), seq) }
func inlineKey(id uint64) key               { return newKey(tagInline).u64(id) }
func copyKey(id uint64) key                 { return newKey(tagCopy).u64(id) }
func doomedKey(id uint64) key               { return newKey(tagDoomed).u64(id) }
func sweptKey() key                         { return newKey(tagSwept) }
func issuedKey() key                        { return newKey(tagIssued) }
func instanceKey(uid string) key            { return newKey(tagInstance).str(uid) }
func conflictPrefix(uid string) key         { return newKey(tagConflict).str(uid) }
func conflictKey(uid string, id uint64) key { return conflictPrefix(uid).u64(id) }
func patientKey(pid string) key             { return newKey(tagPatient).str(pid) }
func patientStudyKey(pid, study string) key { return newKey(tagPatientStudy).str(pid).str(study) }
func studyKey(study string) key             { return newKey(tagStudy).str(study) }
func seriesPrefix(study string) key         { return newKey(tagSeries).str(study) }
func seriesKey(study, series string) key    { return seriesPrefix(study).str(series) }
func studyInstancePrefix(study string) key  { return newKey(tagStudyInstance).str(study) }
func queuePrefix(dest string) key           { return newKey(tagQueue).str(dest) }
func queueKey(dest, uid string) key         { return queuePrefix(dest).str(uid) }
func waitingPrefix(dest string) key         { return newKey(tagWaiting).str(dest) }
func destKey(dest string) key               { return newKey(tagDest).str(dest) }
func parkedPrefix(dest string) key          { return newKey(tagParked).str(dest) }
func parkedKey(dest, uid string) key        { return parkedPrefix(dest).str(uid) }

func totalKey(name string) key           { return newKey(tagTotal).str(name) }
func tallyKey(dest string, st State) key { return newKey(tagTally).str(dest).u8(byte(st)) }
func studyTallyPrefix(study string) key  { return newKey(tagStudyTally).str(study) }
func studyErrorKey(study, dest string) key {
	return newKey(tagStudyError).str(study).str(dest)
}
func waitingSincePrefix(dest string) key { return newKey(tagWaitingSince).str(dest) }
func oldestKey(dest string) key          { return newKey(tagOldest).str(dest) }
func heldKey(uid string) key             { return newKey(tagHeld).str(uid) }
func deliveredPrefix(dest string) key    { return newKey(tagDelivered).str(dest) }
func formatKey() key                     { return newKey(tagFormat) }
func readerKey() key                     { return newKey(tagReader) }
func damagedKey(id uint64) key           { return newKey(tagDamaged).u64(id) }

func studyAgeKey(last int64, study string) key { return newKey(tagStudyAge).i64(last).str(study) }

func studyTallyKey(study, dest string, st State) key {
	return studyTallyPrefix(study).str(dest).u8(byte(st))
}

func eventKey(unixNano int64, seq uint64) key { return newKey(tagEvent).i64(unixNano).u64(seq) }
func eventKindPrefix(k Kind) key              { return newKey(tagEventKind).str(string(k)) }
func eventCountKey(k Kind) key                { return newKey(tagEventCount).str(string(k)) }

func eventKindKey(k Kind, unixNano int64, seq uint64) key {
	return eventKindPrefix(k).i64(unixNano).u64(seq)
}

// eventKeyOf returns the event key a kind index key points to: both end
// with the same time and sequence number.
func eventKeyOf(kindKey []byte) key {
	return append(newKey(tagEvent), kindKey[len(kindKey)-16:]...)
}

// kindOf returns the kind in an event count key.
func kindOf(countKey []byte) Kind {
	if len(countKey) < 3 {
		return ""
	}
	n := int(binary.BigEndian.Uint16(countKey[1:3]))
	return Kind(countKey[3:min(3+n, len(countKey))])
}

// studyInstanceKey orders a study's instances by series number, series,
// instance number, then UID, which is the order a reader expects.
func studyInstanceKey(r *Instance) key {
	return studyInstancePrefix(r.StudyInstanceUID).
		i64(int64(r.SeriesNumber)).str(r.SeriesInstanceUID).
		i64(int64(r.InstanceNumber)).str(r.SOPInstanceUID).u64(r.ID)
}

// waitingKey orders a destination's waiting entries: urgent studies first,
// then the oldest study, then series and instance order within the study.
func waitingKey(e *Entry) key {
	var urgency byte = 1
	if e.Urgent {
		urgency = 0
	}
	return waitingPrefix(e.Dest).u8(urgency).i64(e.StudyFirstReceived.UnixNano()).
		str(e.StudyInstanceUID).i64(int64(e.SeriesNumber)).str(e.SeriesInstanceUID).
		i64(int64(e.InstanceNumber)).str(e.SOPInstanceUID)
}

// waitingSinceKey orders a destination's waiting entries by receive time,
// so the oldest waiting one is the first key.
func waitingSinceKey(e *Entry) key {
	return waitingSincePrefix(e.Dest).i64(e.ReceivedAt.UnixNano()).str(e.SOPInstanceUID)
}

// deliveredKey orders a destination's delivered entries by receive time.
func deliveredKey(e *Entry) key {
	return deliveredPrefix(e.Dest).i64(e.ReceivedAt.UnixNano()).str(e.SOPInstanceUID)
}

// Names of the totals (tagTotal).
const (
	totalStudies   = "studies"   // study records
	totalPatients  = "patients"  // patient records
	totalInstances = "instances" // accepted copies and their bytes
	totalConflicts = "conflicts" // flagged copies and their bytes
	totalDamaged   = "damaged"   // accepted copies found damaged (tagDamaged rows) and their bytes
)

// readStr splits a length-prefixed string off the front of b.
func readStr(b []byte) (string, []byte) {
	if len(b) < 2 {
		return "", nil
	}
	n := min(int(binary.BigEndian.Uint16(b)), len(b)-2)
	return string(b[2 : 2+n]), b[2+n:]
}

// readI64 splits a sign-flipped number off the front of b.
func readI64(b []byte) (int64, []byte) {
	if len(b) < 8 {
		return 0, nil
	}
	return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)), b[8:]
}

// destTimeUID reads a key made of a tag, a destination, a time and a UID
// (tagWaitingSince, tagDelivered).
func destTimeUID(k []byte) (dest string, unixNano int64, uid string) {
	dest, rest := readStr(k[1:])
	unixNano, rest = readI64(rest)
	uid, _ = readStr(rest)
	return dest, unixNano, uid
}

// idFromKey returns the id inside a key made of a tag and an id first
// (tagChunk, tagCopy, tagDoomed, tagInline, tagDamaged).
func idFromKey(k []byte) uint64 {
	if len(k) < 9 {
		return 0
	}
	return binary.BigEndian.Uint64(k[1:9])
}
