package dimse

import (
	"encoding/binary"
	"fmt"
)

// A tiny data set codec for the few small data sets the stack itself reads
// and writes (Storage Commitment). Images are never decoded here: their bytes
// stream through untouched.

const (
	tagItem          uint32 = 0xFFFEE000
	tagItemDelim     uint32 = 0xFFFEE00D
	tagSequenceDelim uint32 = 0xFFFEE0DD
	undefinedLength  uint32 = 0xFFFFFFFF

	maxDataSetDepth = 8
)

// dsElement is one element; items is set for sequences.
type dsElement struct {
	tag   uint32
	vr    string
	value []byte
	items [][]dsElement
}

// implicitSequences are the sequence tags this stack reads in Implicit VR.
var implicitSequences = map[uint32]bool{
	0x00081198: true, // Failed SOP Sequence
	0x00081199: true, // Referenced SOP Sequence
}

func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

// encodeDataSet writes elements (already in tag order) in Implicit or
// Explicit VR Little Endian with defined lengths.
func encodeDataSet(els []dsElement, explicit bool) []byte {
	var b []byte
	for _, e := range els {
		v := e.value
		if e.items != nil {
			v = nil
			for _, it := range e.items {
				body := encodeDataSet(it, explicit)
				v = binary.LittleEndian.AppendUint16(v, 0xFFFE)
				v = binary.LittleEndian.AppendUint16(v, 0xE000)
				v = binary.LittleEndian.AppendUint32(v, uint32(len(body)))
				v = append(v, body...)
			}
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(e.tag>>16))
		b = binary.LittleEndian.AppendUint16(b, uint16(e.tag))
		switch {
		case !explicit:
			b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		case longVR(e.vr):
			b = append(b, e.vr...)
			b = append(b, 0, 0)
			b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		default:
			b = append(b, e.vr...)
			b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
		}
		b = append(b, v...)
	}
	return b
}

// decodeDataSet parses a Little Endian data set held in memory. Lengths are
// checked against the bytes present, so nothing is allocated from them.
func decodeDataSet(b []byte, explicit bool) ([]dsElement, error) {
	els, rest, err := decodeElements(b, explicit, 0, false)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("data set: unexpected delimiter")
	}
	return els, nil
}

// decodeElements reads until b is exhausted or, inside an undefined-length
// item, until the item delimiter; it returns what follows.
func decodeElements(b []byte, explicit bool, depth int, inItem bool) ([]dsElement, []byte, error) {
	if depth > maxDataSetDepth {
		return nil, nil, fmt.Errorf("data set: sequences nested deeper than %d", maxDataSetDepth)
	}
	var els []dsElement
	for len(b) > 0 {
		if len(b) < 8 {
			return nil, nil, fmt.Errorf("data set: truncated element header")
		}
		tag := uint32(binary.LittleEndian.Uint16(b[0:2]))<<16 | uint32(binary.LittleEndian.Uint16(b[2:4]))
		if tag == tagItemDelim {
			if !inItem {
				return nil, nil, fmt.Errorf("data set: item delimiter outside an item")
			}
			return els, b[8:], nil
		}
		if tag == tagSequenceDelim || tag == tagItem {
			return nil, nil, fmt.Errorf("data set: delimiter (%04X,%04X) out of place", tag>>16, tag&0xFFFF)
		}
		var vr string
		var n uint32
		if explicit {
			vr = string(b[4:6])
			if longVR(vr) {
				if len(b) < 12 {
					return nil, nil, fmt.Errorf("data set: truncated element header")
				}
				n = binary.LittleEndian.Uint32(b[8:12])
				b = b[12:]
			} else {
				n = uint32(binary.LittleEndian.Uint16(b[6:8]))
				b = b[8:]
			}
		} else {
			n = binary.LittleEndian.Uint32(b[4:8])
			b = b[8:]
		}
		e := dsElement{tag: tag, vr: vr}
		isSeq := vr == "SQ" || (!explicit && implicitSequences[tag]) || (n == undefinedLength && vr != "OB" && vr != "OW")
		if isSeq {
			var err error
			e.items, b, err = decodeItems(b, n, explicit, depth+1)
			if err != nil {
				return nil, nil, fmt.Errorf("data set: sequence (%04X,%04X): %w", tag>>16, tag&0xFFFF, err)
			}
			if e.items == nil {
				e.items = [][]dsElement{}
			}
		} else {
			if n == undefinedLength || uint64(n) > uint64(len(b)) {
				return nil, nil, fmt.Errorf("data set: element (%04X,%04X) length %d exceeds data", tag>>16, tag&0xFFFF, n)
			}
			e.value = b[:n]
			b = b[n:]
		}
		els = append(els, e)
	}
	if inItem {
		return nil, nil, fmt.Errorf("data set: missing item delimiter")
	}
	return els, nil, nil
}

func decodeItems(b []byte, n uint32, explicit bool, depth int) ([][]dsElement, []byte, error) {
	var body, after []byte
	if n == undefinedLength {
		body = b
	} else {
		if uint64(n) > uint64(len(b)) {
			return nil, nil, fmt.Errorf("length %d exceeds data", n)
		}
		body, after = b[:n], b[n:]
	}
	var items [][]dsElement
	for len(body) > 0 {
		if len(body) < 8 {
			return nil, nil, fmt.Errorf("truncated item header")
		}
		tag := uint32(binary.LittleEndian.Uint16(body[0:2]))<<16 | uint32(binary.LittleEndian.Uint16(body[2:4]))
		ln := binary.LittleEndian.Uint32(body[4:8])
		body = body[8:]
		if tag == tagSequenceDelim {
			if n != undefinedLength {
				return nil, nil, fmt.Errorf("sequence delimiter in a defined-length sequence")
			}
			return items, body, nil
		}
		if tag != tagItem {
			return nil, nil, fmt.Errorf("(%04X,%04X) where an item was expected", tag>>16, tag&0xFFFF)
		}
		var it []dsElement
		var err error
		if ln == undefinedLength {
			it, body, err = decodeElements(body, explicit, depth, true)
		} else {
			if uint64(ln) > uint64(len(body)) {
				return nil, nil, fmt.Errorf("item length %d exceeds data", ln)
			}
			it, err = decodeDataSet(body[:ln], explicit)
			body = body[ln:]
		}
		if err != nil {
			return nil, nil, err
		}
		items = append(items, it)
	}
	if n == undefinedLength {
		return nil, nil, fmt.Errorf("missing sequence delimiter")
	}
	return items, after, nil
}

func findElement(els []dsElement, tag uint32) *dsElement {
	for i := range els {
		if els[i].tag == tag {
			return &els[i]
		}
	}
	return nil
}

// explicitLE reports whether ts is Explicit VR Little Endian; the stack's own
// data sets are only ever negotiated in the two uncompressed little endian syntaxes.
func explicitLE(ts string) (bool, error) {
	switch ts {
	case ImplicitVRLittleEndian:
		return false, nil
	case ExplicitVRLittleEndian:
		return true, nil
	}
	return false, fmt.Errorf("data set in transfer syntax %s: only implicit and explicit VR little endian are supported here", ts)
}
