package scheduler

import (
	"errors"
	"fmt"
	"testing"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
)

// The server maps api's sentinels to statuses without importing the
// scheduler: every scheduler sentinel, wrapped as the scheduler wraps it,
// must match its api sentinel and no other, and keep its own message.
func TestSentinelsMatchAPI(t *testing.T) {
	all := []error{api.ErrNotFound, api.ErrInvalid, api.ErrConflict, api.ErrBusy, api.ErrUnauthorized, api.ErrUnreachable}
	for _, tc := range []struct {
		err  error
		want error
		msg  string
	}{
		{ErrNotFound, api.ErrNotFound, "scheduler: not found"},
		{ErrInvalid, api.ErrInvalid, "scheduler: invalid request"},
		{ErrConflict, api.ErrConflict, "scheduler: conflict"},
		{ErrTooLarge, api.ErrInvalid, "scheduler: invalid request: too large"},
		{ErrBusy, api.ErrBusy, "scheduler: busy"},
	} {
		wrapped := fmt.Errorf("run %q: %w", "r", tc.err)
		if got := wrapped.Error(); got != `run "r": `+tc.msg {
			t.Errorf("message %q, want %q", got, `run "r": `+tc.msg)
		}
		if !errors.Is(wrapped, tc.err) {
			t.Errorf("%v does not match itself", tc.err)
		}
		for _, a := range all {
			if got := errors.Is(wrapped, a); got != (a == tc.want) {
				t.Errorf("errors.Is(%q, %v) = %v, want %v", wrapped, a, got, a == tc.want)
			}
		}
	}
	if errors.Is(ErrNotFound, ErrInvalid) || errors.Is(ErrBusy, ErrConflict) {
		t.Error("distinct scheduler sentinels match each other")
	}
}

// Store conditions reach the server as api's sentinels: withAPI keeps the
// store error (its message, errors.Is on ckpt's sentinel) and adds api's.
func TestWithAPIStoreConditions(t *testing.T) {
	for _, tc := range []struct{ err, want error }{
		{fmt.Errorf("read checkpoint 50: %w", ckpt.ErrCorrupt), api.ErrCorrupt},
		{fmt.Errorf("write: %w", ckpt.ErrNoSpace), api.ErrNoSpace},
	} {
		got := storeErr("r", tc.err)
		if !errors.Is(got, tc.want) || !errors.Is(got, tc.err) || got.Error() != `run "r": `+tc.err.Error() {
			t.Errorf("storeErr(%v) = %v: matches api %v: %v, itself: %v", tc.err, got, tc.want, errors.Is(got, tc.want), errors.Is(got, tc.err))
		}
	}
	if other := errors.New("x"); withAPI(other) != other || withAPI(nil) != nil {
		t.Error("withAPI changed an error that carries no store condition")
	}
}
