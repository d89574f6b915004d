package scheduler

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
)

// TestExternalPresets: without the model registered, a preset of an
// external model is refused with the replayd flag that registers it.
func TestExternalPresets(t *testing.T) {
	for name, file := range map[string]string{"fmnist-cnn": "examples/cnn_fmnist.py", "fmnist-resnet18": "examples/resnet18_fmnist.py"} {
		_, err := Resolve(testFamilies, api.RunSpec{Preset: name}, 256)
		want := "start replayd with --torch-model " + name + "=" + file
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("preset %s: %v, want ErrInvalid saying %q", name, err, want)
		}
	}
}

func TestPresetsResolve(t *testing.T) {
	for _, p := range Presets() {
		if presetRegisters[p.Name] != "" {
			continue // external models: TestExternalPresets, and extmodel's tests with a registered model
		}
		cfg, err := Resolve(testFamilies, api.RunSpec{Preset: p.Name}, 256)
		if err != nil {
			t.Fatalf("preset %s: %v", p.Name, err)
		}
		wantWindow := 256 // the daemon's, unless the preset sets one (fmnist-linear: its steps)
		if p.Spec.Window != 0 {
			wantWindow = p.Spec.Window
		}
		if cfg.Dim <= 0 || cfg.Window != wantWindow || cfg.CheckpointEvery != ckpt.DefaultCheckpointEvery || cfg.Seed != DefaultSeed {
			t.Errorf("preset %s: %+v", p.Name, cfg)
		}
	}
	fm, _ := Resolve(testFamilies, api.RunSpec{Preset: "fmnist-mlp"}, 128)
	if fm.Model != "mlp:500x5" || fm.Init != "he" || fm.Loss != "cross-entropy" || fm.LR != 0.001 || fm.Batch != 8 ||
		fm.Steps != 2000 || !slices.Equal(fm.ResetAt, []int{1000}) || fm.Window != 128 || fm.Strategy != StrategyWindow ||
		fm.Dim != 784*500+500+4*(500*500+500)+500*10+10 {
		t.Errorf("fmnist-mlp: %+v", fm)
	}
	fig3, _ := Resolve(testFamilies, api.RunSpec{Preset: "paper-fig3"}, 256)
	if fig3.Strategy != StrategyFull || !slices.Equal(fig3.ResetAt, []int{1000}) || fig3.Model != "mlp:500x5" {
		t.Errorf("paper-fig3: %+v", fig3)
	}
	ad, _ := Resolve(testFamilies, api.RunSpec{Preset: "fmnist-adam"}, 256)
	if ad.Optimizer != OptimAdam || ad.LR != 0.0003 || ad.Beta1 != DefaultBeta1 || ad.Beta2 != DefaultBeta2 || ad.Eps != DefaultEps ||
		ad.Strategy != StrategyWindow || ad.Dim != 3*fm.Dim+1 || !slices.Equal(ad.ResetAt, []int{1000}) {
		t.Errorf("fmnist-adam: %+v", ad)
	}
	lin, _ := Resolve(testFamilies, api.RunSpec{Preset: "fmnist-linear"}, 256)
	if lin.Model != "linear" || lin.Loss != "mse" || lin.Strategy != StrategyMemo || lin.Window != 2000 || lin.Dim != 7850 {
		t.Errorf("fmnist-linear: %+v", lin)
	}
	q, _ := Resolve(testFamilies, api.RunSpec{Preset: "quadratic"}, 256)
	if q.Model != "scalar" || q.Dataset != "quadratic" || q.Batch != 1 || q.LR != 0.1 || q.Loss != "quadratic" || q.Dim != 1 {
		t.Errorf("quadratic: %+v", q)
	}
	r, _ := Resolve(testFamilies, api.RunSpec{Preset: "regression"}, 256)
	if r.Model != "mlp:300x3" || r.Dataset != "regression-sin" || r.Loss != "mse" || r.ResetHorizon != 50 {
		t.Errorf("regression: %+v", r)
	}
}

func TestResolveOverrides(t *testing.T) {
	cfg, err := Resolve(testFamilies, api.RunSpec{Preset: "fmnist-mlp", Name: "mine", LR: 0.01, Steps: 500, Window: 64, Seed: seed(0)}, 256)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "mine" || cfg.LR != 0.01 || cfg.Steps != 500 || cfg.Window != 64 || cfg.Seed != 0 || len(cfg.ResetAt) != 0 {
		t.Errorf("overrides: %+v", cfg)
	}
	cfg, err = Resolve(testFamilies, api.RunSpec{Preset: "fmnist-mlp", ResetAt: []int{700, 300, 700}}, 256)
	if err != nil || !slices.Equal(cfg.ResetAt, []int{300, 700}) {
		t.Errorf("explicit resets: %v %v", cfg.ResetAt, err)
	}
	cfg, err = Resolve(testFamilies, api.RunSpec{Dataset: "regression-abs", Model: "mlp:8"}, 32)
	if err != nil || cfg.Loss != "mse" || cfg.LR != DefaultLR || cfg.Batch != DefaultBatch || cfg.Steps != DefaultSteps ||
		cfg.ResetFrom != FromBackward || cfg.ResetPolicy != PolicyFixed || cfg.ResetHorizon != 32 || cfg.EvalEvery != 1 {
		t.Errorf("defaults: %+v %v", cfg, err)
	}
}

func TestResolveReportsEveryProblem(t *testing.T) {
	_, err := Resolve(testFamilies, api.RunSpec{
		Name: "bad name", Dataset: "mnist", Model: "mlp:x", LR: -1, Batch: -2, Steps: -5, Strategy: "zigzag",
		ResetFrom: "sideways", ResetPolicy: "sometimes", EvalEvery: api.Ptr(-1), CheckpointEvery: -3, Init: "zeros",
	}, 256)
	if !isErr(err, ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"name", "dataset", "lr", "batch", "steps", "strategy", "reset_from", "reset_policy", "eval_every", "checkpoint_every", "init"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %s: %s", want, msg)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	for _, spec := range []api.RunSpec{
		{Preset: "nope"},
		{Dataset: "quadratic"}, // no model
		{Preset: "quadratic", Batch: 5000},
		{Preset: "quadratic", ResetAt: []int{1001}},
		{Preset: "quadratic", BackwardFrom: api.Ptr(10), ResetAt: []int{5}},
		{Preset: "quadratic", Strategy: StrategySliding, ResetPolicy: PolicyImprove},
		{Preset: "quadratic", Loss: "cross-entropy"},
		{Preset: "regression", DataPath: "/tmp"},
		{Preset: "quadratic", Window: -1},
	} {
		if _, err := Resolve(testFamilies, spec, 256); !isErr(err, ErrInvalid) {
			t.Errorf("Resolve(testFamilies, %+v) = %v, want ErrInvalid", spec, err)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := DefaultOptions().WithFamilies(testFamilies...).Validate(); err != nil {
		t.Fatal(err)
	}
	err := DefaultOptions().WithFamilies(testFamilies...).WithWindow(0).WithWorkers(0).WithMaxLag(0).WithMemoBudget(-1).Validate()
	for _, want := range []string{"window", "workers", "max lag", "memo budget"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v does not mention %s", err, want)
		}
	}
}
