package scheduler

import (
	"errors"
	"fmt"

	"github.com/replay-sgd/replay/ckpt"
)

// Sentinel errors. Every error the Scheduler returns for a bad request wraps
// one of these with a message naming the problem; the HTTP server maps them
// to 404, 400, 409 and 503.
var (
	// ErrNotFound reports an unknown run, or a record (a backward iterate
	// not computed yet) that does not exist.
	ErrNotFound = errors.New("scheduler: not found")
	// ErrInvalid reports a request that can never succeed as written: a bad
	// run spec, a reset beyond the run's steps, an unknown kind.
	ErrInvalid = errors.New("scheduler: invalid request")
	// ErrConflict reports a request that clashes with the run's state: a run
	// name in use, resuming a failed run, resetting a failed run.
	ErrConflict = errors.New("scheduler: conflict")
	// ErrTooLarge reports a run refused by admission control: its model,
	// memory or disk estimate exceeds the scheduler's limits. It wraps
	// ErrInvalid: the request cannot succeed as written under these limits.
	ErrTooLarge = fmt.Errorf("%w: too large", ErrInvalid)
	// ErrBusy reports that every slot for recomputations on behalf of a
	// query (Params, Verify) is taken: try again later (the server answers
	// 503 with Retry-After).
	ErrBusy = errors.New("scheduler: busy")
	// ErrCorrupt is ckpt.ErrCorrupt: a stored record (or a store table)
	// failed its checksum; the server answers 409 with the report.
	ErrCorrupt = ckpt.ErrCorrupt
	// ErrNoSpace is ckpt.ErrNoSpace: the store's disk is below its reserve
	// (the server answers 507).
	ErrNoSpace = ckpt.ErrNoSpace
)
