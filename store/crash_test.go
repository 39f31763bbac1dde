package store

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const crashChildEnv = "RELAIS_STORE_CRASH_DIR"

// crashOptions use tiny memtables and value log files so that a short run
// crosses many of their boundaries; instances up to 16 KiB are inline.
func crashOptions() Options {
	o := testOptions()
	o.InlineMax = 16 << 10
	o.MemTableSize = 1 << 20
	o.ValueLogFileSize = 2 << 20
	return o
}

// runCrashChild stores instances until it is killed, printing "ok UID SHA"
// after each commit returns. Instances "keep.*" go to a destination that is
// never served; "cycle.*" go to one that a queue goroutine delivers and
// commits, and a purge may remove them. It also aborts writers and writes
// duplicates, so a kill can land anywhere.
func runCrashChild(dir string) {
	round, _ := strconv.Atoi(os.Getenv("RELAIS_STORE_CRASH_ROUND"))
	s, err := Open(dir, crashOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	var outMu sync.Mutex
	report := func(uid, sum string) {
		outMu.Lock()
		defer outMu.Unlock()
		os.Stdout.WriteString("ok " + uid + " " + sum + "\n") // one write: whole line or nothing
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	for g := range 3 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(round), uint64(g)))
			var last []byte
			var lastMeta Instance
			for i := 0; ; i++ {
				kind := "keep"
				dests := []string{"hold"}
				if i%2 == 1 {
					kind, dests = "cycle", []string{"pacs"}
				}
				study := fmt.Sprintf("%d.%d.%d", round, g, i/5)
				m := meta(study, study+".1", fmt.Sprintf("%s.%d.%d.%d", kind, round, g, i), 1, i)
				data := randomBytes(rng, 1+rng.IntN(120<<10))
				switch n := rng.IntN(10); {
				case n == 0 && last != nil: // the same instance again
					m, data = lastMeta, last
				case n == 1: // an association aborted mid-instance
					w, err := s.NewWriter()
					if err != nil {
						fail(err)
					}
					w.Write(data[:len(data)/2])
					w.Abort()
					continue
				}
				res, err := tryPut(s, m, data, dests...)
				if err != nil {
					fail(err)
				}
				if res.Outcome != Duplicate || m.SOPInstanceUID == lastMeta.SOPInstanceUID {
					sum := sha256.Sum256(data)
					report(m.SOPInstanceUID, hex.EncodeToString(sum[:]))
				}
				last, lastMeta = data, m
			}
		}()
	}
	ctx := context.Background()
	for i := 0; ; i++ {
		es, err := s.Lease(ctx, "pacs", 4, time.Minute)
		if err != nil {
			fail(err)
		}
		for j, e := range es {
			switch j % 3 {
			case 0:
				err = s.Delivered("pacs", e.SOPInstanceUID)
				if err == nil {
					err = s.Committed("pacs", e.SOPInstanceUID)
				}
			case 1:
				_, err = s.Failed("pacs", e.SOPInstanceUID, Failure{Reason: io.ErrUnexpectedEOF.Error(), RetryAt: time.Now(), ParkAfter: 3})
			default: // left in flight: Open must hand it out again
			}
			if err != nil {
				fail(err)
			}
		}
		if i%25 == 24 {
			if _, err := s.Purge(ctx, Policy{MaxAge: time.Nanosecond}); err != nil {
				fail(err)
			}
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCrashLosesNoAcknowledgedInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test re-executes the test binary 32 times; skipped with -short")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	reported := map[string]string{}
	const rounds = 32
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, fmt.Sprintf("RELAIS_STORE_CRASH_ROUND=%d", round))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after a random number of acknowledged commits plus a random
		// pause, so kills land in open, file writes, commits, syncs, purges.
		killAfter := rng.IntN(30)
		lines := bufio.NewScanner(out)
		seen := 0
		for seen < killAfter && lines.Scan() {
			record(t, reported, lines.Text())
			seen++
		}
		time.Sleep(time.Duration(rng.IntN(15000)) * time.Microsecond)
		cmd.Process.Kill()
		for lines.Scan() {
			record(t, reported, lines.Text())
		}
		cmd.Wait()
		if strings.Contains(stderr.String(), "child") || strings.Contains(stderr.String(), "DATA RACE") {
			t.Fatalf("round %d: child failed: %s", round, stderr.String())
		}

		s, err := Open(dir, crashOptions())
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		recs := checkConsistent(t, s)
		for uid, sum := range reported {
			r, ok := recs[string(instanceKey(uid))]
			switch {
			case !ok && strings.HasPrefix(uid, "cycle."):
				// committed and purged
			case !ok:
				t.Errorf("round %d: acknowledged %s lost", round, uid)
			case r.SHA256 != sum:
				t.Errorf("round %d: %s has sha256 %s, acknowledged %s", round, uid, r.SHA256, sum)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	t.Logf("%d rounds, %d acknowledged instances checked", rounds, len(reported))
}

func record(t *testing.T, reported map[string]string, line string) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "ok" {
		t.Fatalf("child said %q", line)
	}
	reported[f[1]] = f[2]
}
