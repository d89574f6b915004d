package ckpt

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"
)

// A write's failure is classified for the scheduler and /healthz: ENOSPC
// from the file system is a SpaceError (the run pauses and retries, as for
// a write refused before it started), any other failure of the disk a
// WriteError kept as the store's write problem until the same kind of write
// succeeds, and a refusal of the arguments neither. Before, an EIO was a
// plain error that nothing but the failed run noticed, and an ENOSPC
// failed the run.
func TestWriteFailuresClassified(t *testing.T) {
	s := openTest(t, t.TempDir())

	err := s.wrote("append", fmt.Errorf("ckpt: append forward steps to %q: %w", "r", &fs.PathError{Op: "write", Path: "000001.vlog", Err: syscall.ENOSPC}))
	var se *SpaceError
	if !errors.As(err, &se) || !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) || !strings.HasPrefix(err.Error(), "disk full: ") {
		t.Fatalf("ENOSPC: %v (%T), want a SpaceError", err, err)
	}
	if p := s.WriteProblem(); !errors.Is(p, ErrNoSpace) || !strings.Contains(p.Error(), "no space left on device") {
		t.Fatalf("write problem after ENOSPC: %v", p)
	}
	// Until a write of the same kind succeeds; others do not tell.
	must(t, s.wrote("backward", nil))
	if s.WriteProblem() == nil {
		t.Fatal("a backward write cleared the append's ENOSPC")
	}
	must(t, s.wrote("append", nil))
	if p := s.WriteProblem(); p != nil {
		t.Fatalf("write problem after a successful append: %v", p)
	}

	eio := fmt.Errorf("ckpt: put backward results of %q: %w", "r", syscall.EIO)
	err = s.wrote("backward", eio)
	var we *WriteError
	if !errors.As(err, &we) || we.Op != "backward" || !errors.Is(err, ErrWrite) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("EIO: %v (%T), want a WriteError", err, err)
	}
	if p := s.WriteProblem(); !errors.Is(p, syscall.EIO) || !strings.Contains(p.Error(), "input/output error") {
		t.Fatalf("write problem after EIO: %v", p)
	}
	// Another kind of write succeeding does not clear it; the same kind does.
	if err := s.wrote("state", nil); err != nil || s.WriteProblem() == nil {
		t.Fatalf("after a state write: %v, problem %v", err, s.WriteProblem())
	}
	if err := s.wrote("backward", nil); err != nil || s.WriteProblem() != nil {
		t.Fatalf("after a backward write: %v, problem %v", err, s.WriteProblem())
	}

	// A refusal is returned as it is and is nobody's disk problem.
	for _, r := range []error{ErrNotContiguous, ErrBeyondForward, ErrRunNotFound, ErrStoreGone, &SpaceError{Dir: "d"}} {
		in := fmt.Errorf("x: %w", r)
		if got := s.wrote("append", in); got != in || s.WriteProblem() != nil {
			t.Fatalf("refusal %v became %v, write problem %v", r, got, s.WriteProblem())
		}
	}
	// An error after the commit is never a SpaceError (a retry would
	// append the same steps again).
	if err := s.failed("append", fmt.Errorf("sync: %w", syscall.ENOSPC)); !errors.Is(err, ErrWrite) {
		t.Fatalf("ENOSPC of a sync: %v (%T), want a WriteError", err, err)
	}
	if errors.As(s.failed("append", syscall.ENOSPC), &se) {
		t.Fatal("ENOSPC of a sync is a SpaceError")
	}
	must(t, s.wrote("append", nil))
}
