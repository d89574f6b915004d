package ckpt

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
)

// keepNewestVlog protects the newest value-log file from Badger's cut at
// open (Salvage mode): when entries stop being readable before the file's
// last non-zero byte — damage, not a crash's torn tail — it adds an empty
// value-log file after it, so that Badger checks (and trims) that one and
// leaves the damaged file whole. The intact values after the damage stay
// readable; the damaged ones fail their CRC-32C as CorruptionErrors, and
// RepairCheckpoints recomputes the checkpoints among them.
func keepNewestVlog(dir string, log *slog.Logger) error {
	f, err := listStore(dir)
	if err != nil || len(f.vlogs) == 0 {
		return err
	}
	name := f.vlogs[len(f.vlogs)-1]
	path := filepath.Join(dir, name)
	end, err := vlogValidEnd(path, 0)
	if err != nil {
		return err
	}
	last, err := lastNonZero(path)
	if err != nil || last < end {
		return err
	}
	hdr := make([]byte, vlogHeaderSize) // key id 0 (plain text), then a base IV
	if _, err := rand.Read(hdr[8:]); err != nil {
		return err
	}
	next := filepath.Join(dir, fmt.Sprintf("%06d.vlog", vlogFid(name)+1))
	log.Warn("ckpt: salvage: the newest value log is damaged; keeping it whole behind an empty one",
		"file", name, "readable_until", end, "data_until", last+1, "new", filepath.Base(next))
	if err := writeSynced(next, hdr); err != nil {
		return err
	}
	return syncDir(dir)
}

// lastNonZero returns the offset of the last non-zero byte of a file, -1
// for a file of zeros.
func lastNonZero(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	last, off := int64(-1), int64(0)
	buf := make([]byte, 1<<16)
	for {
		n, err := r.Read(buf)
		for i := n - 1; i >= 0; i-- {
			if buf[i] != 0 {
				last = off + int64(i)
				break
			}
		}
		off += int64(n)
		if err == io.EOF {
			return last, nil
		}
		if err != nil {
			return 0, err
		}
	}
}
