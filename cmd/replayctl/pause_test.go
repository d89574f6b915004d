package main

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/replay-sgd/replay/api"
)

func TestPause(t *testing.T) {
	f := newFake(t, sampleRun("fm"))
	out, _, err := f.cli("pause", "fm")
	if err != nil || out != "run fm: paused (forward 1200/5000, backward 900)\n" || f.lastRequest() != "POST /v1/runs/fm/pause?" {
		t.Errorf("%v %q %s", err, out, f.lastRequest())
	}
	// The only run may be left out; JSON gives the status.
	out, _, err = f.cli("pause", "-o", "json")
	var l api.RunList
	if err != nil || json.Unmarshal([]byte(out), &l) != nil || l.Runs[0].State != "paused" {
		t.Errorf("json: %v %s", err, out)
	}
	before := f.mutated()
	_, _, err = f.cli("pause", "nope")
	oneLine(t, err)
	if !errors.Is(err, api.ErrNotFound) || f.mutated() != before {
		t.Errorf("unknown: %v", err)
	}
	if _, _, err := f.cli("pause", "a", "b"); !errors.Is(err, errUsage) {
		t.Errorf("two names: %v", err)
	}
}
