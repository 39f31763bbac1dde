// Package powercut is a FUSE filesystem for tests that lose power. It keeps
// every write that was not made durable in memory and drops it at a cut, so
// a test proves that a program syncs what it promises, which SIGKILL cannot
// (the page cache survives a killed process).
//
// The model is strict POSIX, harsher than ext4 on purpose:
//   - a file's data and size are durable once fsync or fdatasync of that
//     file returns (msync of a shared mapping ends in one: the kernel writes
//     the dirty pages to the filesystem, then fsyncs);
//   - a directory's entries (create, unlink, rename, mkdir, rmdir) are
//     durable once fsync of that directory returns, and not before: a file
//     synced but not its directory is gone after a cut, a rename across
//     directories needs both synced;
//   - nothing else is ever durable: no write-back before the cut, no
//     ordering between files.
//
// MountJournaled is kinder to the entries whose names match a pattern, as
// ext4's journal is to every entry: any fsync (of a file or a directory)
// also makes their creation, rename or removal durable, since the journal
// commit it forces carries every namespace change made before it. Badger
// needs that for its own files: it never syncs its directory after
// creating one.
//
// The durable bytes of each file live in one object file in the backing
// directory; the namespace lives in memory. A file's unsynced writes are a
// sparse overlay of dirty pages on top of its durable bytes, so memory
// follows the unsynced data, not the file sizes.
//
// The filesystem is served by a child process (the test binary, run again):
// a process must not serve a FUSE filesystem whose files it maps. A
// goroutine faulting on a mapped page cannot be stopped for the garbage
// collector, which then waits for it, while the goroutine that would answer
// the fault is already stopped: the process hangs.
package powercut

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The child process is told what to serve by these variables.
const (
	mountEnv     = "RELAIS_POWERCUT_MOUNT"
	backingEnv   = "RELAIS_POWERCUT_BACKING"
	journaledEnv = "RELAIS_POWERCUT_JOURNALED" // the pattern; unset: strict
)

// init serves the filesystem when this binary was started as the child.
func init() {
	dir := os.Getenv(mountEnv)
	if dir == "" {
		return
	}
	var journaled *regexp.Regexp
	if p, ok := os.LookupEnv(journaledEnv); ok {
		journaled = regexp.MustCompile(p)
	}
	os.Exit(serve(dir, os.Getenv(backingEnv), journaled, os.Stdin, os.Stdout))
}

// FS is a mounted power-cut filesystem, served by a child process.
type FS struct {
	t   testing.TB
	dir string // the mount point

	mu     sync.Mutex // one request to the child at a time
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	closed bool
}

// Mount mounts an empty power-cut filesystem, strict POSIX, whose durable
// bytes are kept in backingDir (created if missing; it must be empty). The
// test is skipped, saying why, where FUSE cannot be mounted. The filesystem
// is unmounted when the test ends.
func Mount(t testing.TB, backingDir string) *FS {
	t.Helper()
	return start(t, backingDir, nil)
}

// BadgerFiles matches the names of Badger's own files. Badger v4.9.6 never
// fsyncs its directory after creating a value log, memtable or table file
// (ristretto's z.OpenMmapFileUsing means to, but tests the file's size
// after setting it), so it relies on the journal for their names: strict,
// a write acknowledged in a new value log vanishes with the file, and a
// table the manifest lists can be missing ("file does not exist for
// table"). A store on Badger mounts with MountJournaled(t, dir,
// BadgerFiles): Badger's names as on ext4, its own strict.
var BadgerFiles = regexp.MustCompile(`^([0-9]+\.(sst|vlog|mem)|MANIFEST|DISCARD|KEYREGISTRY|LOCK)$`)

// MountJournaled is Mount with ext4's kindness to the entries whose names
// match names (nil: every entry): any fsync makes their changes durable.
func MountJournaled(t testing.TB, backingDir string, names *regexp.Regexp) *FS {
	t.Helper()
	if names == nil {
		names = regexp.MustCompile("")
	}
	return start(t, backingDir, names)
}

func start(t testing.TB, backingDir string, journaled *regexp.Regexp) *FS {
	t.Helper()
	if err := canMount(); err != nil {
		t.Skipf("power-cut filesystem: %v", err)
	}
	if err := os.MkdirAll(backingDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if names, err := os.ReadDir(backingDir); err != nil || len(names) > 0 {
		t.Fatalf("power-cut filesystem: backing directory %s must be empty (%d entries, %v)", backingDir, len(names), err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f := &FS{t: t, dir: t.TempDir()}
	f.cmd = exec.Command(self)
	f.cmd.Env = append(os.Environ(), mountEnv+"="+f.dir, backingEnv+"="+backingDir)
	if journaled != nil {
		f.cmd.Env = append(f.cmd.Env, journaledEnv+"="+journaled.String())
	}
	f.cmd.Stderr = os.Stderr
	if f.in, err = f.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := f.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	f.out = bufio.NewReader(out)
	if err := f.cmd.Start(); err != nil {
		t.Fatalf("power-cut filesystem: start its server: %v", err)
	}
	if _, err := f.reply(); err != nil {
		f.in.Close()
		f.cmd.Wait()
		t.Skipf("power-cut filesystem: cannot mount FUSE on %s: %v", f.dir, err)
	}
	t.Cleanup(f.Close)
	return f
}

// canMount says why FUSE cannot be mounted here, if it cannot: go-fuse
// mounts directly as root, and through fusermount otherwise.
func canMount() error {
	dev, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("no usable /dev/fuse: %w", err)
	}
	dev.Close()
	if os.Geteuid() == 0 {
		return nil
	}
	for _, bin := range []string{"fusermount3", "fusermount"} {
		if _, err := exec.LookPath(bin); err == nil {
			return nil
		}
	}
	return errors.New("needs root to mount FUSE (or fusermount3 installed); CI runs make test as root")
}

// Dir is the mount point.
func (f *FS) Dir() string { return f.dir }

// Cut cuts the power: once it returns, nothing written becomes durable. The
// mount keeps answering, as if the machine ran on for a moment, so the
// program on it can be stopped without crashing: its writes and syncs
// succeed and are lost. Stop it (close its files and mappings), then
// Remount.
func (f *FS) Cut() {
	f.t.Helper()
	f.must("cut")
}

// Remount unmounts the filesystem and mounts, at the same path, what was
// durable at the cut (Remount without Cut cuts now): the reboot. A program
// must not be running on the old mount any more: its files would be opened
// on the new one.
func (f *FS) Remount() {
	f.t.Helper()
	f.must("remount")
}

// FailSyncs makes the next n syncs (fsync, fdatasync) of files whose name
// matches names fail with EIO and make nothing durable, as a failing disk
// does; a directory's name is matched with a "/" after it. Linux reports a
// file's writeback error once, so a sync after a failed one succeeds: with
// n = 1, a program that does not keep the first error acknowledges what
// was lost. FailSyncs(nil, 0) ends it.
func (f *FS) FailSyncs(names *regexp.Regexp, n int) {
	f.t.Helper()
	if names == nil {
		names, n = regexp.MustCompile(`$^`), 0
	}
	f.must(fmt.Sprintf("failsync %d %s", n, names))
}

// Unsynced is the number of bytes held in memory for writes not yet synced
// (whole pages) on the current mount.
func (f *FS) Unsynced() int64 {
	f.t.Helper()
	n, err := strconv.ParseInt(f.must("unsynced"), 10, 64)
	if err != nil {
		f.t.Fatalf("power-cut filesystem: unsynced: %v", err)
	}
	return n
}

// Close unmounts the filesystem, leaving its durable state in the backing
// directory's object files. It runs when the test ends; calling it again
// does nothing. If files are still open on the mount (a test that failed
// with its program running), the child detaches the mount and serves it
// until they are closed, at the latest when the test process exits.
func (f *FS) Close() {
	f.t.Helper()
	if f.closed {
		return
	}
	_, err := f.call("close")
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.in.Close()
	if err != nil {
		if f.t.Failed() { // most likely the failed test's program
			f.t.Logf("power-cut filesystem: close: %v", err)
		} else {
			f.t.Errorf("power-cut filesystem: close: %v", err)
		}
		return
	}
	if err := f.cmd.Wait(); err != nil {
		f.t.Errorf("power-cut filesystem: its server: %v", err)
	}
}

func (f *FS) must(req string) string {
	f.t.Helper()
	v, err := f.call(req)
	if err != nil {
		f.t.Fatalf("power-cut filesystem: %s: %v", req, err)
	}
	return v
}

// call sends the child one request and returns its answer.
func (f *FS) call(req string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return "", errors.New("closed")
	}
	if _, err := io.WriteString(f.in, req+"\n"); err != nil {
		return "", fmt.Errorf("its server is gone: %w", err)
	}
	return f.reply()
}

func (f *FS) reply() (string, error) {
	line, err := f.out.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("its server is gone: %w", err)
	}
	line = strings.TrimSuffix(line, "\n")
	if v, ok := strings.CutPrefix(line, "ok"); ok {
		return strings.TrimSpace(v), nil
	}
	return "", errors.New(strings.TrimPrefix(line, "error "))
}
