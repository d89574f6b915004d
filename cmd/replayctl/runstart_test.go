package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
)

func TestRunStartFlags(t *testing.T) {
	f := newFake(t)
	out, _, err := f.cli("run", "start", "--name", "fm", "--preset", "fmnist-mlp", "--dataset", "fashion-mnist",
		"--data-path", "/data/fm", "--model", "mlp:32", "--init", "lecun", "--loss", "cross-entropy", "--lr", "0.05",
		"--batch", "16", "--steps", "300", "--seed", "0", "--window", "64", "--strategy", "sliding",
		"--reset-at", "100", "--reset-at", "150,200", "--reset-from", "forward", "--reset-policy", "improve",
		"--reset-horizon", "20", "--backward-from", "10", "--eval-every", "5", "--eval-size", "500", "--checkpoint-every", "50")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "started run fm") {
		t.Errorf("output %q", out)
	}
	var spec api.RunSpec
	if err := json.Unmarshal([]byte(f.bodies[0]), &spec); err != nil {
		t.Fatal(err)
	}
	zero := uint64(0)
	want := api.RunSpec{Name: "fm", Preset: "fmnist-mlp", Dataset: "fashion-mnist", DataPath: "/data/fm", Model: "mlp:32",
		Init: "lecun", Loss: "cross-entropy", LR: 0.05, Batch: 16, Steps: 300, Seed: &zero, Window: 64, Strategy: "sliding",
		ResetAt: []int{100, 150, 200}, ResetFrom: "forward", ResetPolicy: "improve", ResetHorizon: 20, BackwardFrom: api.Ptr(10),
		EvalEvery: api.Ptr(5), EvalSize: api.Ptr(500), CheckpointEvery: 50}
	gotJ, _ := json.Marshal(spec)
	wantJ, _ := json.Marshal(want)
	if string(gotJ) != string(wantJ) {
		t.Errorf("sent\n%s\nwant\n%s", gotJ, wantJ)
	}
}

func TestRunStartPresetOnly(t *testing.T) {
	f := newFake(t)
	out, _, err := f.cli("-o", "json", "run", "start", "--preset", "quadratic")
	if err != nil {
		t.Fatal(err)
	}
	// Flags not given are not sent: the preset's values stand.
	if f.bodies[0] != `{"preset":"quadratic"}` {
		t.Errorf("body %s", f.bodies[0])
	}
	var l api.RunList
	if json.Unmarshal([]byte(out), &l) != nil || len(l.Runs) != 1 || l.Runs[0].Spec.Preset != "quadratic" {
		t.Errorf("json output %s", out)
	}
}

func TestRunStartErrors(t *testing.T) {
	f := newFake(t, sampleRun("dup"))
	bad := [][]string{
		{"--lr", "0"}, {"--lr", "-1"}, {"--lr", "x"}, {"--batch", "0"}, {"--steps", "-5"}, {"--window", "0"},
		{"--reset-at", "0"}, {"--reset-from", "sideways"}, {"--reset-policy", "sometimes"}, {"--seed", "-1"},
		{"--backward-from", "-1"}, {"--eval-every", "-1"}, {"--eval-size", "-1"}, {"--reset-at", "none,5"},
		{"--reset-at", "5", "--reset-at", "none"}, {"--reset-at", "soon"}, {"extra-arg"},
	}
	for _, args := range bad {
		_, _, err := f.cli(append([]string{"run", "start", "--preset", "quadratic"}, args...)...)
		if !errors.Is(err, errUsage) {
			t.Errorf("%q: %v, want usage error", args, err)
			continue
		}
		oneLine(t, err)
	}
	if len(f.bodies) != 0 {
		t.Errorf("bad flags reached the daemon: %v", f.bodies)
	}
	// Errors from the daemon come back as its one line.
	_, _, err := f.cli("run", "start", "--name", "dup")
	oneLine(t, err)
	if err.Error() != `run "dup" already exists` || !errors.Is(err, api.ErrConflict) {
		t.Errorf("dup: %v", err)
	}
	_, _, err = f.cli("run", "start", "--model", "bogus")
	oneLine(t, err)
	if !strings.HasPrefix(err.Error(), `unknown model "bogus"`) {
		t.Errorf("bogus: %v", err)
	}
	if f.mutated() != 0 {
		t.Errorf("failed starts changed the daemon")
	}
}

// TestRunStartExplicitZeroes: an explicit 0 (and --reset-at none) is sent
// as a value, so that it overrides the preset's; flags left out stay
// absent from the body.
func TestRunStartExplicitZeroes(t *testing.T) {
	f := newFake(t)
	if _, _, err := f.cli("run", "start", "--preset", "fmnist-mlp", "--eval-every", "0", "--eval-size", "0",
		"--backward-from", "0", "--reset-at", "none"); err != nil {
		t.Fatal(err)
	}
	if want := `{"preset":"fmnist-mlp","reset_at":[],"backward_from":0,"eval_every":0,"eval_size":0}`; f.bodies[0] != want {
		t.Errorf("body %s\nwant %s", f.bodies[0], want)
	}
	if _, _, err := f.cli("run", "start", "--preset", "fmnist-mlp", "--reset-at", "7", "--eval-every", "3"); err != nil {
		t.Fatal(err)
	}
	if want := `{"preset":"fmnist-mlp","reset_at":[7],"eval_every":3}`; f.bodies[1] != want {
		t.Errorf("body %s\nwant %s", f.bodies[1], want)
	}
}
