//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package ckpt

import "syscall"

// freeBytes is the space an unprivileged writer may still use in dir's
// file system (statfs f_bavail × f_bsize).
func freeBytes(dir string) (int64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}
