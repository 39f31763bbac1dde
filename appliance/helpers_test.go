package appliance

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/appliance/part10"
	"github.com/relais/relais/store"
	"github.com/relais/relais/testdata/dcmgen"
	"github.com/relais/relais/testdata/peers"
)

// box is a relaisd running in the test process, with a real store, a real
// DICOM port and the real control socket.
type box struct {
	t      testing.TB
	a      *Appliance
	dir    string
	port   int
	client *control.Client
	cancel context.CancelFunc
	done   chan error
}

type boxOptions struct {
	dir     string
	store   *store.Options
	metrics string        // Options.MetricsAddr
	log     io.Writer     // the process log, at level Info; nil: stderr
	probe   time.Duration // Options.ProbeEvery

	sshConsole       string // Options.SSHConsole
	consoleKeysImage string // Options.ConsoleKeysImage

	clockFloor time.Time        // Options.ClockFloor
	clock      func() time.Time // Options.Clock
}

// testConfig allows the test modalities and forwards to Orthanc.
func testConfig(port int, o *peers.Orthanc, commitment bool) config.Config {
	c := config.Default()
	c.Port = port
	c.Modalities = []config.Modality{{AETitle: "STORESCU", Address: "127.0.0.1"}, {AETitle: "CT1", Address: "127.0.0.1"}, {AETitle: "CT_URG"}}
	if o != nil {
		c.Destinations = []config.Destination{{Name: "center", AETitle: o.AET, Host: "127.0.0.1", Port: o.DICOM, Commitment: commitment, CommitAfterSeconds: 1}}
	}
	return c
}

func startBox(t testing.TB, cfg config.Config, bo boxOptions) *box {
	t.Helper()
	if bo.dir == "" {
		bo.dir = t.TempDir()
	}
	if err := config.Save(filepath.Join(bo.dir, "relais.json"), cfg); err != nil {
		t.Fatal(err)
	}
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	var out io.Writer = os.Stderr
	if bo.log != nil {
		out, level = bo.log, min(level, slog.LevelInfo)
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	a, err := New(Options{
		DataDir:     bo.dir,
		Listen:      fmt.Sprintf("127.0.0.1:%d", cfg.Port),
		Logger:      log,
		Store:       bo.store,
		RetryMin:    100 * time.Millisecond,
		RetryMax:    time.Second,
		MetricsAddr: bo.metrics,
		ProbeEvery:  bo.probe,
		SSHConsole:  bo.sshConsole,

		ConsoleKeysImage: bo.consoleKeysImage,
		ClockFloor:       bo.clockFloor,
		Clock:            bo.clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &box{t: t, a: a, dir: bo.dir, port: cfg.Port, cancel: cancel, done: make(chan error, 1),
		client: control.NewClient(SocketPath(bo.dir))}
	go func() { b.done <- a.Run(ctx) }()
	peers.WaitForPort(t, cfg.Port)
	t.Cleanup(b.stop)
	return b
}

func (b *box) stop() {
	if b.cancel == nil {
		return
	}
	b.cancel()
	b.cancel = nil
	select {
	case err := <-b.done:
		if err != nil {
			b.t.Errorf("relaisd stopped with: %v", err)
		}
	case <-time.After(30 * time.Second):
		b.t.Error("relaisd did not stop within 30 s")
	}
}

func (b *box) addr() string { return "127.0.0.1:" + strconv.Itoa(b.port) }

// storescu sends files or folders (scanned) as calling AE aet.
func (b *box) storescu(aet string, paths ...string) ([]byte, error) {
	args := []string{"-aec", "RELAIS", "-aet", aet, "+sd", "+r", "127.0.0.1", strconv.Itoa(b.port)}
	return peers.DCMTK(b.t, "storescu", append(args, paths...)...)
}

// waitOrthanc waits until Orthanc holds n instances.
func waitOrthanc(t testing.TB, o *peers.Orthanc, n int, within time.Duration) {
	t.Helper()
	peers.Eventually(t, within, fmt.Sprintf("Orthanc holding %d instances", n), func() (bool, string) {
		got, err := o.InstanceCount()
		return err == nil && got == n, fmt.Sprintf("has %d, %v", got, err)
	})
}

// corpus is a set of generated files and what they are.
type corpus struct {
	dir   string
	files []string
	uids  []string // SOP Instance UIDs, in series and instance order
}

func (c *corpus) add(t testing.TB, in dcmgen.Instance) {
	t.Helper()
	in = in.Defaults()
	p := filepath.Join(c.dir, fmt.Sprintf("%05d.dcm", len(c.files)))
	if _, err := in.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	c.files = append(c.files, p)
	c.uids = append(c.uids, in.SOPInstanceUID)
}

// series writes n slices of one series of study seed.
func series(t testing.TB, dir string, n, size int, seed uint64, mod func(*dcmgen.Instance)) *corpus {
	t.Helper()
	c := &corpus{dir: dir}
	os.MkdirAll(dir, 0o755)
	for i := 1; i <= n; i++ {
		in := dcmgen.Instance{Rows: size, Columns: size, InstanceNumber: i, Seed: seed}
		if mod != nil {
			mod(&in)
		}
		c.add(t, in)
	}
	return c
}

// dataSetSum hashes a Part 10 stream's data set.
func dataSetSum(t testing.TB, r io.Reader) (string, [32]byte) {
	t.Helper()
	m, _, br, err := part10.ReadHeader(r)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, br); err != nil {
		t.Fatal(err)
	}
	return m.TransferSyntaxUID, [32]byte(h.Sum(nil))
}

// dataSetSumFile hashes a Part 10 file's data set.
func dataSetSumFile(t testing.TB, path string) (string, [32]byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return dataSetSum(t, f)
}

func controlEcho(dest string) control.EchoRequest { return control.EchoRequest{Destination: dest} }

// sameAtOrthanc asserts Orthanc holds each file's data set, bit for bit.
func sameAtOrthanc(t testing.TB, o *peers.Orthanc, files []string) {
	t.Helper()
	for _, f := range files {
		m, ds, err := part10.OpenDataSet(f)
		if err != nil {
			t.Fatal(err)
		}
		ds.Close()
		wantTS, want := dataSetSumFile(t, f)
		rc, err := o.File(m.MediaStorageSOPInstanceUID)
		if err != nil {
			t.Fatal(err)
		}
		gotTS, got := dataSetSum(t, rc)
		rc.Close()
		if got != want || gotTS != wantTS {
			t.Fatalf("%s: Orthanc holds other bytes (%s) than sent (%s)", filepath.Base(f), gotTS, wantTS)
		}
	}
}

// modality is our own SCU playing a modality, for tests that need to know
// exactly which instance was acknowledged.
func modality(t testing.TB, addr, aet string, h dimse.Handlers, sopClasses ...string) (*dimse.Association, error) {
	t.Helper()
	var ps []dimse.Proposal
	for _, c := range sopClasses {
		ps = append(ps, dimse.Proposal{AbstractSyntax: c, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}})
	}
	ps = append(ps, dimse.Proposal{AbstractSyntax: dimse.StorageCommitmentSOPClass, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}})
	return dimse.Dial(context.Background(), addr, dimse.DialParams{CallingAE: aet, CalledAE: "RELAIS", Proposals: ps, Handlers: h})
}

// sendFile C-STOREs a Part 10 file's data set.
func sendFile(a *dimse.Association, path string) (dimse.Status, error) {
	m, rc, err := part10.OpenDataSet(path)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	return a.Store(context.Background(), dimse.StoreParams{SOPClassUID: m.MediaStorageSOPClassUID,
		SOPInstanceUID: m.MediaStorageSOPInstanceUID, TransferSyntaxUID: m.TransferSyntaxUID}, rc)
}
