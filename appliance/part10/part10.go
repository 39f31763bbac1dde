// Package part10 reads and writes the DICOM file meta information (PS3.10
// 7.1): the 128-byte preamble, "DICM" and group 0002 in Explicit VR Little
// Endian. Only the header is handled here; the data set after it is bytes.
package part10

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Meta is the file meta information Relais reads and writes.
type Meta struct {
	MediaStorageSOPClassUID    string
	MediaStorageSOPInstanceUID string
	TransferSyntaxUID          string
	ImplementationClassUID     string
	ImplementationVersionName  string
	SourceAETitle              string
}

// maxHeader bounds the meta information read from a file.
const maxHeader = 64 << 10

func appendElement(b []byte, elem uint16, vr string, v []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, 0x0002)
	b = binary.LittleEndian.AppendUint16(b, elem)
	b = append(b, vr...)
	if vr == "OB" {
		b = append(b, 0, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	} else {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	}
	return append(b, v...)
}

func pad(s string, c byte) []byte {
	b := []byte(s)
	if len(b)%2 == 1 {
		b = append(b, c)
	}
	return b
}

// AppendHeader appends preamble, prefix and meta information group to b.
func AppendHeader(b []byte, m Meta) []byte {
	var g []byte
	g = appendElement(g, 0x0001, "OB", []byte{0, 1})
	g = appendElement(g, 0x0002, "UI", pad(m.MediaStorageSOPClassUID, 0))
	g = appendElement(g, 0x0003, "UI", pad(m.MediaStorageSOPInstanceUID, 0))
	g = appendElement(g, 0x0010, "UI", pad(m.TransferSyntaxUID, 0))
	g = appendElement(g, 0x0012, "UI", pad(m.ImplementationClassUID, 0))
	if m.ImplementationVersionName != "" {
		g = appendElement(g, 0x0013, "SH", pad(m.ImplementationVersionName, ' '))
	}
	if m.SourceAETitle != "" {
		g = appendElement(g, 0x0016, "AE", pad(m.SourceAETitle, ' '))
	}
	b = append(b, make([]byte, 128)...)
	b = append(b, "DICM"...)
	b = appendElement(b, 0x0000, "UL", binary.LittleEndian.AppendUint32(nil, uint32(len(g))))
	return append(b, g...)
}

// ErrNotPart10 means the stream has no "DICM" prefix after the preamble.
var ErrNotPart10 = errors.New("not a DICOM Part 10 file")

// ReadHeader reads the meta information from r and returns it with the
// number of bytes it took: the data set starts there. r is read through a
// bufio.Reader, which is returned so the caller can go on reading the data set.
func ReadHeader(r io.Reader) (Meta, int64, *bufio.Reader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(r)
	}
	var m Meta
	pre := make([]byte, 132)
	if _, err := io.ReadFull(br, pre); err != nil {
		return m, 0, br, fmt.Errorf("read preamble: %w", err)
	}
	if string(pre[128:]) != "DICM" {
		return m, 0, br, ErrNotPart10
	}
	off := int64(132)
	for {
		h, err := br.Peek(8)
		if err != nil {
			if errors.Is(err, io.EOF) && len(h) == 0 {
				break // a file with no data set
			}
			return m, off, br, fmt.Errorf("read meta element: %w", err)
		}
		if binary.LittleEndian.Uint16(h[0:2]) != 0x0002 {
			break
		}
		elem := binary.LittleEndian.Uint16(h[2:4])
		vr := string(h[4:6])
		var n uint32
		hdr := 8
		switch vr {
		case "OB", "OW", "OF", "SQ", "UT", "UN", "UC", "UR", "OD", "OL", "OV", "SV", "UV":
			h, err = br.Peek(12)
			if err != nil {
				return m, off, br, fmt.Errorf("read meta element: %w", err)
			}
			n = binary.LittleEndian.Uint32(h[8:12])
			hdr = 12
		default:
			n = uint32(binary.LittleEndian.Uint16(h[6:8]))
		}
		if off+int64(hdr)+int64(n) > maxHeader {
			return m, off, br, fmt.Errorf("meta information larger than %d bytes", maxHeader)
		}
		el := make([]byte, hdr+int(n))
		if _, err := io.ReadFull(br, el); err != nil {
			return m, off, br, fmt.Errorf("read meta element (0002,%04X): %w", elem, err)
		}
		off += int64(len(el))
		v := strings.TrimRight(string(el[hdr:]), " \x00")
		switch elem {
		case 0x0002:
			m.MediaStorageSOPClassUID = v
		case 0x0003:
			m.MediaStorageSOPInstanceUID = v
		case 0x0010:
			m.TransferSyntaxUID = v
		case 0x0012:
			m.ImplementationClassUID = v
		case 0x0013:
			m.ImplementationVersionName = v
		case 0x0016:
			m.SourceAETitle = v
		}
	}
	if m.TransferSyntaxUID == "" {
		return m, off, br, errors.New("meta information has no transfer syntax")
	}
	return m, off, br, nil
}

// dataSetFile is a file read from its data set on.
type dataSetFile struct {
	*bufio.Reader
	f *os.File
}

func (d dataSetFile) Close() error { return d.f.Close() }

// OpenDataSet opens a Part 10 file and returns its meta information and a
// reader positioned at the start of its data set.
func OpenDataSet(path string) (Meta, io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return Meta{}, nil, err
	}
	m, _, br, err := ReadHeader(f)
	if err != nil {
		f.Close()
		return m, nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, dataSetFile{br, f}, nil
}

// ReadDataSet reads a whole Part 10 file's meta information and data set
// (for small files and tests; forwarding streams with OpenDataSet).
func ReadDataSet(path string) (Meta, []byte, error) {
	m, rc, err := OpenDataSet(path)
	if err != nil {
		return m, nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return m, nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, b, nil
}
