//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package ckpt

import "os"

type fileID struct{ dev, ino uint64 }

func idOf(os.FileInfo) (fileID, bool) { return fileID{}, false }
