// Package header reads what Relais needs from an instance's header — the
// elements before Pixel Data — to index it and to apply rules.
//
// github.com/suyashkumar/dicom decodes the values (character sets included),
// but it trusts declared lengths and panics on some input, so it only ever
// sees a bounded prefix whose every length this package has checked first,
// and it runs behind recover. The bytes that are stored and forwarded are
// never touched here.
package header

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/relais/relais/appliance/part10"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// MaxPrefix is how much of a data set's start is kept to read its header.
// Headers with large private groups (CSA) are some hundred KB, and the
// elements indexed (groups 0008 to 0020) come first; beyond this the
// elements that fit are read.
const MaxPrefix = 1 << 20

// Header is what is read of an instance's header.
type Header struct {
	SOPClassUID       string
	SOPInstanceUID    string
	StudyInstanceUID  string
	SeriesInstanceUID string
	PatientID         string
	PatientName       string
	StudyDate         string
	StudyTime         string
	StudyDescription  string
	AccessionNumber   string
	Modality          string
	SeriesNumber      int
	InstanceNumber    int
	// Values holds every top-level text element, by tag (group<<16|element),
	// multiple values joined with a backslash: rules match on them.
	Values map[uint32]string
}

const (
	tagPixelData    = 0x7FE00010
	tagItem         = 0xFFFEE000
	tagItemDelim    = 0xFFFEE00D
	tagSeqDelim     = 0xFFFEE0DD
	undefinedLength = 0xFFFFFFFF
	maxDepth        = 16
)

// Transfer syntaxes whose encoding differs from Explicit VR Little Endian.
const (
	implicitLE = "1.2.840.10008.1.2"
	explicitLE = "1.2.840.10008.1.2.1"
	explicitBE = "1.2.840.10008.1.2.2"
	deflated   = "1.2.840.10008.1.2.1.99"
)

// ErrNoHeader means not even one element could be read.
var ErrNoHeader = errors.New("no readable DICOM element at the start of the data set")

// Parse reads the header from the first bytes of a data set encoded in
// transfer syntax ts (the presentation context's).
func Parse(ts string, prefix []byte) (h *Header, err error) {
	if len(prefix) > MaxPrefix {
		prefix = prefix[:MaxPrefix]
	}
	if ts == deflated {
		// Deflate covers the data set only (PS3.5 A.5); a cut-off stream
		// yields what it has.
		var buf bytes.Buffer
		_, err := io.Copy(&buf, io.LimitReader(flate.NewReader(bytes.NewReader(prefix)), MaxPrefix))
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("inflate data set: %w", err)
		}
		prefix, ts = buf.Bytes(), explicitLE
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if ts == explicitBE {
		bo = binary.BigEndian
	}
	implicit := ts == implicitLE
	cut, err := scan(prefix, bo, implicit)
	if err != nil {
		return nil, err
	}
	if cut == 0 {
		return nil, ErrNoHeader
	}

	defer func() {
		if r := recover(); r != nil {
			h, err = nil, fmt.Errorf("header decoder panicked: %v", r)
		}
	}()
	metaTS := ts
	if metaTS != implicitLE && metaTS != explicitBE {
		metaTS = explicitLE // compressed syntaxes encode the header like this
	}
	meta := part10.AppendHeader(nil, part10.Meta{TransferSyntaxUID: metaTS, ImplementationClassUID: "1.2"})
	in := io.MultiReader(bytes.NewReader(meta), bytes.NewReader(prefix[:cut])) // no copy of the header
	ds, err := dicom.Parse(in, int64(len(meta)+cut), nil, dicom.SkipPixelData(), dicom.AllowUnknownSpecificCharacterSet())
	if err != nil && len(ds.Elements) == 0 {
		return nil, fmt.Errorf("decode header: %w", err)
	}
	h = &Header{Values: map[uint32]string{}}
	for _, e := range ds.Elements {
		if e.Tag.Group == 0x0002 || e.Value == nil || e.Value.ValueType() != dicom.Strings {
			continue
		}
		v := strings.TrimRight(strings.Join(dicom.MustGetStrings(e.Value), `\`), " \x00")
		h.Values[uint32(e.Tag.Group)<<16|uint32(e.Tag.Element)] = v
	}
	get := func(t tag.Tag) string { return strings.TrimSpace(h.Values[uint32(t.Group)<<16|uint32(t.Element)]) }
	h.SOPClassUID = get(tag.SOPClassUID)
	h.SOPInstanceUID = get(tag.SOPInstanceUID)
	h.StudyInstanceUID = get(tag.StudyInstanceUID)
	h.SeriesInstanceUID = get(tag.SeriesInstanceUID)
	h.PatientID = get(tag.PatientID)
	h.PatientName = get(tag.PatientName)
	h.StudyDate = get(tag.StudyDate)
	h.StudyTime = get(tag.StudyTime)
	h.StudyDescription = get(tag.StudyDescription)
	h.AccessionNumber = get(tag.AccessionNumber)
	h.Modality = get(tag.Modality)
	h.SeriesNumber, _ = strconv.Atoi(get(tag.SeriesNumber))
	h.InstanceNumber, _ = strconv.Atoi(get(tag.InstanceNumber))
	if h.SOPInstanceUID == "" {
		return h, errors.New("header has no SOP Instance UID")
	}
	return h, nil
}

// Value returns the value of a top-level element named by its keyword
// (for example "RequestedProcedurePriority"), for rules.
func (h *Header) Value(keyword string) (string, bool) {
	info, err := tag.FindByKeyword(keyword)
	if err != nil {
		return "", false
	}
	v, ok := h.Values[uint32(info.Tag.Group)<<16|uint32(info.Tag.Element)]
	return strings.TrimSpace(v), ok
}

// scanner walks elements checking every declared length against the bytes
// present, so the decoder never allocates from a length it can't read.
type scanner struct {
	b        []byte
	bo       binary.ByteOrder
	implicit bool
}

var errShort = errors.New("data ends inside an element")

// scan returns the offset where the readable header ends: Pixel Data, the
// end of the data, or the start of an element cut off by the prefix.
func scan(b []byte, bo binary.ByteOrder, implicit bool) (int, error) {
	s := scanner{b: b, bo: bo, implicit: implicit}
	off := 0
	for off < len(b) {
		t, _, _, _, err := s.header(off)
		if err == errShort {
			return off, nil
		}
		if err != nil {
			return off, err
		}
		if t == tagPixelData {
			return off, nil
		}
		if t>>16 == 0xFFFE {
			return off, fmt.Errorf("delimiter (%04X,%04X) at the top level", t>>16, t&0xFFFF)
		}
		end, err := s.element(off, 0)
		if err == errShort {
			return off, nil
		}
		if err != nil {
			return off, err
		}
		off = end
	}
	return off, nil
}

// header decodes an element header at off.
func (s *scanner) header(off int) (t uint32, vr string, hl int, vl uint32, err error) {
	b := s.b[off:]
	if len(b) < 8 {
		return 0, "", 0, 0, errShort
	}
	t = uint32(s.bo.Uint16(b[0:2]))<<16 | uint32(s.bo.Uint16(b[2:4]))
	if s.implicit || t>>16 == 0xFFFE {
		return t, "", 8, s.bo.Uint32(b[4:8]), nil
	}
	vr = string(b[4:6])
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		if len(b) < 12 {
			return 0, "", 0, 0, errShort
		}
		return t, vr, 12, s.bo.Uint32(b[8:12]), nil
	}
	if vr[0] < 'A' || vr[0] > 'Z' || vr[1] < 'A' || vr[1] > 'Z' {
		return 0, "", 0, 0, fmt.Errorf("element (%04X,%04X) has no valid VR", t>>16, t&0xFFFF)
	}
	return t, vr, 8, uint32(s.bo.Uint16(b[6:8])), nil
}

func (s *scanner) isSequence(t uint32, vr string, vl uint32) bool {
	if vr == "SQ" || (vl == undefinedLength && t != tagPixelData) {
		return true
	}
	if s.implicit {
		info, err := tag.Find(tag.Tag{Group: uint16(t >> 16), Element: uint16(t)})
		return err == nil && len(info.VRs) > 0 && info.VRs[0] == "SQ"
	}
	return false
}

// element checks the element at off and returns where it ends.
func (s *scanner) element(off, depth int) (int, error) {
	if depth > maxDepth {
		return 0, fmt.Errorf("sequences nested deeper than %d", maxDepth)
	}
	t, vr, hl, vl, err := s.header(off)
	if err != nil {
		return 0, err
	}
	start := off + hl
	if !s.isSequence(t, vr, vl) {
		if vl == undefinedLength {
			return 0, fmt.Errorf("element (%04X,%04X) of undefined length", t>>16, t&0xFFFF)
		}
		if uint64(vl) > uint64(len(s.b)-start) {
			return 0, errShort
		}
		return start + int(vl), nil
	}
	if vr == "UN" {
		// A sequence of unknown VR is encoded in Implicit VR Little Endian.
		inner := scanner{b: s.b, bo: binary.LittleEndian, implicit: true}
		return inner.items(start, vl, depth+1)
	}
	return s.items(start, vl, depth+1)
}

// items walks a sequence's items from off; vl is its length or undefined.
func (s *scanner) items(off int, vl uint32, depth int) (int, error) {
	limit := len(s.b)
	if vl != undefinedLength {
		if uint64(vl) > uint64(len(s.b)-off) {
			return 0, errShort
		}
		limit = off + int(vl)
	}
	for off < limit {
		t, _, _, il, err := s.header(off)
		if err != nil {
			return 0, err
		}
		off += 8
		switch {
		case t == tagSeqDelim && vl == undefinedLength:
			return off, nil
		case t != tagItem:
			return 0, fmt.Errorf("(%04X,%04X) where a sequence item was expected", t>>16, t&0xFFFF)
		case il == undefinedLength:
			for {
				it, _, _, _, err := s.header(off)
				if err != nil {
					return 0, err
				}
				if it == tagItemDelim {
					off += 8
					break
				}
				if off, err = s.element(off, depth); err != nil {
					return 0, err
				}
			}
		default:
			if uint64(il) > uint64(limit-off) {
				return 0, errShort
			}
			end := off + int(il)
			for off < end {
				if off, err = s.element(off, depth); err != nil {
					return 0, err
				}
			}
			if off != end {
				return 0, errors.New("item contents overrun the item")
			}
		}
	}
	if vl == undefinedLength {
		return 0, errShort
	}
	if off != limit {
		return 0, errors.New("sequence contents overrun the sequence")
	}
	return off, nil
}
