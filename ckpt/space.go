package ckpt

import (
	"errors"
	"fmt"
)

// ErrNoSpace is wrapped by every SpaceError.
var ErrNoSpace = errors.New("ckpt: disk full")

// SpaceError is a write refused before it started because the file system
// of the store has less free space than the write needs plus the reserve
// (Options.MinFreeDisk), or (Err set) a write the file system failed with
// ENOSPC before it was committed. Nothing was committed; the same write
// succeeds once space returns.
type SpaceError struct {
	Dir                 string
	Free, Need, Reserve int64
	Err                 error // the file system's ENOSPC, or nil for a refusal
}

func (e *SpaceError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("disk full: %d MiB free, the file system refused a write in %s: %v", e.Free>>20, e.Dir, e.Err)
	}
	return fmt.Sprintf("disk full: %d MiB free, need %d MiB (this write and the --min-free-disk reserve of %d MiB) in %s",
		e.Free>>20, (e.Need+e.Reserve+(1<<20)-1)>>20, e.Reserve>>20, e.Dir)
}

// Unwrap returns ErrNoSpace (and the file system's error, if any).
func (e *SpaceError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrNoSpace, e.Err}
	}
	return []error{ErrNoSpace}
}

// writeSlack is added to every write's estimate: keys, Badger's entry
// headers, the memtable log's copy of small values.
const writeSlack = 64 << 10

// Why a reserve and not preallocation: Badger v4 writes the value log and
// the memtable logs by copying into memory-mapped files that it creates
// sparse (value.go: copy(curlf.Data[start:], …); memtable.go:
// copy(lf.Data[lf.writeAt:], …)), with no option to write them with
// write(2). A page the file system cannot back when it is first touched is
// SIGBUS, not an error. Preallocating them (fallocate) would take twice
// ValueLogFileSize per value-log file at once, more than a small disk has.
// Checking before every write that the free space covers the write plus a
// reserve means the mapped pages the write touches are backed — unless
// another process takes the space in the meantime, which the reserve is
// there to absorb.

// checkSpace refuses a write of about need bytes when the free space minus
// need is below the reserve: the full Options.MinFreeDisk for forward writes
// (the trainer pauses first), half of it for backward results and anchors
// (which then catch up to the paused forward step).
func (s *Store) checkSpace(need int64, forward bool) error {
	if err := s.Gone(); err != nil {
		return err
	}
	if err := failpoint("space"); err != nil {
		return err
	}
	if s.opts.MinFreeDisk <= 0 {
		return nil
	}
	free, ok := s.freeSpace()
	if !ok {
		return nil // unknown (a platform without statfs): never refuse
	}
	reserve := s.opts.MinFreeDisk
	if !forward {
		reserve /= 2
	}
	need += writeSlack
	if free-need < reserve {
		e := &SpaceError{Dir: s.opts.Dir, Free: free, Need: need, Reserve: reserve}
		if s.space.Swap(e) == nil {
			s.log.Warn("ckpt: writes paused: disk full", "dir", s.opts.Dir, "free_mib", free>>20, "need_mib", need>>20, "reserve_mib", reserve>>20)
		}
		return e
	}
	if forward && s.space.Swap(nil) != nil {
		s.log.Info("ckpt: space is back: writes go on", "dir", s.opts.Dir, "free_mib", free>>20)
	}
	return nil
}

// freeSpace is the free space of the store's file system (statfs, or
// Options.FreeSpace); false when unknown.
func (s *Store) freeSpace() (int64, bool) {
	if s.opts.FreeSpace != nil {
		return s.opts.FreeSpace(s.opts.Dir)
	}
	return freeBytes(s.opts.Dir)
}

// SpaceProblem is the last write refused for want of space, or nil once a
// forward write (or SpaceAvailable) found room again.
func (s *Store) SpaceProblem() *SpaceError { return s.space.Load() }

// StillFull re-checks the last write refused for want of space: nil once
// it would fit now (and SpaceProblem is cleared), else the SpaceError.
func (s *Store) StillFull() error {
	se := s.space.Load()
	if se == nil {
		return nil
	}
	if err := s.Recheck(se); err != nil {
		return err
	}
	s.space.CompareAndSwap(se, nil)
	return nil
}

// Recheck tells whether the write se refused would be refused again now
// (the same size, the same reserve): nil when it would fit, else the new
// SpaceError. A write the file system itself refused (se.Err) is only
// known to fit by trying it: Recheck then checks the reserve alone.
func (s *Store) Recheck(se *SpaceError) error {
	need := max(se.Need-writeSlack, 0)
	return s.checkSpace(need, se.Err != nil || se.Reserve == s.opts.MinFreeDisk)
}
