//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package ckpt

import (
	"os"
	"syscall"
)

type fileID struct{ dev, ino uint64 }

func idOf(fi os.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{uint64(st.Dev), uint64(st.Ino)}, true
}
