package ckpt

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"
)

// Store is a Badger database of runs. It is safe for concurrent use; writes
// to one run are serialised by a per-run mutex, writes to different runs
// proceed in parallel.
type Store struct {
	db   *badger.DB
	opts Options
	log  *slog.Logger
	lock *os.File

	// gate is held shared by every write and exclusively by DropPrefix,
	// during which Badger refuses writes (ErrBlockedWrites), and by GC.
	gate sync.RWMutex

	mu struct {
		sync.Mutex
		runs   map[string]*sync.Mutex
		closed bool
	}

	// marker is the last marker written (see marker.go).
	marker struct {
		sync.Mutex
		m  marker
		at time.Time
		gc bool // value-log GC is running (markGC)
	}

	// space is the last write refused for want of space (space.go).
	space atomic.Pointer[SpaceError]
	// writeProblems maps a write's op to its last failure (a
	// writeProblem, writeerr.go) until the same op succeeds.
	writeProblems sync.Map
	// gone is set when the directory vanished or was replaced (watch.go).
	gone atomic.Pointer[error]

	gcRewrote atomic.Bool // a GC round rewrote a value-log file (GC)
	gcKick    chan struct{}
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

func lockedError(dir string) error {
	return fmt.Errorf("ckpt: store %s is in use by another process%w", dir, silent{ErrLocked})
}

// silent wraps an error for errors.Is without adding text, so that the
// message stays the one line the user needs.
type silent struct{ err error }

func (s silent) Error() string { return "" }
func (s silent) Unwrap() error { return s.err }

// Open opens (creating if needed) the store in opts.Dir. It fails with
// ErrLocked when another process has it open and with ErrFormat when it was
// written by a newer format.
func Open(opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("ckpt: create store %s: %w", opts.Dir, err)
	}

	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	check := precheck
	if opts.Salvage {
		check = func(dir string) error {
			if err := salvageManifest(dir, opts.logger()); err != nil {
				return err
			}
			return keepNewestVlog(dir, opts.logger())
		}
	}
	if err := check(opts.Dir); err != nil {
		if lock != nil {
			lock.Close()
		}
		return nil, err
	}
	// After the check: a refused store is left exactly as it was.
	if err := private(opts.Dir, opts.logger()); err != nil {
		if lock != nil {
			lock.Close()
		}
		return nil, err
	}
	if err := removeEmptyLogs(opts.Dir, opts.Logger); err != nil {
		if lock != nil {
			lock.Close()
		}
		return nil, fmt.Errorf("ckpt: open store %s: %w", opts.Dir, err)
	}
	db, err := openBadger(opts)
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, lockedError(opts.Dir)
		}
		return nil, fmt.Errorf("ckpt: open store %s: %w", opts.Dir, err)
	}
	s := &Store{db: db, opts: opts, lock: lock, gcKick: make(chan struct{}, 1), stop: make(chan struct{})}
	s.log = opts.Logger
	if s.log == nil {
		s.log = slog.Default()
	}
	s.mu.runs = make(map[string]*sync.Mutex)
	if err := s.checkFormat(); err != nil {
		s.closeDB()
		return nil, err
	}
	if err := s.finishDeletes(); err != nil {
		s.closeDB()
		return nil, err
	}
	s.noteMarker(true)
	if fi, err := os.Stat(opts.Dir); err == nil {
		if id, ok := idOf(fi); ok {
			s.wg.Add(1)
			go s.watchDir(id)
		}
	}
	if opts.GCInterval > 0 {
		s.wg.Add(1)
		go s.gcLoop()
	}
	return s, nil
}

// markerEvery bounds how often syncs rewrite the marker: it is a lower
// bound of what is stored, so an older one only checks less.
const markerEvery = time.Second

// noteMarker rewrites the marker after a sync (at most every markerEvery
// unless force). A failure is logged: the marker guards the next start, the
// data just written is stored.
func (s *Store) noteMarker(force bool) error {
	s.marker.Lock()
	defer s.marker.Unlock()
	if !force && time.Since(s.marker.at) < markerEvery {
		return nil
	}
	runs, err := s.Runs()
	if err == nil {
		s.marker.m, err = writeMarker(s.opts.Dir, len(runs), s.lastVersion(), false, s.marker.gc, s.marker.m)
	}
	if err == nil {
		err = private(s.opts.Dir, s.log) // files Badger created since
	}
	if err != nil {
		s.log.Warn("ckpt: cannot update the store marker", "dir", s.opts.Dir, "err", err)
		return err
	}
	s.marker.at = time.Now()
	return nil
}

// lastVersion is the version (commit timestamp) of the last committed
// write: what the marker records as the store's last sequence. It is the
// read timestamp of a fresh read-only transaction, which Badger's oracle
// gives under its lock once every commit up to it is applied; DB.MaxVersion
// would give the same number but reads the memtable's counter without the
// lock its writer holds (a data race with concurrent writes, seen by the
// race detector between the GC loop's marker update and a write).
func (s *Store) lastVersion() uint64 {
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	return txn.ReadTs()
}

// markGC records in the marker that value-log GC may delete files (on) or
// has stopped (off).
func (s *Store) markGC(on bool) error {
	s.marker.Lock()
	s.marker.gc = on
	s.marker.Unlock()
	return s.noteMarker(true)
}

// removeEmptyLogs deletes the empty memtable logs and value-log files a
// crash can leave: Badger creates such a file and then extends it, and a
// process killed in between leaves it at 0 bytes. It holds nothing (Badger
// writes only into the extended file), but Badger refuses to open an
// existing one of size 0 ("while opening fid: N err: Create a new file"),
// so without this the store would not reopen after such a crash (seen in
// TestCrashRecovery, about one run in ten under load).
func removeEmptyLogs(dir string, log *slog.Logger) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // a new store
		}
		return err
	}
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !(strings.HasSuffix(name, ".mem") || strings.HasSuffix(name, ".vlog")) {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Size() != 0 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("remove the empty %s a crash left: %w", name, err)
		}
		if log != nil {
			log.Info("ckpt: removed an empty log file a crash left", "dir", dir, "file", name)
		}
	}
	return nil
}

// openBadger opens the database, turning a panic of Badger's on a damaged
// table into a DamagedError (precheck reads every table first, so this is a
// last line).
func openBadger(opts Options) (db *badger.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &DamagedError{Dir: opts.Dir, File: "*.sst", Problem: "Badger panicked opening the store: " + panicLine(r)}
		}
	}()
	return badger.Open(opts.badger())
}

// private makes the store's directory 0700 and its files 0600, whatever
// they were (Badger creates its files 0644 under the usual umask; the runs'
// parameters are the user's data). A directory others could read is warned
// about once.
func private(dir string, log *slog.Logger) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("ckpt: store %s: %w", dir, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		log.Warn("ckpt: the store directory was open to other users; making it 0700", "dir", dir, "mode", fi.Mode().Perm().String())
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("ckpt: store %s: %w", dir, err)
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("ckpt: store %s: %w", dir, err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(filepath.Join(dir, e.Name()), fi.Mode().Perm()&0o700); err != nil {
				return fmt.Errorf("ckpt: store %s: %w", dir, err)
			}
		}
	}
	return nil
}

func (s *Store) checkFormat() error {
	return s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(formatKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			it := txn.NewIterator(badger.IteratorOptions{})
			it.Rewind()
			empty := !it.Valid()
			it.Close()
			if !empty {
				return fmt.Errorf("%w: %s holds a database without a ckpt format key", ErrFormat, s.opts.Dir)
			}
			v, _ := msgpack.Marshal(formatVersion)
			return txn.Set(formatKey, v)
		}
		if err != nil {
			return fmt.Errorf("ckpt: read format of %s: %w", s.opts.Dir, err)
		}
		var ver int
		if err := item.Value(func(v []byte) error { return msgpack.Unmarshal(v, &ver) }); err != nil {
			return fmt.Errorf("%w: %s: unreadable format key: %w", ErrFormat, s.opts.Dir, err)
		}
		if ver > formatVersion {
			return fmt.Errorf("%w: %s was written in format %d, this build reads up to %d: upgrade replay",
				ErrFormat, s.opts.Dir, ver, formatVersion)
		}
		return nil
	})
}

// finishDeletes completes deletions interrupted by a crash (see DeleteRun).
func (s *Store) finishDeletes() error {
	var names []string
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: deletingPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			names = append(names, string(it.Item().Key()[len(deletingPrefix):]))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ckpt: list interrupted deletions: %w", err)
	}
	for _, n := range names {
		s.log.Warn("ckpt: finishing interrupted deletion", "run", n)
		if err := s.dropRun(n); err != nil {
			return err
		}
	}
	return nil
}

// Close stops GC and closes the database. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		runs, rerr := s.Runs()
		seq := s.lastVersion()
		s.mu.Lock()
		s.mu.closed = true
		s.mu.Unlock()
		close(s.stop)
		s.wg.Wait()
		s.closeErr = s.closeDB()
		if s.closeErr == nil && rerr == nil {
			// Badger has closed: the files have their final sizes.
			s.marker.Lock()
			_, err := writeMarker(s.opts.Dir, len(runs), seq, true, false, s.marker.m)
			s.marker.Unlock()
			if err != nil {
				s.log.Warn("ckpt: cannot update the store marker", "dir", s.opts.Dir, "err", err)
			}
		}
	})
	return s.closeErr
}

// closeDB closes Badger, waiting at most Options.CloseTimeout (if set):
// with its directory gone Badger retries its final flush forever, and the
// process must still be able to exit.
func (s *Store) closeDB() error {
	done := make(chan error, 1)
	go func() { done <- s.db.Close() }()
	var timeout <-chan time.Time
	if s.opts.CloseTimeout > 0 {
		t := time.NewTimer(s.opts.CloseTimeout)
		defer t.Stop()
		timeout = t.C
	}
	var err error
	select {
	case err = <-done:
	case <-timeout:
		err = fmt.Errorf("badger did not close within %v (writes since the last sync may be lost): %w", s.opts.CloseTimeout, errors.Join(s.Gone(), errCloseTimeout))
	}
	if s.lock != nil {
		s.lock.Close()
	}
	if err != nil {
		return fmt.Errorf("ckpt: close store %s: %w", s.opts.Dir, err)
	}
	return nil
}

var errCloseTimeout = errors.New("ckpt: close timed out")

func (s *Store) gcLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.gcKick:
		}
		if err := s.GC(); err != nil {
			s.log.Warn("ckpt: value-log GC failed", "dir", s.opts.Dir, "err", err)
		}
	}
}

// GC runs value-log garbage collection until Badger finds no file worth
// rewriting (more than half of it garbage).
//
// Each round holds the write gate exclusively: Badger's GC reads the
// memtable's version counter without the lock its writers update it under
// (a data race the race detector reports), and a round rewrites one file
// only, so writers wait briefly and rarely.
func (s *Store) GC() error {
	// GC deletes the value-log files it rewrote, at once or, while
	// iterators are open, later: the marker says so from the first round
	// on, and once a round rewrote a file, until Close (whose marker lists
	// the files as they are), so that a crash is not taken for a lost file.
	if err := s.markGC(true); err != nil {
		return fmt.Errorf("ckpt: value-log GC not started: %w", err)
	}
	defer func() {
		if !s.gcRewrote.Load() {
			_ = s.markGC(false)
		}
	}()
	for {
		select {
		case <-s.stop:
			return nil
		default:
		}
		s.gate.Lock()
		err := s.db.RunValueLogGC(0.5)
		s.gate.Unlock()
		switch {
		case err == nil:
			s.gcRewrote.Store(true)
			continue
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			return nil
		default:
			return fmt.Errorf("ckpt: value-log GC: %w", err)
		}
	}
}

func (s *Store) kickGC() {
	select {
	case s.gcKick <- struct{}{}:
	default:
	}
}

// Size returns the disk space of the LSM tree (tables and memtable logs) and
// of the value log, in bytes.
func (s *Store) Size() (lsm, vlog int64) {
	_ = filepath.WalkDir(s.opts.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		switch filepath.Ext(path) {
		case ".sst", ".mem":
			lsm += diskUsage(fi)
		case ".vlog":
			vlog += diskUsage(fi)
		}
		return nil
	})
	return lsm, vlog
}

// runMu returns the mutex serialising writes to run name.
func (s *Store) runMu(name string) (*sync.Mutex, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil, ErrClosed
	}
	m := s.mu.runs[name]
	if m == nil {
		m = new(sync.Mutex)
		s.mu.runs[name] = m
	}
	return m, nil
}

// lockRun validates name and locks it; call the returned function to unlock.
func (s *Store) lockRun(name string) (func(), error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	m, err := s.runMu(name)
	if err != nil {
		return nil, err
	}
	m.Lock()
	return m.Unlock, nil
}

func (s *Store) update(fn func(txn *badger.Txn) error) (err error) {
	if err := s.Gone(); err != nil {
		return err
	}
	return s.updateAlways(fn)
}

// updateAlways is update even after the directory is gone (PutState: the
// scheduler marks its runs failed in memory only once the state is
// written; the write itself goes into deleted files).
func (s *Store) updateAlways(fn func(txn *badger.Txn) error) (err error) {
	s.gate.RLock()
	defer s.gate.RUnlock()
	defer s.recoverDamage(&err)
	return s.db.Update(fn)
}

func (s *Store) view(fn func(txn *badger.Txn) error) (err error) {
	s.mu.Lock()
	closed := s.mu.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	defer s.recoverDamage(&err)
	return s.db.View(fn)
}

// recoverDamage turns a panic of Badger's reading a damaged table (a slice
// out of range in a block, a bad index) into a CorruptionError: the caller
// gets a report, the process goes on. Only Badger's code runs under it with
// our decoding, which returns errors and does not panic.
func (s *Store) recoverDamage(err *error) {
	r := recover()
	if r == nil {
		return
	}
	s.log.Error("ckpt: Badger panicked reading the store: a table is damaged", "dir", s.opts.Dir, "panic", panicLine(r))
	*err = &CorruptionError{Kind: "table", Step: -1, Err: fmt.Errorf("badger panicked reading %s (a table is damaged; replayd repair): %s", s.opts.Dir, panicLine(r))}
}

// sync makes every write so far durable.
func (s *Store) sync() error {
	if err := failpoint("sync"); err != nil {
		return fmt.Errorf("ckpt: sync %s: %w", s.opts.Dir, err)
	}
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("ckpt: sync %s: %w", s.opts.Dir, err)
	}
	s.noteMarker(false)
	return nil
}
