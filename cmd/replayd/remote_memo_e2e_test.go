package main

import (
	"bytes"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// TestRemoteSpotCheckMemo: memo jobs computed by remote workers are spot
// checked like the others, for both memoized evaluators — the affine
// prefix (a linear model under mse), the momentum prefix (the same with
// heavy-ball momentum) and the coalescence memo (an MLP).
// With --verify-share 1 an honest worker's every result is re-executed by
// the daemon's own memo and found bitwise equal (no honest worker is
// quarantined because its memo's history differs from the daemon's); a
// worker returning wrong numbers is caught at its first result,
// quarantined, and the run's stored numbers still equal an in-process
// run's.
func TestRemoteSpotCheckMemo(t *testing.T) {
	bin, err := faultBin()
	if err != nil {
		t.Fatal(err)
	}
	affine := api.RunSpec{Name: "a", Dataset: "regression-sin", Model: "linear", Loss: "mse", LR: 0.01, Batch: 10, Steps: 120,
		Seed: seed(7), Window: 16, Strategy: "memo", ResetAt: []int{50}, EvalEvery: api.Ptr(10), CheckpointEvery: 40}
	momentum := affine
	momentum.Name, momentum.Optimizer, momentum.Momentum = "m", "momentum", api.Ptr(0.9)
	coal := remoteSpec()
	coal.Steps, coal.Strategy, coal.ResetAt = 80, "memo", []int{30}
	for _, spec := range []api.RunSpec{affine, momentum, coal} {
		t.Run(spec.Name, func(t *testing.T) {
			ref := startDaemon(t, t.TempDir(), "--workers", "1")
			ref.runDone(spec)
			want := ref.trajectory(spec.Name, "backward")
			wantParams := ref.params(spec.Name, "backward", spec.Steps)
			ref.stop(syscall.SIGTERM)

			for _, c := range []struct {
				name, share, env   string
				mismatch, verified int
				state              string
			}{
				{"honest", "1", "", 0, spec.Steps, ",ok,\n"},
				{"faulty", "0", "REPLAY_FAULT_CORRUPT=1", spec.Steps, 0, ",quarantined,\n"},
			} {
				d := startDaemon(t, t.TempDir(), "--workers", "0", "--remote-workers", "--nats-listen", "127.0.0.1:0", "--verify-share", c.share)
				var env []string
				if c.env != "" {
					env = append(env, c.env)
				}
				w := startWorkerBin(t, bin, d.natsURL(), c.name, env...)
				st, err := d.c.CreateRun(ctx(t), spec)
				if err != nil {
					t.Fatal(err)
				}
				if st.Strategy != "memo" {
					t.Fatalf("strategy %q, want memo", st.Strategy)
				}
				d.waitDone(spec.Name)
				if err := samePoints(d.trajectory(spec.Name, "backward"), want); err != nil {
					t.Errorf("%s worker: backward trajectory: %v", c.name, err)
				}
				if !bytes.Equal(d.params(spec.Name, "backward", spec.Steps), wantParams) {
					t.Errorf("%s worker: final backward parameters differ from the in-process run's", c.name)
				}
				m := d.raw("/metrics")
				if !strings.Contains(m, fmt.Sprintf("replay_remote_mismatches_total %d\n", c.mismatch)) ||
					!strings.Contains(m, fmt.Sprintf("replay_remote_verified_total %d\n", c.verified)) {
					t.Errorf("%s worker: metrics: want %d mismatches, %d verified:\n%s", c.name, c.mismatch, c.verified, grepLines(m, "replay_remote_"))
				}
				if code, out, _ := d.ctl("workers", "-o", "csv"); code != 0 || !strings.Contains(out, c.state) {
					t.Errorf("%s worker: replayctl workers (exit %d): want state %q:\n%s", c.name, code, strings.TrimSpace(c.state), out)
				}
				w.stop(syscall.SIGTERM)
				d.stop(syscall.SIGTERM)
			}
		})
	}
}
