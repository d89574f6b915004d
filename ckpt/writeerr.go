package ckpt

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"time"
)

// ErrWrite is wrapped by every WriteError.
var ErrWrite = errors.New("ckpt: store write failed")

// WriteError is a write that the file system or Badger failed (EIO, EROFS,
// a failed sync): not a refusal of the arguments, and not a full disk
// (ENOSPC is a SpaceError). What the write stored before it failed is
// unknown to the caller: it should reread the state from the store before
// it writes the same run again. Op names the write (append, checkpoint,
// backward, anchor, state, create, delete).
type WriteError struct {
	Dir, Op string
	Err     error
}

func (e *WriteError) Error() string {
	return fmt.Sprintf("%v (a write to the store in %s failed)", e.Err, e.Dir)
}

// Unwrap returns ErrWrite and the cause.
func (e *WriteError) Unwrap() []error { return []error{ErrWrite, e.Err} }

// refusals are the errors a write returns for its arguments or for the
// store's known condition, with nothing wrong with the disk: they are not
// write failures.
var refusals = []error{
	ErrInvalid, ErrBadName, ErrRunExists, ErrRunNotFound, ErrNotFound, ErrNotContiguous,
	ErrBeyondForward, ErrDim, ErrNoAnchor, ErrAnchorExists, ErrClosed, ErrCorrupt,
	ErrStoreGone, ErrNoSpace, ErrFormat, ErrLocked, ErrWrite,
}

// wrote classifies the outcome of write op: nil clears the op's write
// problem (the same kind of write works again); ENOSPC from the file system
// becomes a SpaceError (the caller pauses and retries, as for a write
// refused before it started); any other error that is not a refusal of
// the arguments becomes a WriteError. Either is kept as the store's write
// problem (WriteProblem, /healthz) until the same op succeeds: other kinds
// of writes may well succeed meanwhile (a small state on a disk too full
// for a checkpoint).
func (s *Store) wrote(op string, err error) error {
	if err == nil {
		if _, had := s.writeProblems.LoadAndDelete(op); had {
			s.log.Info("ckpt: writes work again", "dir", s.opts.Dir, "op", op)
		}
		return nil
	}
	if errors.Is(err, syscall.ENOSPC) && !errors.Is(err, ErrNoSpace) {
		free, _ := s.freeSpace()
		se := &SpaceError{Dir: s.opts.Dir, Free: free, Reserve: s.opts.MinFreeDisk, Err: err}
		old, _ := s.writeProblems.Swap(op, writeProblem{err: se, at: time.Now()})
		if p, ok := old.(writeProblem); !ok || !errors.Is(p.err, ErrNoSpace) {
			// Once per pause: the writer retries every second.
			s.log.Warn("ckpt: writes paused: the file system is full", "dir", s.opts.Dir, "op", op, "err", err)
		}
		return se
	}
	for _, r := range refusals {
		if errors.Is(err, r) {
			return err
		}
	}
	we := &WriteError{Dir: s.opts.Dir, Op: op, Err: err}
	s.writeProblems.Store(op, writeProblem{err: we, at: time.Now()})
	s.log.Error("ckpt: a store write failed", "dir", s.opts.Dir, "op", op, "err", err)
	return we
}

// failed is wrote for an error after the write was committed (its sync):
// a WriteError even for ENOSPC, since retrying the write is not safe.
func (s *Store) failed(op string, err error) error {
	if err == nil {
		return s.wrote(op, nil)
	}
	we := &WriteError{Dir: s.opts.Dir, Op: op, Err: err}
	s.writeProblems.Store(op, writeProblem{err: we, at: time.Now()})
	s.log.Error("ckpt: a store write failed after its commit", "dir", s.opts.Dir, "op", op, "err", err)
	return we
}

type writeProblem struct {
	err error
	at  time.Time
}

// WriteProblem reports the writes the file system failed (a WriteError, or
// a SpaceError for its ENOSPC) that have not succeeded since, oldest first,
// or nil: a store that cannot write is unhealthy even when no run is left
// to notice.
func (s *Store) WriteProblem() error {
	var ps []writeProblem
	s.writeProblems.Range(func(_, v any) bool {
		ps = append(ps, v.(writeProblem))
		return true
	})
	if len(ps) == 0 {
		return nil
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].at.Before(ps[j].at) })
	msgs := make([]string, len(ps))
	errs := make([]error, len(ps))
	for i, p := range ps {
		msgs[i] = p.err.Error() + " (at " + p.at.UTC().Format(time.RFC3339) + ")"
		errs[i] = p.err
	}
	return fmt.Errorf("%s%w", strings.Join(msgs, "; "), silent{errors.Join(errs...)})
}
