package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// TestRunStartOptimizerFlags: the optimizer flags are sent as given, an
// explicit 0 included, and absent ones are left out (the daemon's defaults
// apply).
func TestRunStartOptimizerFlags(t *testing.T) {
	f := newFake(t)
	if _, _, err := f.cli("run", "start", "--preset", "quadratic", "--optimizer", "adamw", "--beta2", "0.99",
		"--eps", "0", "--weight-decay", "0.05"); err != nil {
		t.Fatal(err)
	}
	if want := `{"preset":"quadratic","optimizer":"adamw","beta2":0.99,"eps":0,"weight_decay":0.05}`; f.bodies[0] != want {
		t.Errorf("body %s, want %s", f.bodies[0], want)
	}
	if _, _, err := f.cli("run", "start", "--preset", "quadratic", "--optimizer", "momentum", "--momentum", "0.5", "--dampening", "0.1"); err != nil {
		t.Fatal(err)
	}
	var spec api.RunSpec
	if err := json.Unmarshal([]byte(f.bodies[1]), &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Optimizer != "momentum" || spec.Momentum == nil || *spec.Momentum != 0.5 || spec.Dampening == nil || *spec.Dampening != 0.1 || spec.Beta1 != nil {
		t.Errorf("sent %s", f.bodies[1])
	}
}

// TestStatusShowsOptimizer: status and runs name a run's optimizer unless
// it is plain SGD.
func TestStatusShowsOptimizer(t *testing.T) {
	adam := sampleRun("a")
	adam.Spec.Optimizer, adam.Spec.Beta1, adam.Spec.Beta2, adam.Spec.Eps, adam.Spec.WeightDecay = "adam", api.Ptr(0.9), api.Ptr(0.999), api.Ptr(1e-8), api.Ptr(0.0)
	plain := sampleRun("s")
	plain.Spec.Optimizer, plain.Spec.WeightDecay = "sgd", api.Ptr(0.0)
	f := newFake(t, adam, plain)
	out, _, err := f.cli("status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "a: optimizer adam beta1=0.9 beta2=0.999 eps=1e-08 weight_decay=0\n") || strings.Contains(out, "s: optimizer") {
		t.Errorf("status:\n%s", out)
	}
	out, _, err = f.cli("runs")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "0.01 adam") || strings.Count(out, " sgd") != 0 {
		t.Errorf("runs:\n%s", out)
	}
}

// TestExportWithState: --with-state asks for the optimizer's state
// (with_state=true), and a daemon without it is one line, no file.
func TestExportWithState(t *testing.T) {
	f := newFake(t, sampleRun("a"))
	out := filepath.Join(t.TempDir(), "s.safetensors")
	_, _, err := f.cli("export", "--step", "3", "--kind", "backward", "--with-state", "--out", out)
	if r := f.lastRequest(); !strings.Contains(r, "with_state=true") {
		t.Errorf("request %s", r)
	}
	oneLine(t, err)
	if !strings.Contains(err.Error(), "with_state") {
		t.Errorf("error %v", err)
	}
	if _, _, err := f.cli("export", "--batches", "--with-state", "--out", out); err == nil || !strings.Contains(err.Error(), "--with-state") {
		t.Errorf("--batches --with-state: %v", err)
	}
}
