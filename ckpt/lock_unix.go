//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package ckpt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir takes an exclusive, non-blocking flock on dir/ckpt.lock. The
// kernel drops it when the process dies, so a crashed replayd never leaves a
// stale lock behind.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "ckpt.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ckpt: lock store %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, lockedError(dir)
		}
		return nil, fmt.Errorf("ckpt: lock store %s: %w", dir, err)
	}
	return f, nil
}

// diskUsage is the space a file occupies (sparse, preallocated Badger files
// are counted by their allocated blocks, not their length).
func diskUsage(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
