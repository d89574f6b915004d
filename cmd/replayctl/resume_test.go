package main

import (
	"errors"
	"testing"

	"github.com/replay-sgd/replay/api"
)

func TestResume(t *testing.T) {
	st := sampleRun("fm")
	st.State = "paused"
	f := newFake(t, st)
	out, _, err := f.cli("resume", "fm")
	if err != nil || out != "run fm: running (forward 1200/5000, backward 900)\n" || f.lastRequest() != "POST /v1/runs/fm/resume?" {
		t.Errorf("%v %q %s", err, out, f.lastRequest())
	}
	out, _, err = f.cli("resume", "fm", "-o", "csv")
	if err != nil || len(out) == 0 || out[:5] != "name," {
		t.Errorf("csv: %v %q", err, out)
	}
	_, _, err = f.cli("resume", "nope")
	oneLine(t, err)
	if !errors.Is(err, api.ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
}
