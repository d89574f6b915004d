// Package pyworker embeds the Python worker (python/replay_worker, the
// child side of the operator protocol, docs/protocol.md) in the binaries
// and extracts it at start into a private cache directory, so that
// `replayd --torch-model` works from any directory, without a checkout.
//
// Invariants: the extracted tree is a pure function of the embedded files
// (its directory is named by their hash, so binaries of different versions
// never share one); the directories are 0700 and the caller's own, files
// 0600; a tree is published by one rename, so a concurrent start sees it
// whole or not at all.
package pyworker

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"syscall"
)

//go:embed replay_worker/*.py
var files embed.FS

// Package is the Python package's name (python3 -m Package FILE).
const Package = "replay_worker"

// Hash identifies the embedded files (names and contents).
func Hash() string {
	h := sha256.New()
	for _, name := range names() {
		b, _ := files.ReadFile(name)
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func names() []string {
	var out []string
	fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	slices.Sort(out)
	return out
}

// Extract writes the embedded package under cacheDir (os.UserCacheDir()
// /replay when empty) and returns the directory to put on PYTHONPATH. An
// existing extraction of the same hash is reused.
func Extract(cacheDir string) (string, error) {
	if cacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = filepath.Join(os.TempDir(), fmt.Sprintf("replay-%d", os.Getuid()))
		}
		cacheDir = filepath.Join(base, "replay")
	}
	if err := privateDir(cacheDir); err != nil {
		return "", fmt.Errorf("python worker cache: %w", err)
	}
	dir := filepath.Join(cacheDir, "pyworker-"+Hash())
	if fi, err := os.Lstat(dir); err == nil {
		if err := checkPrivate(dir, fi); err != nil {
			return "", fmt.Errorf("python worker cache: %w", err)
		}
		return dir, nil
	}
	tmp, err := os.MkdirTemp(cacheDir, ".pyworker-*")
	if err != nil {
		return "", fmt.Errorf("python worker cache: %w", err)
	}
	defer os.RemoveAll(tmp) // after a successful rename: nothing left
	for _, name := range names() {
		b, err := files.ReadFile(name)
		if err != nil {
			return "", err
		}
		dst := filepath.Join(tmp, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return "", err
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			return "", fmt.Errorf("python worker cache: %w", err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another start published the same tree first.
		if fi, lerr := os.Lstat(dir); lerr == nil && checkPrivate(dir, fi) == nil {
			return dir, nil
		}
		return "", fmt.Errorf("python worker cache: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, path.Clean(Package))); err != nil {
		return "", fmt.Errorf("python worker cache: %w", err)
	}
	return dir, nil
}

// privateDir creates dir (0700) or checks that it is the caller's and
// closed to others.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	return checkPrivate(dir, fi)
}

func checkPrivate(dir string, fi os.FileInfo) error {
	if !fi.IsDir() {
		return fmt.Errorf("%s: not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("%s: owned by uid %d, not by this user", dir, st.Uid)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return errors.Join(fmt.Errorf("%s: open to other users", dir), err)
		}
	}
	return nil
}
