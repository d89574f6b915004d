package scheduler

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/nn"
	"github.com/replay-sgd/replay/server"
)

var _ server.StateBackend = (*Scheduler)(nil)

func TestResolveOptimizer(t *testing.T) {
	base := api.RunSpec{Dataset: "regression-abs", Model: "mlp:8", Steps: 100}
	with := func(f func(*api.RunSpec)) api.RunSpec { s := base; f(&s); return s }
	cases := []struct {
		spec                       api.RunSpec
		name                       string
		mom, damp, b1, b2, eps, wd float64
	}{
		{base, "sgd", 0, 0, 0, 0, 0, 0},
		{with(func(s *api.RunSpec) { s.WeightDecay = api.Ptr(0.1) }), "sgd", 0, 0, 0, 0, 0, 0.1},
		{with(func(s *api.RunSpec) { s.Optimizer = "momentum" }), "momentum", 0.9, 0, 0, 0, 0, 0},
		{with(func(s *api.RunSpec) { s.Optimizer = "nesterov"; s.Momentum = api.Ptr(0.5) }), "nesterov", 0.5, 0, 0, 0, 0, 0},
		{with(func(s *api.RunSpec) { s.Optimizer = "adam" }), "adam", 0, 0, 0.9, 0.999, 1e-8, 0},
		{with(func(s *api.RunSpec) { s.Optimizer = "adamw" }), "adamw", 0, 0, 0.9, 0.999, 1e-8, 0.01},
		{with(func(s *api.RunSpec) { s.Optimizer = "adamw"; s.WeightDecay = api.Ptr(0.0); s.Eps = api.Ptr(0.0) }), "adamw", 0, 0, 0.9, 0.999, 0, 0},
	}
	for _, c := range cases {
		cfg, err := Resolve(testFamilies, c.spec, 32)
		if err != nil {
			t.Fatalf("%+v: %v", c.spec, err)
		}
		got := [6]float64{cfg.Momentum, cfg.Dampening, cfg.Beta1, cfg.Beta2, cfg.Eps, cfg.WeightDecay}
		if cfg.Optimizer != c.name || got != [6]float64{c.mom, c.damp, c.b1, c.b2, c.eps, c.wd} {
			t.Errorf("%s: resolved %s %v", c.name, cfg.Optimizer, got)
		}
		// The state's size: θ (8·1+8 + 8+1 = 25), buffers, t.
		want := map[string]int{"sgd": 25, "momentum": 2*25 + 1, "nesterov": 2*25 + 1, "adam": 3*25 + 1, "adamw": 3*25 + 1}[c.name]
		if cfg.Dim != want {
			t.Errorf("%s: Dim %d, want %d", c.name, cfg.Dim, want)
		}
		// The resolved spec shows every setting that applies, and
		// resolves to the same configuration.
		sp := specOf(cfg, "")
		if sp.Optimizer != c.name || sp.WeightDecay == nil || (sp.Beta1 != nil) != strings.HasPrefix(c.name, "adam") ||
			(sp.Momentum != nil) != (c.name == "momentum" || c.name == "nesterov") {
			t.Errorf("%s: spec %+v", c.name, sp)
		}
		again, err := Resolve(testFamilies, sp, 32)
		if err != nil || fmt.Sprint(again) != fmt.Sprint(cfg) {
			t.Errorf("%s: the resolved spec resolves to %+v (%v), not %+v", c.name, again, err, cfg)
		}
	}
	// An old record (no optimizer) is plain SGD.
	old, _ := Resolve(testFamilies, base, 32)
	old.Optimizer = ""
	if sp := specOf(old, ""); sp.Optimizer != "sgd" || sp.Beta1 != nil {
		t.Errorf("old record: %+v", sp)
	}

	bad := []struct {
		spec api.RunSpec
		want []string
	}{
		{with(func(s *api.RunSpec) { s.Optimizer = "rmsprop" }), []string{`optimizer "rmsprop"`}},
		{with(func(s *api.RunSpec) { s.Beta1 = api.Ptr(0.9) }), []string{"beta1 applies to adam and adamw"}},
		{with(func(s *api.RunSpec) { s.Optimizer = "adam"; s.Momentum = api.Ptr(0.9); s.Dampening = api.Ptr(0.1) }),
			[]string{"momentum applies to momentum and nesterov", "dampening applies"}},
		{with(func(s *api.RunSpec) { s.Optimizer = "momentum"; s.Momentum = api.Ptr(-0.1) }), []string{"momentum -0.1"}},
		{with(func(s *api.RunSpec) { s.Optimizer = "momentum"; s.Momentum = api.Ptr(0.0) }), []string{"use optimizer sgd"}},
		{with(func(s *api.RunSpec) { s.Optimizer = "nesterov"; s.Dampening = api.Ptr(0.1) }), []string{"nesterov needs dampening 0"}},
		{with(func(s *api.RunSpec) { s.Optimizer = "adam"; s.Beta1 = api.Ptr(1.0); s.Beta2 = api.Ptr(-1.0) }), []string{"beta1 1", "beta2 -1"}},
		{with(func(s *api.RunSpec) {
			s.Optimizer = "adamw"
			s.Eps = api.Ptr(math.Inf(1))
			s.WeightDecay = api.Ptr(-1.0)
		}), []string{"eps +Inf", "weight_decay -1"}},
	}
	for _, c := range bad {
		_, err := Resolve(testFamilies, c.spec, 32)
		if !isErr(err, ErrInvalid) {
			t.Errorf("%+v: err = %v", c.spec, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: %q does not say %q", c.spec, err, w)
			}
		}
	}
	// steps ≤ 2^24 (the float32 step count) is implied by maxSteps today.
	if maxSteps > maxOptimSteps {
		t.Errorf("maxSteps %d > %d: test the optimizer's step limit", maxSteps, maxOptimSteps)
	}
}

// optimOracle recomputes a stored run with nn's optimizer operators
// directly, from its configuration and batch log.
type optimOracle struct {
	ops  *nn.Optim
	s0   []float32
	td   int
	fwd  [][]float32 // fwd[k] = s_k, the forward state after k steps
	cfgs ckpt.RunConfig
}

func newOptimOracle(t *testing.T, store *ckpt.Store, name string) *optimOracle {
	t.Helper()
	cfg, st, train, m, loss, b := oracleInputs(t, store, name)
	oc := nn.OptimConfig{Name: cfg.Optimizer, Momentum: cfg.Momentum, Dampening: cfg.Dampening,
		Beta1: cfg.Beta1, Beta2: cfg.Beta2, Eps: cfg.Eps, WeightDecay: cfg.WeightDecay}
	ops, err := nn.NewOptim(m, loss, train, cfg.LR, oc, b)
	if err != nil {
		t.Fatal(err)
	}
	o := &optimOracle{ops: ops, s0: make([]float32, ops.Dim()), td: m.Dim(), cfgs: cfg}
	if err := m.Init(o.s0[:m.Dim()], cfg.Init, cfg.Seed); err != nil {
		t.Fatal(err)
	}
	o.fwd = append(o.fwd, slices.Clone(o.s0))
	for k := 1; k <= st.ForwardStep; k++ {
		s := slices.Clone(o.fwd[k-1])
		ops.Apply(k, s)
		o.fwd = append(o.fwd, s)
	}
	return o
}

// chain returns T_{r+1}∘…∘T_n(start).
func (o *optimOracle) chain(start []float32, r, n int) []float32 {
	s := slices.Clone(start)
	for k := n; k > r; k-- {
		o.ops.Apply(k, s)
	}
	return s
}

// TestOptimizerBackwardBitwise runs momentum, Nesterov, Adam and AdamW
// through the scheduler with the window strategy (W ≥ steps: the full
// backward trajectory), the sliding strategy and the memo strategy (the
// coalescence memo for these non-affine operators), and requires every
// backward state, the whole of it, to be bitwise the direct recomputation
// by nn's operators: T_1∘…∘T_n(s_0), or T_{n−W+1}∘…∘T_n(s_{n−W}) for
// sliding; the stored norms are θ's.
func TestOptimizerBackwardBitwise(t *testing.T) {
	const steps = 40
	opts := []api.RunSpec{
		{Optimizer: "momentum", Dampening: api.Ptr(0.1), WeightDecay: api.Ptr(0.01)},
		{Optimizer: "nesterov"},
		{Optimizer: "adam"},
		{Optimizer: "adamw", WeightDecay: api.Ptr(0.1)},
	}
	strategies := []struct {
		strategy string
		window   int
	}{{StrategyWindow, steps}, {StrategySliding, 12}, {StrategyMemo, steps}}
	for _, o := range opts {
		for _, st := range strategies {
			if st.strategy != StrategyWindow && o.Optimizer != "momentum" && o.Optimizer != "adam" {
				continue // the other strategies for one SGD-like and one Adam-like optimizer
			}
			t.Run(o.Optimizer+"/"+st.strategy, func(t *testing.T) {
				spec := o
				spec.Name, spec.Dataset, spec.Model, spec.Batch, spec.Steps, spec.LR = "run", "regression-abs", "mlp:16", 5, steps, 0.01
				spec.Strategy, spec.Window, spec.Seed = st.strategy, st.window, seed(3)
				h := startHarness(t, openStore(t, t.TempDir()), testOptions())
				h.create(spec)
				h.wait("run", ckpt.StateDone)
				or := newOptimOracle(t, h.store, "run")
				bm := metricsOf(t, h.store, "run", "backward", 0)
				if len(bm) != steps {
					t.Fatalf("%d backward results", len(bm))
				}
				for _, m := range bm {
					n := m.Step
					want := or.chain(or.s0, 0, n)
					if st.strategy == StrategySliding && n > st.window {
						want = or.chain(or.fwd[n-st.window], n-st.window, n)
					}
					_, got, err := h.s.Params(context.Background(), "run", KindBackward, n)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(got, want) {
						t.Fatalf("backward state %d differs from the direct recomputation", n)
					}
					if got[len(got)-1] != float32(n) {
						t.Fatalf("backward state %d has step count %v", n, got[len(got)-1])
					}
					if !sameBits(m.ParamNorm, norm(want[:or.td])) {
						t.Fatalf("step %d: norm %v, θ's %v (the whole state's %v)", n, m.ParamNorm, norm(want[:or.td]), norm(want))
					}
				}
				// The default export is θ; with the state, every tensor
				// by the layout rule.
				ts, err := h.s.Tensors(context.Background(), "run", KindForward, steps)
				if err != nil {
					t.Fatal(err)
				}
				if last := ts[len(ts)-1]; last.Name != "2.bias" {
					t.Errorf("export ends with %s", last.Name)
				}
				ss, err := h.s.StateTensors(context.Background(), "run", KindForward, steps)
				if err != nil {
					t.Fatal(err)
				}
				buf := "momentum_buffer"
				if strings.HasPrefix(o.Optimizer, "adam") {
					buf = "exp_avg_sq"
				}
				if n := len(ss); ss[n-1].Name != "optim.step" || ss[n-1].Data[0] != steps || ss[n-2].Name != "optim.state.3."+buf {
					t.Errorf("state export ends with %s, %s", ss[n-2].Name, ss[n-1].Name)
				}
				if rep, err := h.s.Verify(context.Background(), "run"); err != nil || !rep.OK {
					t.Errorf("verify: %+v %v", rep, err)
				}
			})
		}
	}
}

// TestAdamImprovePolicy runs Adam with the adaptive reset policy: the run
// finishes, and every segment's results are the chain of nn's operators
// from its stored anchor start (whose step count is its step: a state at
// step r has made r steps, whichever point it is).
func TestAdamImprovePolicy(t *testing.T) {
	h := startHarness(t, openStore(t, t.TempDir()), testOptions())
	h.create(api.RunSpec{
		Name: "run", Dataset: "regression-abs", Model: "mlp:16", Batch: 5, Steps: 60, LR: 0.01, Seed: seed(4),
		Optimizer: "adam", Window: 15, ResetPolicy: PolicyImprove, ResetHorizon: 5, ResetAt: []int{20},
	})
	h.wait("run", ckpt.StateDone)
	or := newOptimOracle(t, h.store, "run")
	as, err := h.store.Anchors("run")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("anchors %v", as)
	backward := 0
	for _, a := range as {
		if a.From == ckpt.FromBackward {
			backward++
		}
	}
	if len(as) < 3 || backward == 0 {
		t.Fatalf("anchors %v: want the initial one and at least two resets, one from the backward point", as)
	}
	for _, a := range as {
		start := make([]float32, or.ops.Dim())
		if err := h.store.AnchorStart("run", a.Segment, start); err != nil {
			t.Fatal(err)
		}
		if start[len(start)-1] != float32(a.Step) {
			t.Errorf("anchor %+v: start's step count %v", a, start[len(start)-1])
		}
		switch a.From {
		case ckpt.FromForward, ckpt.FromInit:
			if !slices.Equal(start, or.fwd[a.Step]) {
				t.Errorf("anchor %+v: start differs from the forward state", a)
			}
		case ckpt.FromBackward:
			// θ̃_r's whole state, buffers included.
			_, back, err := h.s.Params(context.Background(), "run", KindBackward, a.Step)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(start, back) {
				t.Errorf("anchor %+v: start differs from the backward state at its step", a)
			}
		}
		for _, m := range metricsOf(t, h.store, "run", "segment", a.Segment) {
			want := or.chain(start, a.Step, m.Step)
			if !sameBits(m.ParamNorm, norm(want[:or.td])) {
				t.Fatalf("segment %d step %d: norm %v, the chain from the anchor %v", a.Segment, m.Step, m.ParamNorm, norm(want[:or.td]))
			}
		}
	}
	if rep, err := h.s.Verify(context.Background(), "run"); err != nil || !rep.OK {
		t.Errorf("verify: %+v %v", rep, err)
	}
}

// TestAdmissionCountsState: an Adam run holds three θ-sized vectors and a
// step count per parameter vector, and admission counts them.
func TestAdmissionCountsState(t *testing.T) {
	spec := api.RunSpec{Dataset: "fashion-mnist", Model: "mlp:500x5", Steps: 100}
	sgd, err := Resolve(testFamilies, spec, 32)
	if err != nil {
		t.Fatal(err)
	}
	spec.Optimizer = "adam"
	adam, err := Resolve(testFamilies, spec, 32)
	if err != nil {
		t.Fatal(err)
	}
	if adam.Dim != 3*sgd.Dim+1 {
		t.Fatalf("adam state %d, θ %d", adam.Dim, sgd.Dim)
	}
	es, err := estimate(sgd, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	ea, err := estimate(adam, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if ea.Params != int64(adam.Dim) || ea.MemoryParts[0].Bytes <= 3*es.MemoryParts[0].Bytes-es.MemoryParts[0].Bytes/100 {
		t.Errorf("admission: adam %+v, sgd %+v", ea.MemoryParts[0], es.MemoryParts[0])
	}
}

// TestMomentumMemoExact runs heavy-ball momentum and Nesterov on least
// squares with the memo strategy: the scheduler composes the block maps
// (replay.MomentumPrefix) instead of coalescing. Each backward state equals
// the direct recomputation T_1∘…∘T_n(s_0) to float32 rounding and the step
// count exactly; and at least one state differs in its bits, which a
// coalescence memo (bitwise equal to the direct chain) never would, so the
// test fails if the exact memo is not the one used.
//
// Tolerance: the prefix is composed in float64 and rounded once; the direct
// chain accumulates float32 rounding, at most a few units of 6e-8 per step
// relative to ‖s‖ on these contracting steps (lr·‖H‖ < 1), so 40 steps stay
// below 40·4·6e-8 ≈ 1e-5 relative.
func TestMomentumMemoExact(t *testing.T) {
	const steps, tol = 40, 1e-5
	for _, o := range []api.RunSpec{
		{Optimizer: "momentum", Momentum: api.Ptr(0.9), Dampening: api.Ptr(0.1)},
		{Optimizer: "nesterov", Momentum: api.Ptr(0.8), WeightDecay: api.Ptr(0.01)},
	} {
		t.Run(o.Optimizer, func(t *testing.T) {
			spec := o
			spec.Name, spec.Dataset, spec.Model, spec.Loss, spec.Batch, spec.Steps, spec.LR = "run", "regression-x2", "linear", "mse", 5, steps, 0.05
			spec.Strategy, spec.Window, spec.Seed = StrategyMemo, steps, seed(4)
			h := startHarness(t, openStore(t, t.TempDir()), testOptions())
			h.create(spec)
			h.wait("run", ckpt.StateDone)
			or := newOptimOracle(t, h.store, "run")
			differ := 0
			for n := 1; n <= steps; n++ {
				want := or.chain(or.s0, 0, n)
				_, got, err := h.s.Params(context.Background(), "run", KindBackward, n)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					differ++
				}
				if got[len(got)-1] != float32(n) {
					t.Fatalf("backward state %d has step count %v", n, got[len(got)-1])
				}
				if d, w := dist(got[:len(got)-1], want[:len(want)-1]), norm(want[:len(want)-1]); d > tol*w {
					t.Fatalf("backward state %d: distance %g to the direct chain, more than %g·%g", n, d, tol, w)
				}
			}
			if differ == 0 {
				t.Fatalf("every memo state is bitwise the direct chain's: the exact momentum memo was not used")
			}
		})
	}
}
