package dimse

import (
	"bytes"
	"crypto/sha256"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relais/relais/testdata/dcmgen"
	"github.com/relais/relais/testdata/peers"
)

// recordingSCP serves a Relais SCP that accepts any storage class in any
// transfer syntax the sender proposes first, and records what arrives.
func recordingSCP(t *testing.T, cfg Config) (host, port string, rec *recorder) {
	rec = newRecorder(true)
	cfg.Logger = testLogger(t)
	addr := startServer(t, &Server{
		Policy:   &StaticPolicy{CalledAETitles: []string{"RELAIS"}},
		Handlers: Handlers{Store: rec.store},
		Config:   cfg,
	})
	host, port, _ = net.SplitHostPort(addr)
	return host, port, rec
}

// checkReceived asserts the SCP got exactly the file's data set, in the
// file's transfer syntax.
func checkReceived(t *testing.T, rec *recorder, path string) {
	t.Helper()
	m, want := dataSet(t, path)
	rec.mu.Lock()
	got, ok := rec.data[m.MediaStorageSOPInstanceUID]
	rcv := rec.got[m.MediaStorageSOPInstanceUID]
	rec.mu.Unlock()
	if !ok {
		t.Fatalf("%s: instance %s not received", filepath.Base(path), m.MediaStorageSOPInstanceUID)
	}
	if rcv.req.TransferSyntaxUID != m.TransferSyntaxUID {
		t.Errorf("%s: received in %s, file is %s", filepath.Base(path), rcv.req.TransferSyntaxUID, m.TransferSyntaxUID)
	}
	if m.TransferSyntaxUID == DeflatedExplicitVRLittleEndian && len(want)%2 == 1 {
		// PS3.5 A.5: a deflated stream of odd length is sent with one
		// trailing zero byte (DCMTK writes the file without it).
		want = append(want, 0)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: received %d bytes (sha256 %x), file's data set is %d bytes (sha256 %x)",
			filepath.Base(path), len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
}

func TestEchoscuGetsSuccess(t *testing.T) {
	peers.Require(t, "echoscu")
	host, port, _ := recordingSCP(t, Config{})
	out, err := peers.DCMTK(t, "echoscu", "-aec", "RELAIS", "-aet", "ECHOSCU", host, port)
	if err != nil {
		t.Fatalf("echoscu: %v\n%s", err, out)
	}
}

func TestEchoscuToAnotherAETitleIsRejected(t *testing.T) {
	peers.Require(t, "echoscu")
	host, port, _ := recordingSCP(t, Config{})
	out, err := peers.DCMTK(t, "echoscu", "-aec", "NOTRELAIS", "-aet", "ECHOSCU", host, port)
	if err == nil || !strings.Contains(string(out), "Called AE Title Not Recognized") {
		t.Fatalf("echoscu with a wrong called AE: err %v, output:\n%s", err, out)
	}
}

// TestStorescuEveryUncompressedSyntaxArrivesBitExact converts a generated CT
// to each uncompressed transfer syntax with dcmconv, sends it with storescu
// proposing only that syntax, and compares the received data set bytes.
func TestStorescuEveryUncompressedSyntaxArrivesBitExact(t *testing.T) {
	peers.Require(t, "storescu", "dcmconv")
	dir := t.TempDir()
	src := filepath.Join(dir, "src.dcm")
	if _, err := (dcmgen.Instance{Rows: 256, Columns: 256, Seed: 7}).WriteFile(src); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, conv, propose, ts string }{
		{"implicit-le", "+ti", "-xi", ImplicitVRLittleEndian},
		{"explicit-le", "+te", "-xe", ExplicitVRLittleEndian},
		{"explicit-be", "+tb", "-xb", ExplicitVRBigEndian},
		{"deflated", "+td", "-xd", DeflatedExplicitVRLittleEndian},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, tc.name+".dcm")
			if out, err := peers.DCMTK(t, "dcmconv", tc.conv, src, f); err != nil {
				t.Fatalf("dcmconv: %v\n%s", err, out)
			}
			host, port, rec := recordingSCP(t, Config{MaxPDULength: 16384})
			out, err := peers.DCMTK(t, "storescu", tc.propose, "-aec", "RELAIS", "-aet", "STORESCU", host, port, f)
			if err != nil {
				t.Fatalf("storescu: %v\n%s", err, out)
			}
			checkReceived(t, rec, f)
			m, _ := dataSet(t, f)
			if m.TransferSyntaxUID != tc.ts {
				t.Errorf("dcmconv made %s, want %s", m.TransferSyntaxUID, tc.ts)
			}
		})
	}
}

// TestDcmsendCompressedFilesArriveBitExact sends JPEG baseline, JPEG
// lossless, RLE and JPEG 2000 files in their own transfer syntaxes.
func TestDcmsendCompressedFilesArriveBitExact(t *testing.T) {
	peers.Require(t, "dcmsend", "dcmcjpeg", "dcmcrle")
	dir := t.TempDir()
	src := filepath.Join(dir, "src.dcm")
	if _, err := (dcmgen.Instance{Rows: 128, Columns: 128, Seed: 9}).WriteFile(src); err != nil {
		t.Fatal(err)
	}
	lossless := filepath.Join(dir, "jpeg-lossless.dcm")
	if out, err := peers.DCMTK(t, "dcmcjpeg", "+e1", src, lossless); err != nil {
		t.Fatalf("dcmcjpeg: %v\n%s", err, out)
	}
	extended := filepath.Join(dir, "jpeg-extended.dcm")
	if out, err := peers.DCMTK(t, "dcmcjpeg", "+ee", src, extended); err != nil {
		t.Fatalf("dcmcjpeg: %v\n%s", err, out)
	}
	rle := filepath.Join(dir, "rle.dcm")
	if out, err := peers.DCMTK(t, "dcmcrle", src, rle); err != nil {
		t.Fatalf("dcmcrle: %v\n%s", err, out)
	}
	// DCMTK re-encodes what it reads (item lengths) and drops Data Set
	// Trailing Padding when it sends: pydicom's files are first rewritten by
	// DCMTK's own writer, in their own transfer syntax and without padding,
	// so what dcmsend puts on the wire is exactly the file's data set.
	normalized := func(name string) string {
		f := filepath.Join(dir, name)
		if out, err := peers.DCMTK(t, "dcmconv", "-p", pydicomFile(t, name), f); err != nil {
			t.Fatalf("dcmconv: %v\n%s", err, out)
		}
		return f
	}
	files := map[string]string{
		"1.2.840.10008.1.2.4.50": normalized("SC_rgb_jpeg_dcmtk.dcm"), // JPEG baseline
		"1.2.840.10008.1.2.4.70": lossless,                            // JPEG lossless SV1
		"1.2.840.10008.1.2.4.51": extended,                            // JPEG extended
		"1.2.840.10008.1.2.5":    rle,                                 // RLE
		"1.2.840.10008.1.2.4.90": normalized("MR_small_jp2klossless.dcm"),
		"1.2.840.10008.1.2.4.91": normalized("JPEG2000.dcm"),
	}
	for ts, f := range files {
		if m, _ := dataSet(t, f); m.TransferSyntaxUID != ts {
			t.Fatalf("%s is in %s, want %s", f, m.TransferSyntaxUID, ts)
		}
	}
	extra := []string{normalized("MR_small_RLE.dcm"), normalized("SC_rgb_rle.dcm")}
	var all []string
	for _, f := range files {
		all = append(all, f)
	}
	all = append(all, extra...)
	for _, f := range all {
		// One run per file: several share a SOP Instance UID.
		host, port, rec := recordingSCP(t, Config{})
		out, err := peers.DCMTK(t, "dcmsend", "-aec", "RELAIS", "-aet", "DCMSEND", host, port, f)
		if err != nil {
			t.Fatalf("dcmsend %s: %v\n%s", f, err, out)
		}
		checkReceived(t, rec, f)
	}
}
