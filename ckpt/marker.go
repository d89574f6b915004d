package ckpt

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
)

// markerName is ckpt's own record of the store's files, beside Badger's.
// Badger trusts the directory as it finds it: without a MANIFEST it starts
// an empty database and deletes the tables it does not know, and it cuts
// its newest value-log file at the first damaged entry, however much intact
// data follows. Open compares the directory with the marker (and the
// MANIFEST with the tables) before Badger sees it, and refuses a store that
// looks wrong with a *DamagedError, changing nothing.
const markerName = "ckpt.marker"

// marker is what the store looked like when it was last synced or closed.
// It is a lower bound: files are added and written after it, never taken
// from it, except by Badger's own compactions and memtable flushes (which
// create tables with higher ids) and value-log GC (which is not checked).
type marker struct {
	Version int `json:"version"`
	// Clean is set by Close once Badger closed: every file has its final
	// size, and the newest value-log file ends with its last entry.
	Clean bool `json:"clean"`
	Runs  int  `json:"runs"`
	// MaxTable is the highest table id in the MANIFEST.
	MaxTable uint64 `json:"max_table"`
	// Mems are the memtable logs (.mem) holding entries.
	Mems []string `json:"mems"`
	// LastSeq is Badger's highest version (every committed write has one).
	LastSeq uint64 `json:"last_seq"`
	// Vlog is the newest value-log file (the one Badger checks and cuts at
	// open) and VlogEnd the end of its last complete transaction.
	Vlog    string `json:"vlog"`
	VlogEnd int64  `json:"vlog_end"`
	// Vlogs are the older value-log files and their sizes: Badger never
	// writes them again, and only value-log GC deletes them.
	Vlogs map[string]int64 `json:"vlogs,omitempty"`
	// GC is set while value-log GC may delete files (Store.GC writes the
	// marker before and after): then a file of Vlogs may be gone.
	GC      bool   `json:"gc,omitempty"`
	Written string `json:"written"`
}

// storeFiles is the directory's Badger files by kind.
type storeFiles struct {
	manifest bool
	ssts     []uint64
	mems     []string
	vlogs    []string // sorted by fid
	any      bool
}

func listStore(dir string) (storeFiles, error) {
	var f storeFiles
	ents, err := os.ReadDir(dir)
	if err != nil {
		return f, err
	}
	for _, e := range ents {
		n := e.Name()
		switch {
		case n == "MANIFEST":
			f.manifest, f.any = true, true
		case strings.HasSuffix(n, ".sst"):
			id, err := strconv.ParseUint(strings.TrimSuffix(n, ".sst"), 10, 64)
			if err == nil {
				f.ssts = append(f.ssts, id)
			}
			f.any = true
		case strings.HasSuffix(n, ".mem"):
			f.mems, f.any = append(f.mems, n), true
		case strings.HasSuffix(n, ".vlog"):
			f.vlogs, f.any = append(f.vlogs, n), true
		}
	}
	slices.Sort(f.ssts)
	slices.SortFunc(f.vlogs, func(a, b string) int { return vlogFid(a) - vlogFid(b) })
	return f, nil
}

func vlogFid(name string) int {
	n, _ := strconv.Atoi(strings.TrimSuffix(name, ".vlog"))
	return n
}

func readMarker(dir string) (marker, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, markerName))
	if errors.Is(err, os.ErrNotExist) {
		return marker{}, false, nil
	}
	if err != nil {
		return marker{}, false, err
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil {
		return marker{}, false, &DamagedError{Dir: dir, File: markerName, Problem: fmt.Sprintf("unreadable: %v", err)}
	}
	return m, true, nil
}

// writeMarker records the directory as it is now, atomically (temporary
// file, fsync, rename, fsync of the directory). prev, when it names the same
// newest value-log file, lets the scan start where the last one ended.
func writeMarker(dir string, runs int, seq uint64, clean, gc bool, prev marker) (marker, error) {
	f, err := listStore(dir)
	if err != nil {
		return prev, err
	}
	m := marker{Version: 1, Clean: clean, GC: gc, Runs: runs, LastSeq: seq, Written: time.Now().UTC().Format(time.RFC3339)}
	for _, name := range f.vlogs[:max(len(f.vlogs)-1, 0)] {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return prev, err
		}
		if m.Vlogs == nil {
			m.Vlogs = map[string]int64{}
		}
		m.Vlogs[name] = fi.Size()
	}
	// Only memtable logs holding an entry: Badger deletes empty ones at
	// open and at close without writing a table.
	for _, name := range f.mems {
		if end, err := vlogFirstEnd(filepath.Join(dir, name)); err == nil && end > vlogHeaderSize {
			m.Mems = append(m.Mems, name)
		}
	}
	// Tables of the MANIFEST only: a table being written (the flush of a
	// memtable log listed here) is not one yet.
	if mf, err := readManifest(dir); err == nil {
		for id := range mf.Tables {
			m.MaxTable = max(m.MaxTable, id)
		}
	}
	if len(f.vlogs) > 0 {
		m.Vlog = f.vlogs[len(f.vlogs)-1]
		from := int64(0)
		if prev.Vlog == m.Vlog {
			from = prev.VlogEnd
		}
		if m.VlogEnd, err = vlogValidEnd(filepath.Join(dir, m.Vlog), from); err != nil {
			return prev, err
		}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return prev, err
	}
	tmp := filepath.Join(dir, markerName+".tmp")
	if err := writeSynced(tmp, append(b, '\n')); err != nil {
		return prev, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, markerName)); err != nil {
		return prev, err
	}
	return m, syncDir(dir)
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Badger's value-log layout (value.go, structs.go of badger v4): a 20-byte
// file header, then entries of a header (meta, user meta, uvarint key
// length, value length, expiry), key, value and a big-endian CRC-32C of all
// of it. Entries of a transaction carry bitTxn and are committed by an entry
// with bitFinTxn whose value is the commit timestamp.
const (
	vlogHeaderSize = 20
	vlogBitTxn     = 1 << 6
	vlogBitFinTxn  = 1 << 7
)

// vlogValidEnd returns the offset after the last complete transaction of a
// value-log file, scanning from offset from (0: the file's start) — where
// Badger cuts the file when it opens it as the newest one.
func vlogValidEnd(path string, from int64) (int64, error) {
	end, _, err := scanLog(path, from, false)
	return end, err
}

// logMaxVersion is the highest version among the complete entries of a
// memtable log (same layout as the value log; the version is the key's
// last 8 bytes, stored as MaxUint64 − version).
func logMaxVersion(path string) (uint64, error) {
	_, v, err := scanLog(path, 0, false)
	return v, err
}

// vlogFirstEnd is the end of a log file's first complete entry or
// transaction (the header size when it has none): whether it holds data,
// without reading all of it.
func vlogFirstEnd(path string) (int64, error) {
	end, _, err := scanLog(path, 0, true)
	return end, err
}

func scanLog(path string, from int64, first bool) (end int64, maxVersion uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	if from < vlogHeaderSize {
		from = vlogHeaderSize
	}
	if fi.Size() <= from {
		return min(from, fi.Size()), 0, nil
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, from, fi.Size()-from), 1<<20)
	off, valid := from, from
	var txn uint64
	h := crc32.New(castagnoli)
	var buf []byte
	for {
		h.Reset()
		var hdr [2 + 3*binary.MaxVarintLen64]byte
		if _, err := io.ReadFull(r, hdr[:2]); err != nil {
			break
		}
		n := 2
		var vals [3]uint64
		ok := true
		for i := range vals {
			start := n
			for {
				c, err := r.ReadByte()
				if err != nil || n >= len(hdr) {
					ok = false
					break
				}
				hdr[n] = c
				n++
				if c < 0x80 {
					break
				}
			}
			if !ok {
				break
			}
			vals[i], _ = binary.Uvarint(hdr[start:n])
		}
		klen, vlen := vals[0], vals[1]
		if !ok || klen > 1<<16 || vlen > uint64(fi.Size()) {
			break
		}
		h.Write(hdr[:n])
		if need := int(klen + vlen + 4); cap(buf) < need {
			buf = make([]byte, need)
		}
		buf = buf[:klen+vlen+4]
		if _, err := io.ReadFull(r, buf); err != nil {
			break
		}
		h.Write(buf[:klen+vlen])
		if binary.BigEndian.Uint32(buf[klen+vlen:]) != h.Sum32() || klen == 0 {
			break
		}
		off += int64(n) + int64(len(buf))
		meta, key, val := hdr[0], buf[:klen], buf[klen:klen+vlen]
		switch {
		case meta&vlogBitTxn != 0:
			ts := uint64(0)
			if len(key) > 8 {
				ts = math.MaxUint64 - binary.BigEndian.Uint64(key[len(key)-8:])
			}
			if txn == 0 {
				txn = ts
			}
			if txn != ts {
				return valid, maxVersion, nil
			}
		case meta&vlogBitFinTxn != 0:
			ts, err := strconv.ParseUint(string(val), 10, 64)
			if err != nil || ts != txn {
				return valid, maxVersion, nil
			}
			maxVersion = max(maxVersion, txn)
			txn, valid = 0, off
			if first {
				return valid, maxVersion, nil
			}
		default:
			if txn != 0 {
				return valid, maxVersion, nil
			}
			if len(key) > 8 {
				maxVersion = max(maxVersion, math.MaxUint64-binary.BigEndian.Uint64(key[len(key)-8:]))
			}
			valid = off
			if first {
				return valid, maxVersion, nil
			}
		}
	}
	return valid, maxVersion, nil
}

// precheck compares the directory with the MANIFEST and the marker before
// Badger opens it; a store that looks wrong is refused with a
// *DamagedError and nothing is changed.
func precheck(dir string) error {
	f, err := listStore(dir)
	if err != nil {
		return fmt.Errorf("ckpt: check store %s: %w", dir, err)
	}
	m, hasMarker, err := readMarker(dir)
	if err != nil {
		return err
	}
	damaged := func(file, format string, args ...any) error {
		return &DamagedError{Dir: dir, File: file, Problem: fmt.Sprintf(format, args...)}
	}
	if !f.any {
		if hasMarker && m.Runs > 0 {
			return damaged("MANIFEST", "every store file is gone (the marker of %s records %d runs)", m.Written, m.Runs)
		}
		return nil
	}
	if !f.manifest {
		return damaged("MANIFEST", "missing beside %d tables, %d value-log files and %d memtables: Badger would start an empty store and delete the tables",
			len(f.ssts), len(f.vlogs), len(f.mems))
	}
	mf, err := readManifest(dir)
	if err != nil {
		return err
	}
	for id := range mf.Tables {
		if _, ok := slices.BinarySearch(f.ssts, id); !ok {
			return damaged(fmt.Sprintf("%06d.sst", id), "missing (listed in the MANIFEST)")
		}
	}
	seq := uint64(0) // the highest version Badger will find
	for _, id := range f.ssts {
		name := fmt.Sprintf("%06d.sst", id)
		if _, ok := mf.Tables[id]; !ok {
			// A crash during a flush or a compaction leaves its new table
			// behind, not yet in the MANIFEST; Badger deletes it and the
			// data is still where it was. A MANIFEST listing no table at
			// all beside tables is a replaced one.
			if len(mf.Tables) == 0 {
				return damaged(name, "not in the MANIFEST, which lists no table: Badger would delete it")
			}
			continue
		}
		v, err := checkTable(filepath.Join(dir, name), mf.Tables[id].Compression)
		if err != nil {
			return damaged(name, "%v", err)
		}
		seq = max(seq, v)
	}
	if !hasMarker {
		return nil
	}
	if !m.Clean && len(f.mems) == 0 && len(m.Mems) > 0 {
		return damaged("*.mem", "no memtable log after an unclean shutdown (the marker of %s lists %d)", m.Written, len(m.Mems))
	}
	if !m.Clean && m.LastSeq > 0 {
		// After a crash the newest writes live in the memtable logs only.
		// Badger flushes and deletes those logs on its own, so their
		// names prove nothing; the versions do: the tables and the logs
		// must hold every version the marker saw.
		for _, name := range f.mems {
			v, err := logMaxVersion(filepath.Join(dir, name))
			if err != nil {
				return fmt.Errorf("ckpt: check store %s: %w", dir, err)
			}
			seq = max(seq, v)
		}
		if seq < m.LastSeq {
			return damaged("*.mem", "writes lost: the tables and memtable logs hold versions up to %d, the marker of %s recorded %d (memtable logs missing or cut?)",
				seq, m.Written, m.LastSeq)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(m.Vlogs)) {
		fi, err := os.Stat(filepath.Join(dir, name))
		switch {
		case errors.Is(err, os.ErrNotExist) && m.GC:
			// Value-log GC was running: it may have collected the file.
		case errors.Is(err, os.ErrNotExist):
			return damaged(name, "missing (the marker of %s lists it, and value-log GC was not running): the values in it would be lost", m.Written)
		case err != nil:
			return fmt.Errorf("ckpt: check store %s: %w", dir, err)
		case fi.Size() < m.Vlogs[name]:
			return damaged(name, "cut to %d bytes (the marker of %s recorded %d)", fi.Size(), m.Written, m.Vlogs[name])
		}
	}
	if m.Vlog != "" && (len(f.vlogs) == 0 || f.vlogs[len(f.vlogs)-1] != m.Vlog) {
		// The newest value log then is an older one now (Badger rotated
		// since): it must still hold what was synced.
		fi, err := os.Stat(filepath.Join(dir, m.Vlog))
		switch {
		case errors.Is(err, os.ErrNotExist) && m.GC:
		case errors.Is(err, os.ErrNotExist):
			return damaged(m.Vlog, "missing (the marker of %s lists it, and value-log GC was not running): the values in it would be lost", m.Written)
		case err != nil:
			return fmt.Errorf("ckpt: check store %s: %w", dir, err)
		case fi.Size() < m.VlogEnd:
			return damaged(m.Vlog, "cut to %d bytes (the marker of %s recorded data up to %d)", fi.Size(), m.Written, m.VlogEnd)
		}
	}
	if m.Vlog != "" && len(f.vlogs) > 0 && f.vlogs[len(f.vlogs)-1] == m.Vlog {
		path := filepath.Join(dir, m.Vlog)
		end, err := vlogValidEnd(path, 0)
		if err != nil {
			return fmt.Errorf("ckpt: check store %s: %w", dir, err)
		}
		if end < m.VlogEnd {
			return damaged(m.Vlog, "damaged entry at offset %d: opening would cut the %d bytes up to %d that were synced",
				end, m.VlogEnd-end, m.VlogEnd)
		}
	}
	return nil
}

func readManifest(dir string) (badger.Manifest, error) {
	path := filepath.Join(dir, "MANIFEST")
	fp, err := os.Open(path)
	if err != nil {
		return badger.Manifest{}, fmt.Errorf("ckpt: check store %s: %w", dir, err)
	}
	defer fp.Close()
	fi, err := fp.Stat()
	if err != nil {
		return badger.Manifest{}, fmt.Errorf("ckpt: check store %s: %w", dir, err)
	}
	mf, end, err := badger.ReplayManifestFile(fp, 0, badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		return mf, &DamagedError{Dir: dir, File: "MANIFEST", Problem: fmt.Sprintf("unreadable (%d bytes): %v", fi.Size(), err)}
	}
	if end < fi.Size() {
		return mf, &DamagedError{Dir: dir, File: "MANIFEST", Problem: fmt.Sprintf("cut or damaged at offset %d of %d: Badger would truncate it", end, fi.Size())}
	}
	return mf, nil
}

// checkTable opens a table read-only and verifies every block's checksum,
// recovering Badger's panics on a cut or damaged file (a cut table made
// badger.Open panic with "slice bounds out of range").
func checkTable(path string, c options.CompressionType) (maxVersion uint64, err error) {
	defer func() {
		if r := recover(); r != nil {
			maxVersion, err = 0, fmt.Errorf("unreadable table: %s", panicLine(r))
		}
	}()
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil && !errors.Is(err, z.NewFile) {
		return 0, err
	}
	// BlockSize only sizes buffers of compressed tables (Badger's default).
	t, err := table.OpenTable(mf, table.Options{ReadOnly: true, ChkMode: options.OnTableRead, Compression: c, BlockSize: 4 << 10})
	if err != nil {
		return 0, fmt.Errorf("unreadable table: %w", err)
	}
	maxVersion = t.MaxVersion()
	// Close, not DecrRef: the last reference's release deletes the file.
	return maxVersion, t.Close(-1)
}

// panicLine is a recovered panic's message on one short line (Badger's
// table panics print several lines of file info).
func panicLine(r any) string {
	s := strings.Join(strings.Fields(strings.ReplaceAll(fmt.Sprint(r), "\n", " ; ")), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
