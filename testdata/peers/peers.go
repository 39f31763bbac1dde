// Package peers starts the real programs tests talk to — DCMTK's tools and
// Orthanc, from Debian's packages — on loopback, each with its own
// configuration, and stops them when the test ends.
package peers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Require skips the test, saying why, when a program is missing.
func Require(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not installed (bash .ci/run installs DCMTK, Orthanc and pydicom): %v", n, err)
		}
	}
}

// DCMTK runs a DCMTK tool to completion with Nagle off (Debian's build is
// very slow otherwise) and returns its output; a non-zero exit is an error.
func DCMTK(t testing.TB, name string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s: %v", name, err)
	}
	return out, err
}

// FreePort returns a loopback TCP port nobody listens on. It is drawn at
// random below the kernel's ephemeral range (32768–60999 on Debian), where
// the kernel never hands out ports itself: a port from ":0" could be given
// again, to another test's listener or an outgoing connection, before the
// peer that is to use it has bound it.
func FreePort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 1000; i++ {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		return port
	}
	t.Fatal("no free loopback port between 20000 and 32000")
	return 0
}

// WaitForPort waits until something accepts on a loopback port.
func WaitForPort(t testing.TB, port int) {
	t.Helper()
	if err := listening(port, nil, nil); err != nil {
		t.Fatal(err)
	}
}

// listening waits up to 30 s until something accepts on a loopback port (in
// ns when set); it gives up early when p, the program that is to listen, has
// ended.
func listening(port int, ns *Netns, p *Process) error {
	dial := (&net.Dialer{}).DialContext
	if ns != nil {
		dial = ns.Dial
	}
	for i := 0; i < 300; i++ {
		c, err := dial(context.Background(), "tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil && p.Exited() {
			return fmt.Errorf("exited before listening on port %d", port)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on port %d after 30 s", port)
}

// Process is a peer program running until the test ends.
type Process struct {
	Cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the program has exited
}

// Start runs a program in the background; its output is shown if the test fails.
func Start(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	log := filepath.Join(t.TempDir(), filepath.Base(name)+".log")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{Cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		f.Close()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.Output())
		}
	})
	return p
}

// Output is the end of what the program printed.
func (p *Process) Output() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 20000 {
		b = b[len(b)-20000:]
	}
	return string(b)
}

// Exited reports whether the program has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop kills the program and waits for it.
func (p *Process) Stop() {
	if !p.Exited() {
		p.Cmd.Process.Kill()
	}
	<-p.done
}

// Orthanc is a real Orthanc on loopback with its own configuration and
// storage, standing in for the reading center's PACS.
type Orthanc struct {
	HTTP, DICOM int
	AET         string
	dir         string
	config      string
	proc        *Process
	t           testing.TB
	ns          *Netns
	http        *http.Client
}

// OrthancOptions configure a test Orthanc.
type OrthancOptions struct {
	MaxPDU int // 0: 16384
	// Modalities it may call back (Storage Commitment reports): AE title →
	// loopback port.
	Modalities map[string]int
	// Netns, when set, runs Orthanc inside that namespace; the test still
	// reaches its HTTP API (through a socket made inside the namespace).
	Netns *Netns
	// OverwriteInstances: an instance received again replaces the one held
	// (Orthanc keeps the first by default); for corrections.
	OverwriteInstances bool
}

// StartOrthanc starts Orthanc and waits until it answers. When another
// program took one of its ports in the meantime, it starts again on others.
func StartOrthanc(t testing.TB, o OrthancOptions) *Orthanc {
	t.Helper()
	Require(t, "Orthanc")
	x := &Orthanc{AET: "ORTHANC", dir: t.TempDir(), t: t, ns: o.Netns, http: http.DefaultClient}
	if o.Netns != nil {
		x.http = &http.Client{Transport: &http.Transport{DialContext: o.Netns.Dial}}
	}
	for attempt := 1; ; attempt++ {
		x.HTTP, x.DICOM = FreePort(t), FreePort(t)
		var err error
		if x.config, err = WriteOrthancConfig(x.dir, x.HTTP, x.DICOM, o); err != nil {
			t.Fatal(err)
		}
		err = x.start()
		if err == nil {
			return x
		}
		if attempt == 3 || !strings.Contains(x.proc.Output(), "already in use") {
			t.Fatalf("Orthanc: %v\n%s", err, x.proc.Output())
		}
		t.Logf("Orthanc: %v; starting again on other ports", err)
	}
}

// Start (re)starts a stopped Orthanc with the same storage and ports: the
// box under test was configured with them. When another program holds one
// meanwhile (an outgoing connection may get it as its own port), Start
// waits for it, up to 10 s.
func (x *Orthanc) Start() {
	x.t.Helper()
	for attempt := 1; ; attempt++ {
		err := x.start()
		if err == nil {
			return
		}
		if attempt == 10 || !strings.Contains(x.proc.Output(), "already in use") {
			x.t.Fatalf("Orthanc: %v\n%s", err, x.proc.Output())
		}
		x.t.Logf("Orthanc: %v; starting again in a second", err)
		time.Sleep(time.Second)
	}
}

func (x *Orthanc) start() error {
	if x.ns != nil {
		name, args := x.ns.Command("Orthanc", x.config)
		x.proc = Start(x.t, name, args...)
	} else {
		x.proc = Start(x.t, "Orthanc", x.config)
	}
	for _, port := range []int{x.HTTP, x.DICOM} {
		if err := listening(port, x.ns, x.proc); err != nil {
			x.proc.Stop()
			return err
		}
	}
	return nil
}

// Stop kills Orthanc (its storage stays).
func (x *Orthanc) Stop() { x.proc.Stop() }

// Addr is Orthanc's DICOM address.
func (x *Orthanc) Addr() string { return fmt.Sprintf("127.0.0.1:%d", x.DICOM) }

func (x *Orthanc) get(path string, v any) error {
	rsp, err := x.http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", x.HTTP, path))
	if err != nil {
		return err
	}
	defer rsp.Body.Close()
	if rsp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", path, rsp.Status)
	}
	return json.NewDecoder(rsp.Body).Decode(v)
}

// RegisterModality adds a modality Orthanc may talk to (Storage Commitment
// reports go there), as its REST API does at run time. host defaults to
// 127.0.0.1.
func (x *Orthanc) RegisterModality(aet, host string, port int) error {
	if host == "" {
		host = "127.0.0.1"
	}
	return x.rest("PUT", "/modalities/"+aet, "application/json", strings.NewReader(fmt.Sprintf(`{"AET": %q, "Host": %q, "Port": %d}`, aet, host, port)), nil)
}

// Upload stores a DICOM file in Orthanc through its REST API and returns
// Orthanc's ID of the instance.
func (x *Orthanc) Upload(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var out struct{ ID string }
	return out.ID, x.rest("POST", "/instances", "application/dicom", f, &out)
}

// Delete removes an instance from Orthanc, as a PACS that loses one.
func (x *Orthanc) Delete(sopInstanceUID string) error {
	id, err := x.Lookup(sopInstanceUID)
	if err != nil || id == "" {
		return fmt.Errorf("delete %s: %q %v", sopInstanceUID, id, err)
	}
	return x.rest("DELETE", "/instances/"+id, "text/plain", nil, nil)
}

// SendTo has Orthanc C-STORE an instance (by Orthanc ID) to a registered
// modality, as a reading center sends a result back.
func (x *Orthanc) SendTo(modality, id string) error {
	return x.rest("POST", "/modalities/"+modality+"/store", "text/plain", strings.NewReader(id), nil)
}

func (x *Orthanc) rest(method, path, ctype string, body io.Reader, out any) error {
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", x.HTTP, path), body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ctype)
	rsp, err := x.http.Do(req)
	if err != nil {
		return err
	}
	defer rsp.Body.Close()
	if rsp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(rsp.Body, 4096))
		return fmt.Errorf("%s %s: %s %s", method, path, rsp.Status, b)
	}
	if out != nil {
		return json.NewDecoder(rsp.Body).Decode(out)
	}
	return nil
}

// Lookup returns Orthanc's ID of an instance, or "" when it has none.
func (x *Orthanc) Lookup(sopInstanceUID string) (string, error) {
	rsp, err := x.http.Post(fmt.Sprintf("http://127.0.0.1:%d/tools/lookup", x.HTTP), "text/plain", strings.NewReader(sopInstanceUID))
	if err != nil {
		return "", err
	}
	defer rsp.Body.Close()
	var found []struct{ ID, Type string }
	if err := json.NewDecoder(rsp.Body).Decode(&found); err != nil {
		return "", err
	}
	for _, f := range found {
		if f.Type == "Instance" {
			return f.ID, nil
		}
	}
	return "", nil
}

// File returns the Part 10 file Orthanc stored for a SOP Instance UID.
func (x *Orthanc) File(sopInstanceUID string) (io.ReadCloser, error) {
	id, err := x.Lookup(sopInstanceUID)
	if err != nil {
		return nil, err
	}
	if id == "" {
		return nil, fmt.Errorf("Orthanc holds no instance %s", sopInstanceUID)
	}
	rsp, err := x.http.Get(fmt.Sprintf("http://127.0.0.1:%d/instances/%s/file", x.HTTP, id))
	if err != nil {
		return nil, err
	}
	if rsp.StatusCode != 200 {
		rsp.Body.Close()
		return nil, fmt.Errorf("Orthanc file of %s: %s", sopInstanceUID, rsp.Status)
	}
	return rsp.Body, nil
}

// InstanceCount is how many instances Orthanc holds.
func (x *Orthanc) InstanceCount() (int, error) {
	var st struct{ CountInstances int }
	err := x.get("/statistics", &st)
	return st.CountInstances, err
}

// Arrivals lists the SOP Instance UIDs in the order Orthanc stored them
// (its change log), repeats included.
func (x *Orthanc) Arrivals() ([]string, error) {
	var uids []string
	since := 0
	for {
		var ch struct {
			Changes []struct {
				ChangeType string
				ID         string
				Seq        int
			}
			Done bool
			Last int
		}
		if err := x.get(fmt.Sprintf("/changes?since=%d&limit=1000", since), &ch); err != nil {
			return nil, err
		}
		for _, c := range ch.Changes {
			if c.ChangeType != "NewInstance" {
				continue
			}
			var tags struct {
				MainDicomTags struct{ SOPInstanceUID string }
			}
			if err := x.get("/instances/"+c.ID, &tags); err != nil {
				return nil, err
			}
			uids = append(uids, tags.MainDicomTags.SOPInstanceUID)
		}
		since = ch.Last
		if ch.Done {
			return uids, nil
		}
	}
}
