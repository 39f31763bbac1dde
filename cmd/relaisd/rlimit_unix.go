//go:build unix

package main

import (
	"log/slog"
	"syscall"
)

// raiseFileLimit raises the soft limit on open files to the hard limit:
// every DICOM connection, store file and tunnel socket takes a descriptor,
// and running out stops the box accepting modalities. (Go raises it on its
// own at start since 1.19; this makes it explicit, and says what it is.)
func raiseFileLimit(log *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("open file limit unknown", "err", err)
		return
	}
	if lim.Cur >= lim.Max {
		log.Info("open file limit", "soft", lim.Cur, "hard", lim.Max)
		return
	}
	was := lim.Cur
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("open file limit not raised", "soft", was, "hard", lim.Max, "err", err)
		return
	}
	log.Info("open file limit raised", "from", was, "to", lim.Cur)
}
