package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procs keeps every process the bench started, to stop them all on any
// way out. Each runs in its own process group (storescp --fork has
// children) and dies with the bench (Pdeathsig) even if the bench is killed.
type procs struct {
	log  *slog.Logger
	mu   sync.Mutex
	live map[*proc]bool
}

// proc is one started program.
type proc struct {
	name string
	cmd  *exec.Cmd
	logf string
	done chan struct{} // closed once it exited
	err  error         // its exit, valid after done
}

func newProcs(log *slog.Logger) *procs { return &procs{log: log, live: map[*proc]bool{}} }

// start runs a program in the background, its output into logFile.
func (ps *procs) start(logFile string, env []string, name string, args ...string) (*proc, error) {
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: filepath.Base(name), cmd: cmd, logf: logFile, done: make(chan struct{})}
	ps.mu.Lock()
	ps.live[p] = true
	ps.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		f.Close()
		ps.mu.Lock()
		delete(ps.live, p)
		ps.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// failure describes a non-zero exit with the end of the program's output.
func (p *proc) failure() error {
	if p.err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w\n%s", p.name, p.err, p.tail(2000))
}

func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.logf)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(bytes.TrimSpace(b))
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
	syscall.Kill(-p.pid(), syscall.SIGKILL) // children left behind
}

// stopAll stops whatever is still running.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	var left []*proc
	for p := range ps.live {
		left = append(left, p)
	}
	ps.mu.Unlock()
	for _, p := range left {
		ps.log.Info("stopping", "program", p.name, "pid", p.pid())
		p.stop(5 * time.Second)
	}
}

// usage is what a server process (with its children) used.
type usage struct {
	cpuTicks int64 // utime+stime, children's included, in clock ticks
	hwm      int64 // peak resident set, bytes
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

func ticksToSeconds(t int64) float64 { return float64(t) / clockTicks }

// treeUsage reads the CPU time of a process and all its descendants
// (waited-for children included through cutime/cstime) and the largest
// VmHWM among them.
func treeUsage(root int) (usage, error) {
	var u usage
	pids := descendants(root)
	for i, pid := range append([]int{root}, pids...) {
		st, err := readStat(pid)
		if err != nil {
			if i == 0 {
				return u, err
			}
			continue // a child that just went away
		}
		u.cpuTicks += st.utime + st.stime
		if i == 0 {
			u.cpuTicks += st.cutime + st.cstime
		}
		_, hwm, _, _ := readMemory(pid)
		u.hwm = max(u.hwm, hwm)
	}
	return u, nil
}

// treeRSS is the resident memory of a process (and, with tree, its
// descendants) now: all of it, and its anonymous part.
func treeRSS(root int, tree bool) (rss, anon int64) {
	pids := []int{root}
	if tree {
		pids = append(pids, descendants(root)...)
	}
	for _, pid := range pids {
		r, _, a, _ := readMemory(pid)
		rss += r
		anon += a
	}
	return rss, anon
}

type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime int64
}

// readStat reads /proc/PID/stat (fields after the command, which may hold
// spaces and parentheses).
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	n := func(k int) int64 { v, _ := strconv.ParseInt(f[k], 10, 64); return v }
	// f[0] is field 3 (state): ppid is field 4, utime 14 … cstime 17.
	return procStat{ppid: int(n(1)), utime: n(11), stime: n(12), cutime: n(13), cstime: n(14)}, nil
}

// readMemory returns VmRSS, VmHWM and RssAnon (the process's own memory:
// heap and stacks, not file pages it maps) in bytes.
func readMemory(pid int) (rss, hwm, anon int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb := func() int64 {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10
		}
		switch k {
		case "VmRSS":
			rss = kb()
		case "VmHWM":
			hwm = kb()
		case "RssAnon":
			anon = kb()
		}
	}
	return rss, hwm, anon, nil
}

// descendants lists every process below root.
func descendants(root int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue
		}
		children[st.ppid] = append(children[st.ppid], pid)
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, children[p]...)
		queue = append(queue, children[p]...)
	}
	return out
}

// rssSampler follows the resident memory of a process: its anonymous
// part (which VmHWM does not tell apart from mapped files), and for a tree
// (storescp --fork keeps each association in a child that is gone by the
// end) the whole.
type rssSampler struct {
	peak, peakAnon int64
	stop           chan struct{}
	done           chan struct{}
}

func sampleRSS(root int, tree bool, every time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			rss, anon := treeRSS(root, tree)
			s.peak, s.peakAnon = max(s.peak, rss), max(s.peakAnon, anon)
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// end stops sampling and returns the peaks seen.
func (s *rssSampler) end() (rss, anon int64) {
	close(s.stop)
	<-s.done
	return s.peak, s.peakAnon
}
