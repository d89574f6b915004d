package scheduler

import (
	"errors"
	"fmt"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
)

// Sentinel errors. Every error the Scheduler returns for a bad request wraps
// one of these with a message naming the problem. Each matches the api
// sentinel of its kind (errors.Is(err, api.ErrNotFound) holds for an error
// wrapping ErrNotFound), so that the HTTP server maps api's sentinels to
// statuses without importing the scheduler; their messages stay the
// scheduler's own.
var (
	// ErrNotFound reports an unknown run, or a record (a backward iterate
	// not computed yet) that does not exist. Matches api.ErrNotFound.
	ErrNotFound error = &sentinel{"scheduler: not found", api.ErrNotFound}
	// ErrInvalid reports a request that can never succeed as written: a bad
	// run spec, a reset beyond the run's steps, an unknown kind. Matches
	// api.ErrInvalid.
	ErrInvalid error = &sentinel{"scheduler: invalid request", api.ErrInvalid}
	// ErrConflict reports a request that clashes with the run's state: a run
	// name in use, resuming a failed run, resetting a failed run. Matches
	// api.ErrConflict.
	ErrConflict error = &sentinel{"scheduler: conflict", api.ErrConflict}
	// ErrTooLarge reports a run refused by admission control: its model,
	// memory or disk estimate exceeds the scheduler's limits. It wraps
	// ErrInvalid: the request cannot succeed as written under these limits.
	ErrTooLarge = fmt.Errorf("%w: too large", ErrInvalid)
	// ErrDataChanged reports a run whose data set, as loaded now, is not
	// the one it was created with (RunConfig.DataHash): it is not
	// computed on (or queried by recomputation) until the files are
	// restored. It wraps ErrConflict (409): the request clashes with what
	// is on disk, not with its own wording.
	ErrDataChanged = fmt.Errorf("%w: data set changed", ErrConflict)
	// ErrBusy reports that every slot for recomputations on behalf of a
	// query (Params, Verify) is taken: try again later (the server answers
	// 503 with Retry-After). Matches api.ErrBusy.
	ErrBusy error = &sentinel{"scheduler: busy", api.ErrBusy}
	// ErrCorrupt is ckpt.ErrCorrupt: a stored record (or a store table)
	// failed its checksum. The scheduler's methods return it so that it
	// also matches api.ErrCorrupt (withAPI); the server answers 409.
	ErrCorrupt = ckpt.ErrCorrupt
	// ErrNoSpace is ckpt.ErrNoSpace: the store's disk is below its reserve.
	// It also matches api.ErrNoSpace (withAPI); the server answers 507.
	ErrNoSpace = ckpt.ErrNoSpace
)

// sentinel is a scheduler error that also matches an api sentinel.
type sentinel struct {
	msg string
	api error
}

func (e *sentinel) Error() string { return e.msg }

// Is lets errors.Is(err, api.ErrX) hold for an error wrapping the
// scheduler's ErrX (errors.Is compares e itself first).
func (e *sentinel) Is(target error) bool { return target == e.api }

// withAPI makes a store error also match the api sentinel of the condition
// it carries (corruption, a full disk), so that the server, which knows only
// api's sentinels, maps it; other errors are returned as they are.
func withAPI(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ckpt.ErrCorrupt):
		return &apiMatch{err, api.ErrCorrupt}
	case errors.Is(err, ckpt.ErrNoSpace):
		return &apiMatch{err, api.ErrNoSpace}
	}
	return err
}

// apiMatch is err that also matches an api sentinel.
type apiMatch struct{ err, api error }

func (e *apiMatch) Error() string        { return e.err.Error() }
func (e *apiMatch) Unwrap() error        { return e.err }
func (e *apiMatch) Is(target error) bool { return target == e.api }
