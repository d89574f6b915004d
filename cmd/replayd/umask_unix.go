//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package main

import "syscall"

// privateUmask makes every file the daemon creates (the store's, the
// socket's) unreadable to others from the start; ckpt also fixes the modes
// of files that existed before.
func privateUmask() { syscall.Umask(0o077) }
