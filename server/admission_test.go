package server

import (
	"fmt"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/scheduler"
)

// Field names are exact: encoding/json alone would read "Steps" as steps.
func TestDecodeExactKeys(t *testing.T) {
	h := newHarness(t, Options{})
	wantError(t, h.json("POST", "/v1/runs", `{"preset":"quadratic","Steps":10}`), 400,
		`unknown field "Steps" (field names are case-sensitive: "steps")`)
	wantError(t, h.json("POST", "/v1/runs", `{"preset":"quadratic","STEPS":10}`), 400, `"steps"`)
	wantError(t, h.json("POST", "/v1/runs", `{"preset":"quadratic","stepz":10}`), 400, `unknown field "stepz"`)
	wantError(t, h.json("POST", "/v1/runs/x/reset", `{"At":3}`), 400, `unknown field "At"`)
	if len(h.fake.runs) != 0 {
		t.Fatalf("a refused body created runs: %v", h.fake.runs)
	}
	// The exact names still work, and a 10 KB key is not echoed whole.
	st := decodeStatus(t, h.json("POST", "/v1/runs", `{"name":"a","steps":10}`), 201)
	if st.Spec.Steps != 10 {
		t.Fatalf("steps %d, want 10", st.Spec.Steps)
	}
	long := strings.Repeat("k", 10<<10)
	a := h.json("POST", "/v1/runs", fmt.Sprintf(`{%q:1}`, long))
	wantError(t, a, 400, "unknown field")
	if len(a.body) > 300 {
		t.Fatalf("error of %d bytes echoes the key: %.200q", len(a.body), a.body)
	}
}

// Whatever the backend says, the error body is one short line.
func TestErrorBodyCapped(t *testing.T) {
	h := newHarness(t, Options{})
	h.fake.fail["Create"] = fmt.Errorf("run spec: name %q: bad: %w", strings.Repeat("n", 10<<10), scheduler.ErrInvalid)
	a := h.json("POST", "/v1/runs", `{"name":"x"}`)
	wantError(t, a, 400, "run spec: name")
	if len(a.body) > 2<<10 {
		t.Fatalf("error body of %d bytes", len(a.body))
	}
}

// A saturated backend: 503 with Retry-After (a stopping one has none).
func TestBusyRetryAfter(t *testing.T) {
	h := newHarness(t, Options{})
	h.fake.Create(api.RunSpec{Name: "r", Steps: 10})
	h.fake.fail["Params"] = fmt.Errorf("all 1 slots busy: %w", scheduler.ErrBusy)
	a := h.do("GET", "/v1/runs/r/params?kind=backward&step=3", nil)
	wantError(t, a, 503, "busy")
	if got := a.header.Get("Retry-After"); got != "1" {
		t.Fatalf("Retry-After %q, want 1", got)
	}
	h.fake.fail["Verify"] = fmt.Errorf("all 1 slots busy: %w", scheduler.ErrBusy)
	a = h.do("POST", "/v1/runs/r/verify", nil)
	wantError(t, a, 503, "busy")
	if a.header.Get("Retry-After") == "" {
		t.Fatal("verify: no Retry-After")
	}
}
