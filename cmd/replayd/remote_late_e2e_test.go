package main

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRemoteLateFault: a worker that goes bad after its first results
// (replayfault, REPLAY_FAULT_CORRUPT_AFTER=2: its first two results are
// right and pass their checks) is quarantined by a later spot check; the
// results it had delivered unchecked meanwhile are re-executed by the
// daemon, found wrong, and the run fails with the worker and the step in
// its reason rather than keep stored numbers of a faulty worker.
func TestRemoteLateFault(t *testing.T) {
	bin, err := faultBin()
	if err != nil {
		t.Fatal(err)
	}
	spec := remoteSpec()
	spec.Steps, spec.ResetAt = 100, nil
	// A share of 0.1 checks results of steps chosen by job identity; with
	// this spec (fixed seed, so fixed identities) the first checked one
	// after step 2 comes after unchecked wrong ones.
	d := startDaemon(t, t.TempDir(), "--workers", "0", "--remote-workers", "--nats-listen", "127.0.0.1:0", "--verify-share", "0.1")
	w := startWorkerBin(t, bin, d.natsURL(), "late", "REPLAY_FAULT_CORRUPT_AFTER=2")
	if _, err := d.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(runGuard)
	for {
		st, err := d.c.Status(ctx(t), spec.Name)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == "failed" {
			if !strings.Contains(st.Reason, "remote worker late, quarantined by a spot check, had delivered a wrong result at step") {
				t.Errorf("failed, but for another reason: %s", st.Reason)
			}
			break
		}
		if st.State == "done" {
			t.Fatal("the run finished with results of a worker found faulty later")
		}
		if time.Now().After(deadline) {
			t.Fatalf("run not failed after %v: %+v", runGuard, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	m := d.raw("/metrics")
	if !strings.Contains(m, "replay_remote_workers_quarantined 1\n") || strings.Contains(m, "replay_remote_tainted_total 0\n") {
		t.Errorf("metrics: want the worker quarantined and tainted results counted:\n%s", grepLines(m, "replay_remote_"))
	}
	w.stop(syscall.SIGTERM)
}
