package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// The disk's own ceiling for a durable receiver: each instance copied to a
// file of its own and fsynced, one after the other, in this process (no
// network, no DICOM). It shows what any server that syncs before answering
// could reach on this machine at this moment.

const diskName = "disk: file + fsync each (ceiling)"

func (b *bench) diskCeiling(ctx context.Context, s set) (sample, error) {
	dir, err := b.newDir("disk")
	if err != nil {
		return sample{}, err
	}
	defer b.dropDir(dir)
	buf := make([]byte, 1<<20)
	start := time.Now()
	for i, f := range s.Files {
		if ctx.Err() != nil {
			return sample{}, ctx.Err()
		}
		if err := copySynced(f, filepath.Join(dir, fmt.Sprintf("%05d", i)), buf); err != nil {
			return sample{}, err
		}
	}
	return sample{Wall: time.Since(start).Seconds(), Bytes: s.Bytes, Instances: len(s.Files)}, nil
}

// copySynced copies a file and fsyncs the copy.
func copySynced(from, to string, buf []byte) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(out, in, buf); err != nil {
		out.Close()
		return fmt.Errorf("copy to %s: %w", to, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("fsync %s: %w", to, err)
	}
	return out.Close()
}
