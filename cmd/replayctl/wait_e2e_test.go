package main

import (
	"strings"
	"testing"
)

// TestE2EWaitEventDriven: `replayctl wait --interval 1h` (off a terminal:
// stdout is a pipe) on a run that is still computing returns as soon as
// the run is done. A wait that polled at its interval would see the run
// running, then sleep for the hour (runCtl kills it after 3 minutes: the
// test fails on a polling wait). A wait started after the run finished
// returns at once.
func TestE2EWaitEventDriven(t *testing.T) {
	d := startDaemon(t)
	d.ctl(t, "run", "start", "--preset", "quadratic", "--name", "r", "--steps", "5000", "--window", "64").ok(t, "run start")
	out := d.ctl(t, "wait", "--run", "r", "--interval", "1h").ok(t, "wait")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "r running: ") ||
		!strings.HasPrefix(lines[1], "r done: forward 5000/5000 (100%)  backward 5000/5000 (100%)") {
		t.Fatalf("wait output (want the running line, then the done line):\n%s", out)
	}
	if st := statusJSON(t, d, "r"); st.State != "done" {
		t.Errorf("after wait: %s", st.State)
	}
	out = d.ctl(t, "wait", "--run", "r", "--interval", "1h", "--timeout", "1m").ok(t, "wait after done")
	if !strings.HasPrefix(out, "r done: ") || strings.Count(out, "\n") != 1 {
		t.Errorf("wait after done:\n%s", out)
	}

	// status --watch follows the same stream: a second run, from its start
	// to its end, one JSON line per status printed.
	d.ctl(t, "run", "start", "--preset", "quadratic", "--name", "w", "--steps", "5000", "--window", "64").ok(t, "run start w")
	out = d.ctl(t, "status", "w", "--watch", "--interval", "1h", "-o", "json").ok(t, "status --watch")
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"state":"running"`) || !strings.Contains(lines[1], `"state":"done"`) {
		t.Errorf("status --watch -o json:\n%s", out)
	}
}
