package store

import "encoding/binary"

// Key layout. Every key starts with one tag byte. Strings are length-prefixed
// (two bytes, big endian) so that a string component never runs into the next
// one and a prefix scan over "study X" cannot match "study X1". Numbers are
// big endian so byte order is numeric order; signed numbers have their sign
// bit flipped for the same reason.
const (
	tagChunk         = 'c' // c id seq              → instance bytes, one chunk
	tagPending       = 'p' // p id                  → (empty) chunks written, not committed
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
)

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
func pendingKey(id uint64) key              { return newKey(tagPending).u64(id) }
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

func studyAgeKey(last int64, study string) key { return newKey(tagStudyAge).i64(last).str(study) }

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

// idFromChunkKey returns the instance id inside a chunk or pending key.
func idFromKey(k []byte) uint64 {
	if len(k) < 9 {
		return 0
	}
	return binary.BigEndian.Uint64(k[1:9])
}
