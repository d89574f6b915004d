package scheduler

import (
	"fmt"
	"slices"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// TestResolveAbsentVersusZero: for every field where zero is a value, an
// absent field takes the preset's value or the default and an explicit
// zero is kept, also over a preset's non-zero value (issue 9 defect 4).
func TestResolveAbsentVersusZero(t *testing.T) {
	type want struct {
		evalEvery, evalSize, backwardFrom int
		resets                            []int
		seed                              uint64
	}
	for _, tc := range []struct {
		name string
		spec api.RunSpec
		want want
	}{
		{"fmnist-mlp as is", api.RunSpec{Preset: "fmnist-mlp"}, want{10, 1000, 0, []int{1000}, DefaultSeed}},
		{"fmnist-mlp zeroes", api.RunSpec{Preset: "fmnist-mlp", EvalEvery: api.Ptr(0), EvalSize: api.Ptr(0),
			BackwardFrom: api.Ptr(0), ResetAt: []int{}, Seed: api.Ptr[uint64](0)}, want{0, 0, 0, nil, 0}},
		{"fmnist-mlp values", api.RunSpec{Preset: "fmnist-mlp", EvalEvery: api.Ptr(4), EvalSize: api.Ptr(300),
			BackwardFrom: api.Ptr(50), ResetAt: []int{60}}, want{4, 300, 50, []int{60}, DefaultSeed}},
		{"quadratic as is", api.RunSpec{Preset: "quadratic"}, want{1, 0, 0, nil, DefaultSeed}},
		{"quadratic zeroes", api.RunSpec{Preset: "quadratic", EvalEvery: api.Ptr(0), EvalSize: api.Ptr(0), ResetAt: []int{}},
			want{0, 0, 0, nil, DefaultSeed}},
		{"no preset, fashion-mnist defaults", api.RunSpec{Dataset: "fashion-mnist", Model: "mlp:8"}, want{10, 1000, 0, nil, DefaultSeed}},
		{"no preset, fashion-mnist zeroes", api.RunSpec{Dataset: "fashion-mnist", Model: "mlp:8", EvalEvery: api.Ptr(0), EvalSize: api.Ptr(0)},
			want{0, 0, 0, nil, DefaultSeed}},
		{"no preset, regression defaults", api.RunSpec{Dataset: "regression-sin", Model: "mlp:8"}, want{1, 0, 0, nil, DefaultSeed}},
	} {
		cfg, err := Resolve(testFamilies, tc.spec, 256)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		got := want{cfg.EvalEvery, cfg.EvalSize, cfg.BackwardFrom, cfg.ResetAt, cfg.Seed}
		if got.evalEvery != tc.want.evalEvery || got.evalSize != tc.want.evalSize || got.backwardFrom != tc.want.backwardFrom ||
			!slices.Equal(got.resets, tc.want.resets) || got.seed != tc.want.seed {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
	for _, spec := range []api.RunSpec{
		{Preset: "quadratic", EvalEvery: api.Ptr(-1)},
		{Preset: "quadratic", EvalSize: api.Ptr(-1)},
		{Preset: "quadratic", BackwardFrom: api.Ptr(-1)},
		{Preset: "quadratic", BackwardFrom: api.Ptr(1000)},
	} {
		if _, err := Resolve(testFamilies, spec, 256); !isErr(err, ErrInvalid) {
			t.Errorf("Resolve(testFamilies, %s) = %v, want ErrInvalid", fmt.Sprint(spec.EvalEvery, spec.EvalSize, spec.BackwardFrom), err)
		}
	}
}

// TestOverlayExplicitZero: an explicit zero replaces a base's non-zero
// value for the pointer fields (no preset sets backward_from today, so
// overlay is checked directly), and nil leaves it.
func TestOverlayExplicitZero(t *testing.T) {
	base := api.RunSpec{BackwardFrom: api.Ptr(100), EvalEvery: api.Ptr(10), EvalSize: api.Ptr(1000), ResetAt: []int{1000}}
	s := overlay(base, api.RunSpec{BackwardFrom: api.Ptr(0), EvalEvery: api.Ptr(0), EvalSize: api.Ptr(0), ResetAt: []int{}})
	if *s.BackwardFrom != 0 || *s.EvalEvery != 0 || *s.EvalSize != 0 || s.ResetAt == nil || len(s.ResetAt) != 0 {
		t.Errorf("explicit zeroes: %v %v %v %v", *s.BackwardFrom, *s.EvalEvery, *s.EvalSize, s.ResetAt)
	}
	s = overlay(base, api.RunSpec{})
	if *s.BackwardFrom != 100 || *s.EvalEvery != 10 || *s.EvalSize != 1000 || !slices.Equal(s.ResetAt, []int{1000}) {
		t.Errorf("absent: %v %v %v %v", *s.BackwardFrom, *s.EvalEvery, *s.EvalSize, s.ResetAt)
	}
}

// TestSpecOfRoundTrip: the resolved spec of a status names every value,
// so that sending it back resolves to the same configuration.
func TestSpecOfRoundTrip(t *testing.T) {
	cfg, err := Resolve(testFamilies, api.RunSpec{Preset: "quadratic", EvalEvery: api.Ptr(0), ResetAt: []int{}}, 256)
	if err != nil {
		t.Fatal(err)
	}
	spec := specOf(cfg, "")
	if spec.ResetAt == nil || *spec.EvalEvery != 0 || *spec.EvalSize != 0 || *spec.BackwardFrom != 0 {
		t.Fatalf("specOf: %+v", spec)
	}
	again, err := Resolve(testFamilies, spec, 256)
	if err != nil || fmt.Sprintf("%+v", again) != fmt.Sprintf("%+v", cfg) {
		t.Errorf("round trip:\n%+v\n%+v (%v)", again, cfg, err)
	}
}

// TestEvalEveryZero: with eval_every 0 the losses of a run are measured at
// its last step only, forward and backward (without it, the modulo by zero
// panics).
func TestEvalEveryZero(t *testing.T) {
	h := startHarness(t, openStore(t, t.TempDir()), testOptions())
	h.create(api.RunSpec{Preset: "quadratic", Name: "q", Steps: 30, Window: 8, EvalEvery: api.Ptr(0)})
	h.wait("q", "done")
	for _, kind := range []string{"forward", "backward"} {
		var measured []int
		err := h.s.Trajectory(t.Context(), "q", kind, 0, 0, 1, func(p api.Point) error {
			if p.Loss == p.Loss {
				measured = append(measured, p.Step)
			}
			return nil
		})
		if err != nil || !slices.Equal(measured, []int{30}) {
			t.Errorf("%s: losses at %v (%v), want at step 30 only", kind, measured, err)
		}
	}
}
