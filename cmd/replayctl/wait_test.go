package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// progressing returns a hook that advances a run by 250 forward and 200
// backward steps per status request, finishing in the given state.
func progressing(final string) func(st *api.RunStatus) {
	return func(st *api.RunStatus) {
		st.ForwardStep = min(st.ForwardStep+250, st.Steps)
		st.BackwardStep = min(st.BackwardStep+200, st.Steps)
		if st.ForwardStep == st.Steps && st.BackwardStep == st.Steps {
			st.State = final
			if final == "failed" {
				st.Reason = "forward step 1000: loss is NaN (diverged)"
			}
		}
	}
}

func startRun() api.RunStatus {
	st := sampleRun("fm")
	st.Steps, st.ForwardStep, st.BackwardStep = 1000, 0, 0
	return st
}

func TestWaitPlainLines(t *testing.T) {
	f := newFake(t, startRun())
	f.onStatus = progressing("done")
	out, _, err := f.cli("wait", "--interval", "1ms")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || strings.Contains(out, "\r") {
		t.Fatalf("want 5 plain lines:\n%q", out)
	}
	if lines[0] != "fm running: forward 250/1000 (25%)  backward 200/1000 (20%)  210 ops/s  ETA 1m20s" {
		t.Errorf("first line %q", lines[0])
	}
	if !strings.HasPrefix(lines[4], "fm done: forward 1000/1000 (100%)  backward 1000/1000 (100%)") {
		t.Errorf("last line %q", lines[4])
	}
}

func TestWaitTerminalBar(t *testing.T) {
	f := newFake(t, startRun())
	f.onStatus = progressing("done")
	var o bytes.Buffer
	e := &env{ctx: t.Context(), stdout: &o, stderr: io.Discard, isTerminal: func(io.Writer) bool { return true }}
	if err := e.main([]string{"wait", "--interval", "1ms", "--addr", f.addr()}); err != nil {
		t.Fatal(err)
	}
	out := o.String()
	if strings.Count(out, "\r") != 5 || !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
		t.Errorf("bar redraws:\n%q", out)
	}
	if !strings.Contains(out, "forward [#####...............] 250/1000") || !strings.Contains(out, "backward [####################] 1000/1000") {
		t.Errorf("bars:\n%q", out)
	}
}

func TestWaitFailedAndTimeout(t *testing.T) {
	f := newFake(t, startRun())
	f.onStatus = progressing("failed")
	_, _, err := f.cli("wait", "--interval", "1ms")
	oneLine(t, err)
	if err.Error() != "run fm failed: forward step 1000: loss is NaN (diverged)" {
		t.Errorf("failed: %v", err)
	}
	f = newFake(t, startRun()) // never progresses
	_, _, err = f.cli("wait", "--interval", "5ms", "--timeout", "30ms")
	oneLine(t, err)
	if err.Error() != "wait: run fm is still running after 30ms (forward 0/1000, backward 0/1000)" {
		t.Errorf("timeout: %v", err)
	}
	for _, args := range [][]string{{"--timeout", "-1s"}, {"--timeout", "soon"}, {"--interval", "0s"}} {
		if _, _, err := f.cli(append([]string{"wait"}, args...)...); !errors.Is(err, errUsage) {
			t.Errorf("%q: %v", args, err)
		}
	}
	_, _, err = f.cli("wait", "--run", "nope")
	if !errors.Is(err, api.ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
}

func TestWaitJSON(t *testing.T) {
	f := newFake(t, startRun())
	f.onStatus = progressing("done")
	out, stderr, err := f.cli("wait", "--interval", "1ms", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var l api.RunList
	if json.Unmarshal([]byte(out), &l) != nil || l.Runs[0].State != "done" {
		t.Errorf("stdout %q", out)
	}
	if strings.Count(stderr, "\n") != 5 {
		t.Errorf("progress on stderr %q", stderr)
	}
}
