package ckpt

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by the package wraps one of these (or
// an I/O error from the file system) so that callers can test with errors.Is.
var (
	// ErrLocked is returned by Open when another process holds the store.
	ErrLocked = errors.New("ckpt: store is in use by another process")
	// ErrFormat is returned by Open for a directory written by a newer (or
	// an unknown) on-disk format.
	ErrFormat = errors.New("ckpt: unsupported store format")
	// ErrRunExists is returned by CreateRun for a name already in use.
	ErrRunExists = errors.New("ckpt: run already exists")
	// ErrRunNotFound is returned for a run name the store does not hold.
	ErrRunNotFound = errors.New("ckpt: run not found")
	// ErrNotFound is returned for a record (checkpoint, anchor, batch) that
	// is not stored.
	ErrNotFound = errors.New("ckpt: not found")
	// ErrCorrupt is wrapped by every CorruptionError.
	ErrCorrupt = errors.New("ckpt: corrupt record")
	// ErrBadName is returned for an empty or malformed run name.
	ErrBadName = errors.New("ckpt: invalid run name")
	// ErrNotContiguous is returned by AppendForward when the steps do not
	// continue the stored batch log without a gap.
	ErrNotContiguous = errors.New("ckpt: forward steps are not contiguous")
	// ErrBeyondForward is returned when a record refers to a forward step
	// whose batch is not logged yet.
	ErrBeyondForward = errors.New("ckpt: step is beyond the run's forward log")
	// ErrDim is returned when a parameter vector's length is not the run's
	// dimension.
	ErrDim = errors.New("ckpt: parameter vector has the wrong length")
	// ErrNoAnchor is returned by PutBackward for a segment without an anchor.
	ErrNoAnchor = errors.New("ckpt: segment has no anchor")
	// ErrAnchorExists is returned by PutAnchor when the segment already has a
	// different anchor: a reset never rewrites an earlier segment.
	ErrAnchorExists = errors.New("ckpt: segment already has a different anchor")
	// ErrInvalid is returned for an argument that breaks the method's contract
	// (bad state name, negative step, empty batch, …).
	ErrInvalid = errors.New("ckpt: invalid argument")
	// ErrClosed is returned by methods of a closed Store.
	ErrClosed = errors.New("ckpt: store is closed")
)

// CorruptionError reports a stored record that failed its checksum or could
// not be decoded. It names the run, the kind of record ("checkpoint",
// "anchor", "backward", "batch", "metrics", "config", "state") and the step
// (or segment for anchors; -1 when the record has none). errors.Is(err,
// ErrCorrupt) holds for every CorruptionError.
type CorruptionError struct {
	Run  string
	Kind string
	Step int
	Err  error
}

func (e *CorruptionError) Error() string {
	where := e.Kind
	if e.Step >= 0 {
		where = fmt.Sprintf("%s at step %d", e.Kind, e.Step)
	}
	if e.Kind == "anchor" && e.Step >= 0 {
		where = fmt.Sprintf("anchor of segment %d", e.Step)
	}
	if e.Run == "" {
		return fmt.Sprintf("ckpt: %s is corrupt: %v", where, e.Err)
	}
	return fmt.Sprintf("ckpt: run %q: %s is corrupt: %v", e.Run, where, e.Err)
}

// Unwrap returns ErrCorrupt and the underlying cause, so that both
// errors.Is(err, ErrCorrupt) and tests on the cause work.
func (e *CorruptionError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrCorrupt}
	}
	return []error{ErrCorrupt, e.Err}
}

// errDrop is what the "drop" failpoint action returns (failpoint_on.go): the
// checkpoint write leaves the checkpoint out.
var errDrop = errors.New("ckpt: failpoint drop")

// ErrDamaged is wrapped by every DamagedError.
var ErrDamaged = errors.New("ckpt: store looks damaged")

// DamagedError is Open's refusal of a directory that does not look like
// the store ckpt last wrote (a missing MANIFEST, a vanished table or
// memtable log, a value log that opening would cut). Nothing on disk was
// changed; `replayd repair` backs the directory up and salvages it.
type DamagedError struct {
	Dir     string
	File    string // the file at fault, relative to Dir
	Problem string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("ckpt: store %s refused, nothing changed: %s: %s", e.Dir, e.File, e.Problem)
}

// Unwrap returns ErrDamaged.
func (e *DamagedError) Unwrap() error { return ErrDamaged }
