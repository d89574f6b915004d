package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// TestRemoteFingerprintAny: with only a worker of another fingerprint
// (another OPENBLAS_CORETYPE) and no in-process worker, a run started with
// `replayctl run start --fingerprint any` is computed by it to the end,
// while a bitwise run created beside it gets no backward result at all;
// status says the first is not bitwise (JSON and table) and the second
// is; the any run's results are not spot checked (none verified, none
// mismatched). A worker of the daemon's fingerprint then finishes the
// bitwise run.
func TestRemoteFingerprintAny(t *testing.T) {
	d := startDaemon(t, t.TempDir(), "--workers", "0", "--remote-workers", "--nats-listen", "127.0.0.1:0")
	url := d.natsURL()
	other := startWorker(t, url, "other", "OPENBLAS_CORETYPE=replay-test-other-kernel")
	waitLog(t, other.log, "worker started")

	bitwise := remoteSpec()
	bitwise.Name, bitwise.Steps, bitwise.ResetAt = "b", 100, nil
	if _, err := d.c.CreateRun(ctx(t), bitwise); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := d.ctl("run", "start", "--name", "a", "--dataset", "regression-sin", "--model", "mlp:300x3",
		"--init", "he", "--loss", "mse", "--lr", "0.001", "--batch", "10", "--steps", "100", "--seed", "5",
		"--window", "24", "--reset-at", "none", "--eval-every", "10", "--checkpoint-every", "50", "--fingerprint", "any")
	if code != 0 {
		t.Fatalf("replayctl run start --fingerprint any: exit %d: %s%s", code, out, errOut)
	}
	a := d.waitDone("a")
	if a.Bitwise || a.Spec.Fingerprint != api.FingerprintAny {
		t.Errorf("status of the any run: bitwise %v, fingerprint %q; want false, any", a.Bitwise, a.Spec.Fingerprint)
	}
	// The bitwise run's forward is long done (100 steps of a small MLP
	// take less than its backward jobs): its loop has jobs queued, which
	// the odd worker, bound and idle, must not have taken.
	b := d.waitStep("b", bitwise.Steps)
	if b.BackwardStep != 0 {
		t.Errorf("bitwise run: backward frontier %d with only a worker of another fingerprint, want 0", b.BackwardStep)
	}
	if !b.Bitwise || b.Spec.Fingerprint != "" {
		t.Errorf("status of the bitwise run: bitwise %v, fingerprint %q; want true, \"\"", b.Bitwise, b.Spec.Fingerprint)
	}
	m := d.raw("/metrics")
	if !strings.Contains(m, "replay_remote_verified_total 0\n") || !strings.Contains(m, "replay_remote_mismatches_total 0\n") {
		t.Errorf("metrics: the any run's results should not be spot checked:\n%s", grepLines(m, "replay_remote_"))
	}
	code, out, errOut = d.ctl("status")
	if code != 0 {
		t.Fatalf("replayctl status: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "a: not bitwise") || strings.Contains(out, "b: not bitwise") {
		t.Errorf("replayctl status: want a (only) noted not bitwise:\n%s", out)
	}
	code, out, _ = d.ctl("status", "-o", "json")
	var list api.RunList
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil {
		t.Fatalf("replayctl status -o json: exit %d, %v:\n%s", code, err, out)
	}
	for _, r := range list.Runs {
		if r.Bitwise != (r.Name == "b") {
			t.Errorf("replayctl status -o json: run %s bitwise %v", r.Name, r.Bitwise)
		}
	}

	same := startWorker(t, url, "same")
	d.waitDone("b")
	other.stop(syscall.SIGTERM)
	same.stop(syscall.SIGTERM)
	if strings.Contains(other.log.String(), "done=0") || !strings.Contains(other.log.String(), "worker stopped") {
		t.Errorf("the worker of another fingerprint did not report the any run's jobs:\n%s", tail(other.log.String(), 5))
	}
	if strings.Contains(same.log.String(), "done=0") {
		t.Errorf("the matching worker did not compute the bitwise run:\n%s", tail(same.log.String(), 5))
	}
}

// TestRemoteFingerprintAnyQuarantined: a worker returning wrong numbers
// (replayfault) is quarantined by a bitwise run's spot check; on a run of
// fingerprint any afterwards, whose results are not compared, it is not
// trusted either: its results are recomputed by the daemon, and the run's
// final parameters equal an in-process run's byte for byte.
func TestRemoteFingerprintAnyQuarantined(t *testing.T) {
	bin, err := faultBin()
	if err != nil {
		t.Fatal(err)
	}
	spec := remoteSpec()
	spec.Steps, spec.ResetAt = 100, nil
	ref := startDaemon(t, t.TempDir(), "--workers", "1")
	ref.runDone(spec)
	wantParams := ref.params(spec.Name, "backward", spec.Steps)
	ref.stop(syscall.SIGTERM)

	d := startDaemon(t, t.TempDir(), "--workers", "0", "--remote-workers", "--nats-listen", "127.0.0.1:0", "--verify-share", "0")
	w := startWorkerBin(t, bin, d.natsURL(), "faulty", "REPLAY_FAULT_CORRUPT=1")
	d.runDone(spec)
	anySpec := spec
	anySpec.Name, anySpec.Fingerprint = "a", api.FingerprintAny
	if _, err := d.c.CreateRun(ctx(t), anySpec); err != nil {
		t.Fatal(err)
	}
	if st := d.waitDone("a"); st.Bitwise {
		t.Error("the any run's status says bitwise")
	}
	if !bytes.Equal(d.params("a", "backward", spec.Steps), wantParams) {
		t.Error("the any run's final backward parameters differ from the in-process run's: the quarantined worker's results were taken")
	}
	// Only the bitwise run's results were compared (each one of the
	// quarantined worker's): the any run's add no mismatch.
	if m := d.raw("/metrics"); !strings.Contains(m, fmt.Sprintf("replay_remote_mismatches_total %d\n", spec.Steps)) {
		t.Errorf("metrics: want %d mismatches (the bitwise run's):\n%s", spec.Steps, grepLines(m, "replay_remote_"))
	}
	w.stop(syscall.SIGTERM)
}
