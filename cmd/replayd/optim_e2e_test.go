package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/export"
	"github.com/replay-sgd/replay/internal/testseed"
)

// mustCtl runs replayctl against d (admission_e2e_test.go's ctl) and
// returns its stdout; a non-zero exit fails the test.
func (d *daemon) mustCtl(args ...string) string {
	d.t.Helper()
	code, stdout, stderr := d.ctl(args...)
	if code != 0 {
		d.t.Fatalf("replayctl %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	return stdout
}

// adamKillArgs is a small Fashion-MNIST Adam run with windowed and manual
// resets, started through replayctl (the flags a user types).
var adamKillArgs = []string{
	"run", "start", "--name", "adam", "--dataset", "fashion-mnist", "--model", "mlp:32", "--optimizer", "adam",
	"--lr", "0.001", "--beta2", "0.99", "--batch", "8", "--steps", "400", "--seed", "3", "--window", "16",
	"--reset-at", "200", "--eval-every", "10", "--eval-size", "200", "--checkpoint-every", "50",
}

// exportState exports the whole state (θ and Adam's) at a step through
// replayctl export --with-state and returns the file's bytes.
func (d *daemon) exportState(kind string, step int) []byte {
	d.t.Helper()
	out := filepath.Join(d.t.TempDir(), fmt.Sprintf("%s-%d.safetensors", kind, step))
	d.mustCtl("export", "--run", "adam", "--kind", kind, "--step", fmt.Sprint(step), "--with-state", "--out", out)
	b, err := os.ReadFile(out)
	if err != nil {
		d.t.Fatal(err)
	}
	return b
}

// TestKillRestartAdam SIGKILLs the daemon at random points of an Adam run,
// restarts it each time, and compares the trajectories and the whole
// exported states (θ, exp_avg, exp_avg_sq, step) with an uninterrupted run:
// bitwise equal. The exported names are the layout rule's.
func TestKillRestartAdam(t *testing.T) {
	rng := rand.New(rand.NewPCG(testseed.Seed(t), 0x6164616d))
	args := []string{"--workers", "2"}
	const steps, every = 400, 10
	spec := api.RunSpec{Name: "adam", Steps: steps, EvalEvery: api.Ptr(every)}

	ref := startDaemon(t, t.TempDir(), args...)
	if out := ref.mustCtl(adamKillArgs...); !strings.Contains(out, "optimizer adam") {
		t.Errorf("run start says %q, not the optimizer", out)
	}
	refSt := ref.waitDone("adam")
	if refSt.Spec.Optimizer != "adam" || refSt.Spec.Beta2 == nil || *refSt.Spec.Beta2 != 0.99 || refSt.Spec.Beta1 == nil || *refSt.Spec.Beta1 != 0.9 {
		t.Fatalf("resolved spec %+v", refSt.Spec)
	}
	if out := ref.mustCtl("status"); !strings.Contains(out, "adam: optimizer adam beta1=0.9 beta2=0.99 eps=1e-08 weight_decay=0") {
		t.Errorf("status does not show the optimizer:\n%s", out)
	}
	want := collect(ref, spec)
	wantState := map[string][]byte{}
	for _, k := range []string{"forward", "backward"} {
		for _, step := range []int{steps, 137} {
			wantState[fmt.Sprintf("%s@%d", k, step)] = ref.exportState(k, step)
		}
	}
	ts, err := export.ReadSafetensors(bytes.NewReader(wantState["backward@400"]))
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(ts))
	for i, tt := range ts {
		names[i] = tt.Name
	}
	// (A safetensors header is a JSON object: its reader sorts the names.)
	slices.Sort(names)
	if got := strings.Join(names, " "); got != "0.bias 0.weight 2.bias 2.weight optim.state.0.exp_avg optim.state.0.exp_avg_sq "+
		"optim.state.1.exp_avg optim.state.1.exp_avg_sq optim.state.2.exp_avg optim.state.2.exp_avg_sq optim.state.3.exp_avg optim.state.3.exp_avg_sq optim.step" {
		t.Errorf("state export names: %s", got)
	}
	if last := ts[len(ts)-1]; len(last.Shape) != 0 || last.Data[0] != steps {
		t.Errorf("optim.step: shape %v, %v", last.Shape, last.Data)
	}
	ref.stop(syscall.SIGTERM)

	dir := t.TempDir()
	d := startDaemon(t, dir, args...)
	d.mustCtl(adamKillArgs...)
	const kills = 3
	for i := range kills {
		lo := steps * i / kills
		target := lo + 1 + rng.IntN(steps/kills)
		byBackward := i == kills-1
		jitter := time.Duration(rng.IntN(5000)) * time.Microsecond
		at := d.killAt("adam", target, byBackward, jitter)
		t.Logf("kill %d: target step %d (backward %v), killed at %s", i+1, target, byBackward, at)
		d = startDaemon(t, dir, args...)
	}
	st := d.waitDone("adam")
	if st.ForwardStep != refSt.ForwardStep || st.BackwardStep != refSt.BackwardStep || st.Anchor != refSt.Anchor {
		t.Fatalf("status %+v, uninterrupted %+v", st, refSt)
	}
	got := collect(d, spec)
	sameResults(t, got, want, "after kills")
	for key, b := range wantState {
		var k string
		var step int
		fmt.Sscanf(strings.Replace(key, "@", " ", 1), "%s %d", &k, &step)
		if !bytes.Equal(d.exportState(k, step), b) {
			t.Errorf("state %s differs after kills", key)
		}
	}
	if out := d.mustCtl("verify", "--run", "adam"); !strings.Contains(strings.ToLower(out), "ok") {
		t.Errorf("verify after kills: %s", out)
	}
	d.stop(syscall.SIGTERM)
}

// TestRemoteWorkerAdam: an Adam run with a sliding window computed by a
// `replayd worker` process alone (--workers 0) equals the in-process run
// byte for byte, the optimizer state included: the remote wire carries the
// optimizer's settings and the whole state.
func TestRemoteWorkerAdam(t *testing.T) {
	spec := api.RunSpec{
		Name: "r", Dataset: "regression-sin", Model: "mlp:64x2", LR: 0.001, Batch: 10, Steps: 300, Seed: seed(6),
		Window: 16, Strategy: "sliding", EvalEvery: api.Ptr(10), CheckpointEvery: 25,
		Optimizer: "adamw", WeightDecay: api.Ptr(0.05),
	}
	states := func(d *daemon) map[string][]byte {
		out := map[string][]byte{}
		for _, k := range []string{"forward", "backward"} {
			for _, step := range []int{spec.Steps, 37} {
				rc, err := d.c.StateParams(ctx(t), spec.Name, k, step)
				if err != nil {
					t.Fatal(err)
				}
				var b bytes.Buffer
				if _, err := b.ReadFrom(rc); err != nil {
					t.Fatal(err)
				}
				rc.Close()
				out[fmt.Sprintf("%s@%d", k, step)] = b.Bytes()
			}
		}
		return out
	}
	ref := startDaemon(t, t.TempDir(), "--workers", "1")
	ref.runDone(spec)
	want, wantState := collect(ref, spec), states(ref)
	ref.stop(syscall.SIGTERM)

	d := startDaemon(t, t.TempDir(), "--workers", "0", "--remote-workers", "--nats-listen", "127.0.0.1:0", "--job-ack-wait", "2s")
	w := startWorker(t, d.natsURL(), "w1")
	d.runDone(spec)
	got, gotState := collect(d, spec), states(d)
	for _, k := range []string{"forward", "backward"} {
		if err := samePoints(got.traj[k], want.traj[k]); err != nil {
			t.Errorf("%s trajectory: %v", k, err)
		}
	}
	for k, v := range wantState {
		if !bytes.Equal(gotState[k], v) {
			t.Errorf("state %s differs from the in-process run's", k)
		}
	}
	w.stop(syscall.SIGTERM)
	d.stop(syscall.SIGTERM)
}
