package main

import (
	"encoding/csv"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// TestRemoteExtSpotCheck: the spot checks hold for external models too. A
// `replayd worker --model-cmd` returning wrong numbers (the replayfault
// build's corruption of every result) is caught by the daemon, which
// re-executes the worker's first result with its own child of the model:
// the worker is quarantined, its results are recomputed by the daemon's
// child, and the run's stored numbers equal an in-process run's. (That the
// daemon's re-execution of a real PyTorch worker's results is bitwise
// equal, so honest workers pass, is TestE2EExtRemote's, in cmd/replayctl.)
func TestRemoteExtSpotCheck(t *testing.T) {
	bin, err := faultBin()
	if err != nil {
		t.Fatal(err)
	}
	fake := buildFake(t, t.TempDir())
	spec := api.RunSpec{Name: "x", Model: "ext:fake", LR: 0.05, Batch: 2, Steps: 300, Seed: seed(7), Window: 16,
		EvalEvery: api.Ptr(10), CheckpointEvery: 50}

	ref := startDaemon(t, t.TempDir(), "--workers", "1", "--model-cmd", "fake="+fake)
	ref.runDone(spec)
	want := collect(ref, spec)
	ref.stop(syscall.SIGTERM)

	d := startDaemon(t, t.TempDir(), "--workers", "0", "--remote-workers", "--nats-listen", "127.0.0.1:0", "--verify-share", "0",
		"--model-cmd", "fake="+fake)
	w := startWorkerArgs(t, bin, d.natsURL(), "faulty", []string{"--model-cmd", "fake=" + fake}, "REPLAY_FAULT_CORRUPT=1")
	d.runDone(spec)
	got := collect(d, spec)
	sameResults(t, got, want, "with a faulty worker")
	m := d.raw("/metrics")
	// Its first result is checked and wrong; every later one is checked
	// (it is quarantined) and wrong: one mismatch per job, none verified.
	if !strings.Contains(m, fmt.Sprintf("replay_remote_mismatches_total %d\n", spec.Steps)) || !strings.Contains(m, "replay_remote_verified_total 0\n") ||
		!strings.Contains(m, "replay_remote_workers_quarantined 1\n") {
		t.Errorf("metrics: want %d mismatches, 0 verified, the worker quarantined:\n%s", spec.Steps, grepLines(m, "replay_remote_"))
	}
	code, out, _ := d.ctl("workers", "-o", "csv")
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || len(rows) != 2 {
		t.Fatalf("replayctl workers (exit %d, %v): want a header and the faulty worker:\n%s", code, err, out)
	}
	state := slices.Index(rows[0], "state")
	if rows[1][0] != "faulty" || state < 0 || rows[1][state] != "quarantined" {
		t.Errorf("replayctl workers: want the faulty worker quarantined:\n%s", out)
	}
	w.stop(syscall.SIGTERM)
}
