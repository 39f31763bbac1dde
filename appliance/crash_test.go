package appliance

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/testdata/dcmgen"
	"github.com/relais/relais/testdata/peers"
)

// buildRelaisd compiles the daemon once per test.
func buildRelaisd(t *testing.T) string { return buildCommand(t, "relaisd") }

// buildCommand builds the project's command cmd/name.
func buildCommand(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	out, err := exec.Command("go", "build", "-o", bin, "github.com/relais/relais/cmd/"+name).CombinedOutput()
	if err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, out)
	}
	return bin
}

// TestSIGKILLDuringIngestAndForwardLosesNothing kills relaisd with SIGKILL
// while a modality sends and the forwarder delivers, restarts it, and
// repeats: every acknowledged instance reaches Orthanc, bit for bit.
func TestSIGKILLDuringIngestAndForwardLosesNothing(t *testing.T) {
	peers.Require(t, "Orthanc")
	bin := buildRelaisd(t)
	o := peers.StartOrthanc(t, peers.OrthancOptions{})
	port := peers.FreePort(t)
	dir := t.TempDir()
	if err := config.Save(filepath.Join(dir, "relais.json"), testConfig(port, o, false)); err != nil {
		t.Fatal(err)
	}
	start := func() *peers.Process {
		p := peers.Start(t, bin, "-data", dir)
		peers.WaitForPort(t, port)
		return p
	}
	c := series(t, t.TempDir(), 240, 256, 601, nil)
	path := map[string]string{}
	for i, u := range c.uids {
		path[u] = c.files[i]
	}
	rng := rand.New(rand.NewPCG(601, 1))
	var acked []string
	next := 0
	for round := 0; round < 4 && next < len(c.files); round++ {
		p := start()
		a, err := modality(t, "127.0.0.1:"+strconv.Itoa(port), "CT1", dimse.Handlers{}, dcmgen.CTImageStorage)
		if err != nil {
			t.Fatal(err)
		}
		killAfter := 15 + rng.IntN(40)
		var mu sync.Mutex
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				mu.Lock()
				i := next
				mu.Unlock()
				if i >= len(c.files) {
					return
				}
				st, err := sendFile(a, c.files[i])
				if err != nil || st != dimse.StatusSuccess {
					return // the box died under us: not acknowledged
				}
				mu.Lock()
				acked = append(acked, c.uids[next])
				next++
				mu.Unlock()
			}
		}()
		peers.Eventually(t, time.Minute, "instances acknowledged before the kill", func() (bool, string) {
			mu.Lock()
			defer mu.Unlock()
			return len(acked) >= killAfter*(round+1) || next >= len(c.files), strconv.Itoa(len(acked))
		})
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		p.Cmd.Process.Signal(syscall.SIGKILL)
		p.Stop()
		<-done
		a.Abort()
		n, _ := o.InstanceCount()
		t.Logf("round %d: killed relaisd with %d acknowledged, Orthanc holding %d", round, len(acked), n)
		if next < len(c.files) {
			next++ // the instance in flight at the kill is not acknowledged; skip it
		}
	}
	// Last start: nothing sent any more; the queue must drain.
	start()
	waitAtLeast(t, o, acked, 3*time.Minute)
	var files []string
	for _, u := range acked {
		files = append(files, path[u])
	}
	sameAtOrthanc(t, o, files)
	cl := control.NewClient(SocketPath(dir))
	peers.Eventually(t, time.Minute, "queue drained", func() (bool, string) {
		st, err := cl.Status(context.Background())
		return err == nil && len(st.Destinations) == 1 && st.Destinations[0].QueueDepth == 0, fmt.Sprintf("%+v %v", st.Destinations, err)
	})
}

// waitAtLeast waits until Orthanc holds every uid.
func waitAtLeast(t *testing.T, o *peers.Orthanc, uids []string, within time.Duration) {
	t.Helper()
	peers.Eventually(t, within, "Orthanc holding every acknowledged instance", func() (bool, string) {
		for _, u := range uids {
			if id, err := o.Lookup(u); err != nil || id == "" {
				n, _ := o.InstanceCount()
				return false, fmt.Sprintf("missing %s; holds %d of %d", u, n, len(uids))
			}
		}
		return true, ""
	})
}
