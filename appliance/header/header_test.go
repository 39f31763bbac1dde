package header

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/relais/relais/appliance/part10"
	"github.com/relais/relais/testdata/dcmgen"
)

func readDataSet(t testing.TB, path string) (string, []byte) {
	t.Helper()
	m, b, err := part10.ReadDataSet(path)
	if err != nil {
		t.Fatal(err)
	}
	return m.TransferSyntaxUID, b
}

func pydicom(t testing.TB, name string) string {
	p := filepath.Join("/usr/lib/python3/dist-packages/pydicom/data/test_files", name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("pydicom test files not installed (bash .ci/run installs python3-pydicom): %v", err)
	}
	return p
}

func TestGeneratedInstanceHeaderIsRead(t *testing.T) {
	for _, ts := range []string{dcmgen.ExplicitVRLittleEndian, dcmgen.ImplicitVRLittleEndian} {
		in := dcmgen.Instance{Rows: 64, Columns: 64, InstanceNumber: 7, SeriesNumber: 3, TransferSyntax: ts, PatientName: "Doe^Jane"}.Defaults()
		var buf bytes.Buffer
		in.Write(&buf)
		m, n, br, _ := part10.ReadHeader(&buf)
		_ = n
		ds, _ := io.ReadAll(br)
		h, err := Parse(m.TransferSyntaxUID, ds)
		if err != nil {
			t.Fatalf("%s: %v", ts, err)
		}
		if h.SOPInstanceUID != in.SOPInstanceUID || h.StudyInstanceUID != in.StudyInstanceUID || h.SeriesInstanceUID != in.SeriesInstanceUID ||
			h.PatientName != "Doe^Jane" || h.Modality != "CT" || h.InstanceNumber != 7 || h.SeriesNumber != 3 || h.SOPClassUID != in.SOPClassUID {
			t.Fatalf("%s: header %+v", ts, h)
		}
	}
}

func TestPydicomFilesInEverySyntaxAreRead(t *testing.T) {
	for _, name := range []string{"CT_small.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm", "MR_small_RLE.dcm",
		"JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm", "MR_small_implicit.dcm", "rtplan.dcm"} {
		t.Run(name, func(t *testing.T) {
			ts, ds := readDataSet(t, pydicom(t, name))
			h, err := Parse(ts, ds)
			if err != nil {
				t.Fatalf("%s (%s): %v", name, ts, err)
			}
			if h.SOPInstanceUID == "" || h.SOPClassUID == "" {
				t.Fatalf("%s: no UIDs: %+v", name, h)
			}
		})
	}
}

// These files have private and UN sequences (undefined lengths, implicit
// inside explicit) and no SOP Instance UID: what precedes and follows the
// sequences is read, and the missing UID is an error.
func TestPrivateAndUNSequencesAreWalked(t *testing.T) {
	for _, name := range []string{"nested_priv_SQ.dcm", "priv_SQ.dcm", "UN_sequence.dcm"} {
		ts, ds := readDataSet(t, pydicom(t, name))
		h, err := Parse(ts, ds)
		if err == nil || h == nil {
			t.Fatalf("%s: %v %+v", name, err, h)
		}
	}
}

func TestCharacterSetsAreDecoded(t *testing.T) {
	dir := filepath.Join("/usr/lib/python3/dist-packages/pydicom/data/charset_files")
	f := filepath.Join(dir, "chrFren.dcm")
	if _, err := os.Stat(f); err != nil {
		t.Skipf("pydicom charset files not installed: %v", err)
	}
	ts, ds := readDataSet(t, f)
	h, err := Parse(ts, ds)
	if err != nil {
		t.Fatal(err)
	}
	if h.PatientName != "Buc^Jérôme" {
		t.Fatalf("patient name %q, want Buc^Jérôme", h.PatientName)
	}
}

func TestTruncatedPrefixGivesTheElementsThatFit(t *testing.T) {
	in := dcmgen.Instance{Rows: 64, Columns: 64}.Defaults()
	var buf bytes.Buffer
	in.Write(&buf)
	m, _, br, _ := part10.ReadHeader(&buf)
	ds, _ := io.ReadAll(br)
	// Cut inside Patient ID, after SOP Instance UID.
	i := bytes.Index(ds, []byte("RELAIS-TEST"))
	h, err := Parse(m.TransferSyntaxUID, ds[:i+3])
	if err != nil || h.SOPInstanceUID != in.SOPInstanceUID || h.PatientID != "" {
		t.Fatalf("%v %+v", err, h)
	}
}

func TestDeclaredHugeLengthsAreNotTrusted(t *testing.T) {
	var b []byte
	el := func(g, e uint16, vr string, v []byte) {
		b = binary.LittleEndian.AppendUint16(b, g)
		b = binary.LittleEndian.AppendUint16(b, e)
		b = append(b, vr...)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
		b = append(b, v...)
	}
	el(0x0008, 0x0018, "UI", []byte("1.2.3."))
	// A private OB declaring 4 GB with 10 bytes behind it.
	b = append(b, 0x09, 0x00, 0x10, 0x10, 'O', 'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xF0)
	b = append(b, make([]byte, 10)...)
	h, err := Parse(dcmgen.ExplicitVRLittleEndian, b)
	if err != nil || h.SOPInstanceUID != "1.2.3." && h.SOPInstanceUID != "1.2.3" {
		t.Fatalf("%v %+v", err, h)
	}
	// A sequence declaring more than it holds.
	b = b[:14]
	b = append(b, 0x09, 0x00, 0x20, 0x10, 'S', 'Q', 0, 0, 0x00, 0x01, 0, 0, 0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0x7F)
	if _, err := Parse(dcmgen.ExplicitVRLittleEndian, b); err != nil {
		t.Fatalf("cut-off sequence: %v", err)
	}
}

func TestGarbageIsAnErrorNotAPanic(t *testing.T) {
	for _, b := range [][]byte{nil, {1, 2, 3}, bytes.Repeat([]byte{0xFF}, 100), []byte("this is not dicom at all, just text....")} {
		if h, err := Parse(dcmgen.ExplicitVRLittleEndian, b); err == nil && h.SOPInstanceUID != "" {
			t.Fatalf("garbage %q read as %+v", b, h)
		}
	}
}

func FuzzParse(f *testing.F) {
	in := dcmgen.Instance{Rows: 4, Columns: 4}.Defaults()
	var buf bytes.Buffer
	in.Write(&buf)
	_, _, br, _ := part10.ReadHeader(&buf)
	ds, _ := io.ReadAll(br)
	f.Add(ds, uint8(0))
	f.Add(ds[:200], uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, syntax uint8) {
		ts := []string{explicitLE, implicitLE, explicitBE, deflated}[syntax%4]
		Parse(ts, b)
	})
}
