package dimse

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// Command fields (PS3.7 E.1).
const (
	CStoreRQ        uint16 = 0x0001
	CStoreRSP       uint16 = 0x8001
	CEchoRQ         uint16 = 0x0030
	CEchoRSP        uint16 = 0x8030
	NEventReportRQ  uint16 = 0x0100
	NEventReportRSP uint16 = 0x8100
	NActionRQ       uint16 = 0x0130
	NActionRSP      uint16 = 0x8130

	noDataSet uint16 = 0x0101 // CommandDataSetType: no data set follows
)

// Command-set element tags (group 0000), as group<<16|element.
const (
	tagGroupLength          uint32 = 0x00000000
	tagAffectedSOPClass     uint32 = 0x00000002
	tagRequestedSOPClass    uint32 = 0x00000003
	tagCommandField         uint32 = 0x00000100
	tagMessageID            uint32 = 0x00000110
	tagMessageIDRespondedTo uint32 = 0x00000120
	tagMoveDestination      uint32 = 0x00000600
	tagPriority             uint32 = 0x00000700
	tagDataSetType          uint32 = 0x00000800
	tagStatus               uint32 = 0x00000900
	tagErrorComment         uint32 = 0x00000902
	tagAffectedSOPInstance  uint32 = 0x00001000
	tagRequestedSOPInstance uint32 = 0x00001001
	tagEventTypeID          uint32 = 0x00001002
	tagActionTypeID         uint32 = 0x00001008
	tagMoveOriginatorAE     uint32 = 0x00001030
	tagMoveOriginatorMsgID  uint32 = 0x00001031
)

// Command is a decoded DIMSE command set. Only the fields this stack uses
// are kept; others are skipped on decode.
type Command struct {
	Field                     uint16
	MessageID                 uint16
	MessageIDBeingRespondedTo uint16
	AffectedSOPClassUID       string
	RequestedSOPClassUID      string
	AffectedSOPInstanceUID    string
	RequestedSOPInstanceUID   string
	Priority                  uint16
	HasDataSet                bool
	Status                    Status
	ErrorComment              string
	EventTypeID               uint16
	ActionTypeID              uint16
	MoveOriginatorAE          string
	MoveOriginatorMessageID   uint16
}

// IsResponse reports whether the command is a response (bit 15 set).
func (c *Command) IsResponse() bool { return c.Field&0x8000 != 0 }

// SOPClassUID is the affected or, for N-ACTION, the requested SOP class.
func (c *Command) SOPClassUID() string {
	if c.AffectedSOPClassUID != "" {
		return c.AffectedSOPClassUID
	}
	return c.RequestedSOPClassUID
}

// SOPInstanceUID is the affected or requested SOP instance.
func (c *Command) SOPInstanceUID() string {
	if c.AffectedSOPInstanceUID != "" {
		return c.AffectedSOPInstanceUID
	}
	return c.RequestedSOPInstanceUID
}

type element struct {
	tag   uint32
	value []byte
}

func usValue(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }

// padded returns s padded to even length with pad (NUL for UI, space for text).
func padded(s string, pad byte) []byte {
	b := []byte(s)
	if len(b)%2 == 1 {
		b = append(b, pad)
	}
	return b
}

// encodeCommand writes the command set in Implicit VR Little Endian, as
// PS3.7 6.3.1 requires, with (0000,0000) group length first.
func encodeCommand(c *Command) []byte {
	els := []element{{tagCommandField, usValue(c.Field)}}
	add := func(tag uint32, s string, pad byte) {
		if s != "" {
			els = append(els, element{tag, padded(s, pad)})
		}
	}
	add(tagAffectedSOPClass, c.AffectedSOPClassUID, 0)
	add(tagRequestedSOPClass, c.RequestedSOPClassUID, 0)
	add(tagAffectedSOPInstance, c.AffectedSOPInstanceUID, 0)
	add(tagRequestedSOPInstance, c.RequestedSOPInstanceUID, 0)
	add(tagErrorComment, c.ErrorComment, ' ')
	dst := noDataSet
	if c.HasDataSet {
		dst = 0x0000
	}
	els = append(els, element{tagDataSetType, usValue(dst)})
	if c.IsResponse() {
		els = append(els,
			element{tagMessageIDRespondedTo, usValue(c.MessageIDBeingRespondedTo)},
			element{tagStatus, usValue(uint16(c.Status))})
	} else {
		els = append(els, element{tagMessageID, usValue(c.MessageID)})
	}
	switch c.Field {
	case CStoreRQ:
		els = append(els, element{tagPriority, usValue(c.Priority)})
		if c.MoveOriginatorAE != "" {
			add(tagMoveOriginatorAE, c.MoveOriginatorAE, ' ')
			els = append(els, element{tagMoveOriginatorMsgID, usValue(c.MoveOriginatorMessageID)})
		}
	case NEventReportRQ, NEventReportRSP:
		els = append(els, element{tagEventTypeID, usValue(c.EventTypeID)})
	case NActionRQ, NActionRSP:
		els = append(els, element{tagActionTypeID, usValue(c.ActionTypeID)})
	}
	sort.Slice(els, func(i, j int) bool { return els[i].tag < els[j].tag })

	size := 0
	for _, e := range els {
		size += 8 + len(e.value)
	}
	b := make([]byte, 0, 12+size)
	b = appendImplicit(b, tagGroupLength, binary.LittleEndian.AppendUint32(nil, uint32(size)))
	for _, e := range els {
		b = appendImplicit(b, e.tag, e.value)
	}
	return b
}

func appendImplicit(b []byte, tag uint32, v []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(tag>>16))
	b = binary.LittleEndian.AppendUint16(b, uint16(tag))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// decodeCommand parses an Implicit VR Little Endian command set. Unknown
// elements are skipped; elements of the wrong size are errors.
func decodeCommand(b []byte) (*Command, error) {
	c := &Command{}
	seenField := false
	for len(b) > 0 {
		if len(b) < 8 {
			return nil, fmt.Errorf("command set: truncated element header")
		}
		tag := uint32(binary.LittleEndian.Uint16(b[0:2]))<<16 | uint32(binary.LittleEndian.Uint16(b[2:4]))
		n := binary.LittleEndian.Uint32(b[4:8])
		if uint64(n) > uint64(len(b)-8) {
			return nil, fmt.Errorf("command set: element (%04X,%04X) length %d exceeds command", tag>>16, tag&0xFFFF, n)
		}
		v := b[8 : 8+n]
		b = b[8+n:]
		if tag>>16 != 0 {
			return nil, fmt.Errorf("command set: element (%04X,%04X) outside group 0000", tag>>16, tag&0xFFFF)
		}
		us := func(dst *uint16) error {
			if len(v) != 2 {
				return fmt.Errorf("command set: element (0000,%04X) has %d bytes, want 2", tag&0xFFFF, len(v))
			}
			*dst = binary.LittleEndian.Uint16(v)
			return nil
		}
		var err error
		switch tag {
		case tagCommandField:
			err = us(&c.Field)
			seenField = true
		case tagMessageID:
			err = us(&c.MessageID)
		case tagMessageIDRespondedTo:
			err = us(&c.MessageIDBeingRespondedTo)
		case tagAffectedSOPClass:
			c.AffectedSOPClassUID = trimUID(v)
		case tagRequestedSOPClass:
			c.RequestedSOPClassUID = trimUID(v)
		case tagAffectedSOPInstance:
			c.AffectedSOPInstanceUID = trimUID(v)
		case tagRequestedSOPInstance:
			c.RequestedSOPInstanceUID = trimUID(v)
		case tagPriority:
			err = us(&c.Priority)
		case tagDataSetType:
			var t uint16
			err = us(&t)
			c.HasDataSet = t != noDataSet
		case tagStatus:
			var s uint16
			err = us(&s)
			c.Status = Status(s)
		case tagErrorComment:
			c.ErrorComment = trimAE(v)
		case tagEventTypeID:
			err = us(&c.EventTypeID)
		case tagActionTypeID:
			err = us(&c.ActionTypeID)
		case tagMoveOriginatorAE:
			c.MoveOriginatorAE = trimAE(v)
		case tagMoveOriginatorMsgID:
			err = us(&c.MoveOriginatorMessageID)
		}
		if err != nil {
			return nil, err
		}
	}
	if !seenField {
		return nil, fmt.Errorf("command set: no command field (0000,0100)")
	}
	return c, nil
}
