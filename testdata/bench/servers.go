package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/testdata/peers"
)

// Names of the servers compared, as the table shows them.
const (
	nameRelaisd  = "relaisd"
	nameStorescp = "storescp"
	nameOrthanc  = "Orthanc"
)

// What each server does before it answers Success, for the table.
var durability = map[string]string{
	nameRelaisd:  "synced Badger commit before Success",
	nameStorescp: "no sync: answers before any fsync (+B bit-preserving, to a folder; --fork with parallel senders)",
	nameOrthanc:  "fsyncs each file before Success (default durability; SQLite index in WAL)",
}

// server is one receiving program, started fresh for each measurement.
type server interface {
	name() string
	// start runs it with its data in dir and waits until it answers.
	start(ctx context.Context, dir string) error
	port() int
	aet() string
	proc() *proc
	// held counts the instances it holds.
	held(ctx context.Context) (int, error)
	stop()
}

// freePort returns a loopback TCP port nobody listens on.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitPort waits until something accepts on a loopback port, or p exits.
func waitPort(ctx context.Context, p *proc, port int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited before listening: %v\n%s", p.name, p.err, p.tail(2000))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: nothing listens on port %d after %v", p.name, port, within)
}

// relaisdServer is the relaisd binary built for this run.
type relaisdServer struct {
	bin     string
	procs   *procs
	cfg     config.Config // Port is set by start
	profile string        // -cpuprofile, when set
	// prepare, when set, runs in the data folder before relaisd starts
	// (the tunnel scenario makes the box's key there).
	prepare func(dir string) error

	dir    string
	p      *proc
	client *control.Client
}

// benchConfig lets the DCMTK senders in and forwards nowhere.
func benchConfig() config.Config {
	c := config.Default()
	c.Port = 0 // launch picks a free one: not 11112, which a relaisd beside the bench may hold
	c.Modalities = []config.Modality{{AETitle: senderAET, Address: "127.0.0.1"}}
	return c
}

func (r *relaisdServer) name() string { return nameRelaisd }
func (r *relaisdServer) aet() string  { return r.cfg.AETitle }
func (r *relaisdServer) port() int    { return r.cfg.Port }
func (r *relaisdServer) proc() *proc  { return r.p }

func (r *relaisdServer) start(ctx context.Context, dir string) error {
	if err := r.launch(dir); err != nil {
		return err
	}
	if err := waitPort(ctx, r.p, r.cfg.Port, 30*time.Second); err != nil {
		return err
	}
	r.client = control.NewClient(filepath.Join(dir, control.SocketName))
	_, err := r.client.Status(ctx)
	return err
}

// launch writes the configuration and starts relaisd on dir, not waiting.
func (r *relaisdServer) launch(dir string) error {
	var err error
	if r.cfg.Port == 0 {
		if r.cfg.Port, err = freePort(); err != nil {
			return err
		}
	}
	r.dir = dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if r.prepare != nil {
		if err := r.prepare(dir); err != nil {
			return err
		}
	}
	if err := config.Save(filepath.Join(dir, "relais.json"), r.cfg); err != nil {
		return fmt.Errorf("relaisd configuration: %w", err)
	}
	args := []string{"-data", dir}
	if r.profile != "" {
		args = append(args, "-cpuprofile", r.profile)
	}
	r.p, err = r.procs.start(filepath.Join(dir, "relaisd.log"), os.Environ(), r.bin, args...)
	return err
}

func (r *relaisdServer) held(ctx context.Context) (int, error) {
	st, err := r.client.Status(ctx)
	return int(st.Receiving.Instances), err
}

// stop lets relaisd end cleanly (its CPU profile is written then).
func (r *relaisdServer) stop() {
	if r.p != nil {
		r.p.stop(30 * time.Second)
	}
}

// storescpServer is DCMTK's storescp writing what it receives, bit for bit,
// into a folder; with parallel senders it forks a child per association
// (otherwise it serves one association at a time).
type storescpServer struct {
	procs *procs
	fork  bool
	pdu   int

	portN int
	dir   string
	p     *proc
}

func (s *storescpServer) name() string { return nameStorescp }
func (s *storescpServer) aet() string  { return "STORESCP" }
func (s *storescpServer) port() int    { return s.portN }
func (s *storescpServer) proc() *proc  { return s.p }

func (s *storescpServer) start(ctx context.Context, dir string) error {
	var err error
	if s.portN, err = freePort(); err != nil {
		return err
	}
	s.dir = filepath.Join(dir, "received")
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	args := []string{"-aet", s.aet(), "+B", "-od", s.dir, "-dhl", "-pdu", strconv.Itoa(s.pdu)}
	if s.fork {
		args = append(args, "--fork")
	}
	args = append(args, strconv.Itoa(s.portN))
	if s.p, err = s.procs.start(filepath.Join(dir, "storescp.log"), peers.DCMTKEnv(), "storescp", args...); err != nil {
		return err
	}
	return waitPort(ctx, s.p, s.portN, 30*time.Second)
}

func (s *storescpServer) held(context.Context) (int, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if e.Type().IsRegular() {
			n++
		}
	}
	return n, nil
}

func (s *storescpServer) stop() {
	if s.p != nil {
		s.p.stop(5 * time.Second)
	}
}

// orthancServer is Orthanc in its own process on loopback, with the
// configuration the tests use (testdata/peers): default durability. It
// runs with TCP_NODELAY=1 like the DCMTK tools, since its DICOM side is
// Debian's DCMTK (with Nagle on, each small C-STORE waits ~40 ms).
type orthancServer struct {
	procs *procs
	pdu   int
	// modalities it may call back (Storage Commitment reports).
	modalities map[string]int

	httpPort, dicomPort int
	p                   *proc
}

func (o *orthancServer) name() string { return nameOrthanc }
func (o *orthancServer) aet() string  { return "ORTHANC" }
func (o *orthancServer) port() int    { return o.dicomPort }
func (o *orthancServer) proc() *proc  { return o.p }

func (o *orthancServer) start(ctx context.Context, dir string) error {
	var err error
	if o.httpPort, err = freePort(); err != nil {
		return err
	}
	if o.dicomPort, err = freePort(); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg, err := peers.WriteOrthancConfig(dir, o.httpPort, o.dicomPort, peers.OrthancOptions{MaxPDU: o.pdu, Modalities: o.modalities})
	if err != nil {
		return err
	}
	if o.p, err = o.procs.start(filepath.Join(dir, "orthanc.log"), peers.DCMTKEnv(), "Orthanc", cfg); err != nil {
		return err
	}
	if err := waitPort(ctx, o.p, o.httpPort, 60*time.Second); err != nil {
		return err
	}
	return waitPort(ctx, o.p, o.dicomPort, 60*time.Second)
}

func (o *orthancServer) held(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/statistics", o.httpPort), nil)
	if err != nil {
		return 0, err
	}
	rsp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("Orthanc statistics: %w", err)
	}
	defer rsp.Body.Close()
	var st struct{ CountInstances int }
	if err := json.NewDecoder(rsp.Body).Decode(&st); err != nil {
		return 0, fmt.Errorf("Orthanc statistics: %w", err)
	}
	return st.CountInstances, nil
}

func (o *orthancServer) stop() {
	if o.p != nil {
		o.p.stop(15 * time.Second)
	}
}

// buildRelaisd builds relaisd from this checkout into dir.
func buildRelaisd(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "relaisd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/relaisd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/relaisd: %w\n%s", err, out)
	}
	return bin, nil
}

// moduleRoot is the folder of this checkout's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run the bench inside the relais checkout (no go.mod here)")
	}
	return filepath.Dir(mod), nil
}
