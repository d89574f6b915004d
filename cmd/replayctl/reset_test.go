package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
)

func TestResetOnlyRun(t *testing.T) {
	f := newFake(t, sampleRun("fmnist"))
	out, _, err := f.cli("reset", "--at", "1000")
	if err != nil {
		t.Fatal(err)
	}
	if f.bodies[0] != `{"at":1000,"from":"backward"}` || f.lastRequest() != "POST /v1/runs/fmnist/reset?" {
		t.Errorf("sent %s to %s", f.bodies[0], f.lastRequest())
	}
	if !strings.Contains(out, "run fmnist: anchor reset at step 1000 from the backward iterate") {
		t.Errorf("output %q", out)
	}
	out, _, err = f.cli("reset", "--run", "fmnist", "--at", "7", "--from", "forward", "-o", "json")
	var l api.RunList
	if err != nil || json.Unmarshal([]byte(out), &l) != nil || len(l.Runs[0].PendingReset) != 2 {
		t.Errorf("json: %v %s", err, out)
	}
	if f.bodies[1] != `{"at":7,"from":"forward"}` {
		t.Errorf("sent %s", f.bodies[1])
	}
}

func TestResetErrors(t *testing.T) {
	f := newFake(t, sampleRun("fmnist"), sampleRun("other"))
	for _, args := range [][]string{{"--run", "fmnist"}, {"--run", "fmnist", "--at", "-1"}, {"--run", "fmnist", "--at", "x"},
		{"--run", "fmnist", "--at", "5", "--from", "init"}, {"--run", "fmnist", "--at", "5", "extra"}} {
		_, _, err := f.cli(append([]string{"reset"}, args...)...)
		if !errors.Is(err, errUsage) {
			t.Errorf("%q: %v", args, err)
		}
		oneLine(t, err)
	}
	// Out of range and unknown run: the daemon's message, nothing changed.
	_, _, err := f.cli("reset", "--run", "fmnist", "--at", "999999")
	oneLine(t, err)
	if err.Error() != "reset at step 999999: run fmnist has only 1200 forward steps" || !errors.Is(err, api.ErrInvalid) {
		t.Errorf("range: %v", err)
	}
	_, _, err = f.cli("reset", "--run", "nope", "--at", "5")
	oneLine(t, err)
	if !errors.Is(err, api.ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
	if f.mutated() != 0 {
		t.Errorf("failed resets changed the daemon")
	}
}
