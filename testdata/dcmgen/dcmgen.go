// Package dcmgen writes realistic, deterministic DICOM Part 10 files for
// tests and benchmarks: valid UIDs and headers, 16-bit pixel data like noise
// over smooth structure. Large corpora are generated, never committed.
package dcmgen

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"os"
	"strconv"

	"github.com/relais/relais/appliance/part10"
)

// SOP classes and transfer syntaxes the generator writes.
const (
	CTImageStorage             = "1.2.840.10008.5.1.4.1.1.2"
	MultiFrameGrayscaleWordSC  = "1.2.840.10008.5.1.4.1.1.7.3"
	SecondaryCaptureStorage    = "1.2.840.10008.5.1.4.1.1.7"
	ExplicitVRLittleEndian     = "1.2.840.10008.1.2.1"
	ImplicitVRLittleEndian     = "1.2.840.10008.1.2"
	generatorImplementationUID = "2.25.233920837491093547136512283018416207442"
)

// UID derives a stable 2.25 UID from any text.
func UID(parts ...any) string {
	h := sha256.Sum256([]byte(fmt.Sprint(parts...)))
	return "2.25." + new(big.Int).SetBytes(h[:16]).String()
}

// Instance describes one generated instance; zero fields get defaults.
type Instance struct {
	TransferSyntax    string // Explicit (default) or Implicit VR Little Endian
	SOPClassUID       string
	SOPInstanceUID    string
	StudyInstanceUID  string
	SeriesInstanceUID string
	PatientID         string
	PatientName       string
	StudyDate         string
	AccessionNumber   string
	StudyDescription  string
	Modality          string
	SeriesNumber      int
	InstanceNumber    int
	Rows, Columns     int
	Frames            int
	Seed              uint64
}

func (in Instance) withDefaults() Instance {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&in.TransferSyntax, ExplicitVRLittleEndian)
	def(&in.SOPClassUID, CTImageStorage)
	def(&in.StudyInstanceUID, UID("study", in.Seed))
	def(&in.SeriesInstanceUID, UID("series", in.Seed))
	def(&in.SOPInstanceUID, UID("instance", in.Seed, in.SeriesInstanceUID, in.InstanceNumber))
	def(&in.PatientID, "RELAIS-TEST")
	def(&in.PatientName, "Test^Patient")
	def(&in.StudyDate, "20261122")
	def(&in.AccessionNumber, "ACC"+strconv.FormatUint(in.Seed%1000000, 10))
	def(&in.StudyDescription, "CT generated")
	def(&in.Modality, "CT")
	if in.Rows == 0 {
		in.Rows = 512
	}
	if in.Columns == 0 {
		in.Columns = 512
	}
	if in.Frames == 0 {
		in.Frames = 1
	}
	if in.SeriesNumber == 0 {
		in.SeriesNumber = 1
	}
	return in
}

// CTSeries describes n slices of one series; size is rows*columns*2 bytes of pixels each.
func CTSeries(n, rows, columns int, seed uint64) []Instance {
	out := make([]Instance, n)
	for i := range out {
		out[i] = Instance{Rows: rows, Columns: columns, InstanceNumber: i + 1, Seed: seed}.withDefaults()
	}
	return out
}

// Defaults returns the instance with its defaults filled in (UIDs included).
func (in Instance) Defaults() Instance { return in.withDefaults() }

type encoder struct {
	w        *bufio.Writer
	explicit bool
	n        int64
	err      error
}

func (e *encoder) write(b []byte) {
	if e.err != nil {
		return
	}
	m, err := e.w.Write(b)
	e.n += int64(m)
	e.err = err
}

func (e *encoder) header(group, elem uint16, vr string, n uint32) {
	var b [12]byte
	binary.LittleEndian.PutUint16(b[0:], group)
	binary.LittleEndian.PutUint16(b[2:], elem)
	switch {
	case !e.explicit:
		binary.LittleEndian.PutUint32(b[4:], n)
		e.write(b[:8])
	case vr == "OW" || vr == "OB":
		copy(b[4:], vr)
		binary.LittleEndian.PutUint32(b[8:], n)
		e.write(b[:12])
	default:
		copy(b[4:], vr)
		binary.LittleEndian.PutUint16(b[6:], uint16(n))
		e.write(b[:8])
	}
}

func (e *encoder) str(group, elem uint16, vr, s string) {
	b := []byte(s)
	if len(b)%2 == 1 {
		if vr == "UI" {
			b = append(b, 0)
		} else {
			b = append(b, ' ')
		}
	}
	e.header(group, elem, vr, uint32(len(b)))
	e.write(b)
}

func (e *encoder) us(group, elem uint16, v uint16) {
	e.header(group, elem, "US", 2)
	e.write(binary.LittleEndian.AppendUint16(nil, v))
}

// Write writes the instance as a Part 10 file and returns its size.
func (in Instance) Write(w io.Writer) (int64, error) {
	in = in.withDefaults()
	e := &encoder{w: bufio.NewWriterSize(w, 256<<10), explicit: in.TransferSyntax == ExplicitVRLittleEndian}
	e.write(part10.AppendHeader(nil, part10.Meta{
		MediaStorageSOPClassUID:    in.SOPClassUID,
		MediaStorageSOPInstanceUID: in.SOPInstanceUID,
		TransferSyntaxUID:          in.TransferSyntax,
		ImplementationClassUID:     generatorImplementationUID,
		ImplementationVersionName:  "RELAIS_GEN",
	}))
	e.str(0x0008, 0x0016, "UI", in.SOPClassUID)
	e.str(0x0008, 0x0018, "UI", in.SOPInstanceUID)
	e.str(0x0008, 0x0020, "DA", in.StudyDate)
	e.str(0x0008, 0x0050, "SH", in.AccessionNumber)
	e.str(0x0008, 0x0060, "CS", in.Modality)
	e.str(0x0008, 0x1030, "LO", in.StudyDescription)
	e.str(0x0010, 0x0010, "PN", in.PatientName)
	e.str(0x0010, 0x0020, "LO", in.PatientID)
	e.str(0x0020, 0x000D, "UI", in.StudyInstanceUID)
	e.str(0x0020, 0x000E, "UI", in.SeriesInstanceUID)
	e.str(0x0020, 0x0011, "IS", strconv.Itoa(in.SeriesNumber))
	e.str(0x0020, 0x0013, "IS", strconv.Itoa(in.InstanceNumber))
	e.us(0x0028, 0x0002, 1)
	e.str(0x0028, 0x0004, "CS", "MONOCHROME2")
	if in.Frames > 1 {
		e.str(0x0028, 0x0008, "IS", strconv.Itoa(in.Frames))
	}
	e.us(0x0028, 0x0010, uint16(in.Rows))
	e.us(0x0028, 0x0011, uint16(in.Columns))
	e.us(0x0028, 0x0100, 16)
	e.us(0x0028, 0x0101, 12)
	e.us(0x0028, 0x0102, 11)
	e.us(0x0028, 0x0103, 0)
	n := in.Rows * in.Columns * in.Frames * 2
	e.header(0x7FE0, 0x0010, "OW", uint32(n))
	in.pixels(e)
	if e.err == nil {
		e.err = e.w.Flush()
	}
	return e.n, e.err
}

// pixels writes a smooth disc with noise on it, frame by frame, one row
// at a time: memory does not grow with the image.
func (in Instance) pixels(e *encoder) {
	row := make([]byte, in.Columns*2)
	s := in.Seed*0x9E3779B97F4A7C15 + uint64(in.InstanceNumber) + 1
	cx, cy := in.Columns/2, in.Rows/2
	r2 := (min(in.Rows, in.Columns) * 2 / 5) * (min(in.Rows, in.Columns) * 2 / 5)
	for f := 0; f < in.Frames && e.err == nil; f++ {
		for y := 0; y < in.Rows; y++ {
			for x := 0; x < in.Columns; x++ {
				s ^= s << 13
				s ^= s >> 7
				s ^= s << 17
				v := 100 + (x+y+f)%64
				if dx, dy := x-cx, y-cy; dx*dx+dy*dy < r2 {
					v += 900 + (dx*dx+dy*dy)/512
				}
				v += int(s & 31)
				binary.LittleEndian.PutUint16(row[2*x:], uint16(v&0x0FFF))
			}
			e.write(row)
		}
	}
}

// WriteFile writes the instance to path.
func (in Instance) WriteFile(path string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	n, err := in.Write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("write %s: %w", path, err)
	}
	return n, nil
}
