package scheduler

import (
	"errors"
	"fmt"
	"testing"

	"github.com/replay-sgd/replay/api"
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
