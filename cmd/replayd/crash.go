package main

import (
	"bufio"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
)

// crashLogName is the file in the data directory where the runtime writes
// a fatal error's report (besides stderr): a panic in a goroutine nobody
// can recover — Badger's compactions reading a table damaged while the
// store was open — ends the process, and the operator finds why here. The
// next start then refuses the damaged table by its checksums (ckpt's check
// before open).
const crashLogName = "replayd.crash"

// recordCrashes warns when the previous process left a crash report (kept
// as replayd.crash.prev) and has the runtime write this process's fatal
// errors to a fresh one.
func recordCrashes(dataDir string, log *slog.Logger) {
	p := filepath.Join(dataDir, crashLogName)
	if fi, err := os.Stat(p); err == nil && fi.Size() > 0 {
		first := ""
		if f, err := os.Open(p); err == nil {
			sc := bufio.NewScanner(f)
			if sc.Scan() {
				first = sc.Text()
			}
			f.Close()
		}
		prev := p + ".prev"
		if err := os.Rename(p, prev); err != nil {
			log.Warn("cannot keep the previous crash report", "file", p, "err", err)
		}
		log.Warn("the previous replayd process crashed; its report is kept (the store is checked before it opens)",
			"file", prev, "at", fi.ModTime().UTC(), "first_line", first)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		log.Warn("cannot record crashes", "file", p, "err", err)
		return
	}
	defer f.Close() // SetCrashOutput keeps its own duplicate
	if err := debug.SetCrashOutput(f, debug.CrashOptions{}); err != nil {
		log.Warn("cannot record crashes", "file", p, "err", err)
	}
}
