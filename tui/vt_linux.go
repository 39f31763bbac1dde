//go:build linux

package tui

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Linux console ioctls (linux/vt.h, linux/tiocl.h).
const (
	vtActivate           = 0x5606
	vtWaitActive         = 0x5607
	tioclSetKmsgRedirect = 11
)

// vtChildEnv marks the re-executed console, whose controlling terminal is
// the virtual console.
const vtChildEnv = "RELAIS_CONSOLE_VT"

// OnVT runs the console on virtual console n. A supervised service is a
// process group leader and can't setsid, so this process opens /dev/ttyN,
// brings it to the front (VT_ACTIVATE), moves kernel messages to kmsgVT
// (TIOCLINUX 11; 0 leaves them) and re-executes itself in a new session
// with the VT as its controlling terminal. That child runs the console; when
// it ends (the technician quits), a fresh one starts, until ctx ends.
func OnVT(ctx context.Context, n, kmsgVT int, opts Options) error {
	if err := CheckVT(n); err != nil {
		return err
	}
	if os.Getenv(vtChildEnv) == strconv.Itoa(n) {
		opts.Where = "tty" + strconv.Itoa(n)
		return Run(ctx, opts, os.Stdin, os.Stdout, append(os.Environ(), "TERM=linux"))
	}
	path := "/dev/tty" + strconv.Itoa(n)
	tty, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("console on %s: %w", path, err)
	}
	defer tty.Close()
	fd := int(tty.Fd())
	if err := unix.IoctlSetInt(fd, vtActivate, n); err != nil {
		return fmt.Errorf("console on %s: VT_ACTIVATE: %w", path, err)
	}
	if err := unix.IoctlSetInt(fd, vtWaitActive, n); err != nil {
		return fmt.Errorf("console on %s: VT_WAITACTIVE: %w", path, err)
	}
	if kmsgVT > 0 && kmsgVT != n {
		arg := [2]byte{tioclSetKmsgRedirect, byte(kmsgVT)}
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCLINUX, uintptr(unsafe.Pointer(&arg[0]))); errno != 0 {
			return fmt.Errorf("console on %s: moving kernel messages to tty%d: %w", path, kmsgVT, errno)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("console on %s: %w", path, err)
	}
	for {
		cmd := exec.CommandContext(ctx, exe, os.Args[1:]...)
		cmd.Env = append(os.Environ(), vtChildEnv+"="+strconv.Itoa(n), "TERM=linux")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		if err := cmd.Run(); err != nil && ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "console on %s ended: %v; starting it again\n", path, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}
