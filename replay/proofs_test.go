package replay_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/replay-sgd/replay/replay"
	"github.com/replay-sgd/replay/replay/replaytest"
)

func newRand(t *testing.T) *rand.Rand {
	t.Helper()
	return rand.New(rand.NewPCG(replaytest.Seed(t), 0xbacc))
}

// backward runs s over n = 1..steps and returns θ̃_0..θ̃_steps and the
// results.
func backward(t *testing.T, s replay.Strategy, dim, steps int) ([][]float32, []replay.Result) {
	t.Helper()
	out := make([][]float32, steps+1)
	res := make([]replay.Result, steps+1)
	for n := 0; n <= steps; n++ {
		out[n] = make([]float32, dim)
		r, err := s.Backward(out[n], n)
		if err != nil {
			t.Fatalf("step %d: %v", n, err)
		}
		res[n] = r
	}
	return out, res
}

func mustWindowed(t *testing.T, f replaytest.Family, cfg replay.Config) *replay.Windowed {
	t.Helper()
	w, err := replay.NewWindowed(f.Ops, f.Theta0, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func mustMemo(t *testing.T, f replaytest.Family, cfg replay.MemoConfig) *replay.Memo {
	t.Helper()
	m, err := replay.NewMemo(f.Ops, f.Theta0, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestWideWindowEqualsFull: with W ≥ n no reset happens, so windowed (from
// either source) is full, bitwise; and sliding with W = n is full, bitwise.
func TestWideWindowEqualsFull(t *testing.T) {
	rng := newRand(t)
	const steps = 150
	for _, f := range replaytest.Families(rng, steps) {
		t.Run(f.Name, func(t *testing.T) {
			full, _ := backward(t, replay.NewFull(f.Ops, f.Theta0), f.Ops.Dim(), steps)
			fwd := replaytest.NewForward(f.Ops, f.Theta0)
			for _, cfg := range []replay.Config{
				{Window: steps},
				{Window: steps + 17, From: replay.SourceForward, Forward: fwd},
			} {
				got, res := backward(t, mustWindowed(t, f, cfg), f.Ops.Dim(), steps)
				for n := range got {
					if !replaytest.Bitwise(got[n], full[n]) || res[n].Anchor != 0 {
						t.Fatalf("%+v step %d: %v (anchor %d), full %v", cfg, n, got[n], res[n].Anchor, full[n])
					}
				}
			}
			dst := make([]float32, f.Ops.Dim())
			for n := 1; n <= steps; n++ {
				s, err := replay.NewSliding(f.Ops, f.Theta0, n, fwd)
				if err != nil {
					t.Fatal(err)
				}
				res, err := s.Backward(dst, n)
				if err != nil {
					t.Fatal(err)
				}
				if !replaytest.Bitwise(dst, full[n]) || res.Applied != n {
					t.Fatalf("sliding W=n=%d: %v (%+v), full %v", n, dst, res, full[n])
				}
			}
		})
	}
}

// TestAffinePrefixMatchesFull: the memoized prefix equals full within 1e-4
// relative (replaytest.RelErr: relative to max(‖θ̃‖, 1)) over 2000 steps.
// The prefix is exact in float64; the reference is float32 application,
// whose rounding (unit roundoff 6e-8 per operation) is damped by the
// contraction of the steps, so the observed error is orders below 1e-4 — a
// wrong composition order or a wrong update is off by O(1).
func TestAffinePrefixMatchesFull(t *testing.T) {
	rng := newRand(t)
	const steps = 2000
	for _, f := range []replaytest.Family{
		replaytest.NewLeastSquaresFamily(rng, 8, 3, 300, 8, 0.05, steps),
		replaytest.NewQuadraticFamily(rng, 1000, 1, 0.1, steps),
		replaytest.NewAffineFamily(rng, 3, 10, 4, steps),
	} {
		t.Run(f.Name, func(t *testing.T) {
			m := mustMemo(t, f, replay.MemoConfig{})
			if _, ok := m.Evaluator().(*replay.AffinePrefix); !ok {
				t.Fatalf("memo chose %T for affine operators", m.Evaluator())
			}
			direct := replay.NewDirect(f.Ops)
			dim := f.Ops.Dim()
			got, want := make([]float32, dim), make([]float32, dim)
			worst, applied := 0.0, 0
			for n := 1; n <= steps; n++ {
				res, err := m.Backward(got, n)
				if err != nil {
					t.Fatal(err)
				}
				applied += res.Applied
				if n%97 != 0 && n > 20 && n != steps {
					continue // the direct reference costs n: check a sample
				}
				if _, err := direct.Eval(context.Background(), want, replay.Anchor{Start: f.Theta0}, n); err != nil {
					t.Fatal(err)
				}
				e := replaytest.RelErr(got, want)
				worst = max(worst, e)
				if e > 1e-4 {
					t.Fatalf("step %d: relative error %.3g > 1e-4", n, e)
				}
			}
			if applied != steps {
				t.Fatalf("memo composed %d maps over %d steps, want one per step", applied, steps)
			}
			t.Logf("worst relative error %.3g over %d steps", worst, steps)
		})
	}
}

// TestCoalescingEqualsFull: the coalescence memo equals full bitwise, on
// every family, with several budgets; on the contracting scalar quadratic
// it must also save work.
func TestCoalescingEqualsFull(t *testing.T) {
	rng := newRand(t)
	// 600 steps on the quadratic (coalescence needs n well past ~160), 250
	// on the others (bitwise equality only; tanh steps are the slowest).
	fams := replaytest.Families(rng, 250)
	fams[0] = replaytest.NewQuadraticFamily(rng, 200, 2, 0.1, 600)
	for _, f := range fams {
		steps := f.Steps
		t.Run(f.Name, func(t *testing.T) {
			dim := f.Ops.Dim()
			full, _ := backward(t, replay.NewFull(f.Ops, f.Theta0), dim, steps)
			for _, budget := range []int64{1 << 30, int64(8 * 4 * dim), 0} {
				m := mustMemo(t, f, replay.MemoConfig{BudgetBytes: budget, Coalesce: true})
				got, res := backward(t, m, dim, steps)
				applied, tail := 0, 0
				for n := range got {
					applied += res[n].Applied
					if n > steps-100 {
						tail += res[n].Applied
					}
					if !replaytest.Bitwise(got[n], full[n]) {
						t.Fatalf("budget %d step %d: %v, full %v", budget, n, got[n], full[n])
					}
				}
				c := m.Evaluator().(*replay.Coalescing)
				if c.KeptBytes() > budget {
					t.Fatalf("budget %d: memo keeps %d bytes", budget, c.KeptBytes())
				}
				t.Logf("budget %d: %d applications (full %d), %.1f per step over the last 100 (full ≈ %d), stride %d",
					budget, applied, steps*(steps+1)/2, float64(tail)/100, steps-50, c.Stride())
				// ρ = 0.9: neighbouring chains are within float32 rounding
				// after about log(2^-24)/log(0.9) ≈ 160 levels, so a step
				// should cost a few hundred applications at most, not n.
				if f.Name == "quadratic" && budget > 0 && tail > 100*350 {
					t.Errorf("budget %d: %.1f applications per step at n ≈ %d: the memo did not coalesce", budget, float64(tail)/100, steps)
				}
			}
		})
	}
}

// TestWindowedBackwardStart: with start points from the backward iterate,
// θ̃_n = T_{r+1}∘…∘T_n(θ̃_r) (θ̃_r the strategy's own result at the anchor),
// anchors sit at multiples of W, and no step costs more than W
// applications.
func TestWindowedBackwardStart(t *testing.T) {
	rng := newRand(t)
	const steps, w = 300, 16
	for _, f := range replaytest.Families(rng, steps) {
		t.Run(f.Name, func(t *testing.T) {
			dim := f.Ops.Dim()
			got, res := backward(t, mustWindowed(t, f, replay.Config{Window: w}), dim, steps)
			direct := replay.NewDirect(f.Ops)
			want := make([]float32, dim)
			for n := 1; n <= steps; n++ {
				r := res[n].Anchor
				if r != (n-1)/w*w || res[n].Applied > w {
					t.Fatalf("step %d: %+v, want anchor %d and ≤ %d applications", n, res[n], (n-1)/w*w, w)
				}
				if _, err := direct.Eval(context.Background(), want, replay.Anchor{Step: r, Start: got[r]}, n); err != nil {
					t.Fatal(err)
				}
				if !replaytest.Bitwise(got[n], want) {
					t.Fatalf("step %d: %v, T_{r+1}∘…∘T_n(θ̃_r) = %v", n, got[n], want)
				}
			}
		})
	}
}

// TestMetamorphic runs one random configuration under every strategy and
// checks the equalities the mathematics implies.
func TestMetamorphic(t *testing.T) {
	rng := newRand(t)
	for iter := 0; iter < 6; iter++ {
		steps := 40 + rng.IntN(160)
		fams := replaytest.Families(rng, steps)
		f := fams[rng.IntN(len(fams))]
		w := 1 + rng.IntN(steps/2)
		var resets []int
		for range rng.IntN(4) {
			resets = append(resets, 1+rng.IntN(steps))
		}
		t.Logf("iteration %d: %s, %d steps, W=%d, resets %v", iter, f.Name, steps, w, resets)
		dim := f.Ops.Dim()
		fwd := replaytest.NewForward(f.Ops, f.Theta0)
		run := func(s replay.Strategy) [][]float32 {
			out, _ := backward(t, s, dim, steps)
			return out
		}
		sliding := func(w int) replay.Strategy {
			s, err := replay.NewSliding(f.Ops, f.Theta0, w, fwd)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		same := func(what string, a, b [][]float32, steps ...int) {
			t.Helper()
			if steps == nil {
				for n := range a {
					steps = append(steps, n)
				}
			}
			for _, n := range steps {
				if !replaytest.Bitwise(a[n], b[n]) {
					t.Fatalf("%s: step %d differs: %v vs %v", what, n, a[n], b[n])
				}
			}
		}
		full := run(replay.NewFull(f.Ops, f.Theta0))
		same("windowed W≥n vs full", run(mustWindowed(t, f, replay.Config{Window: steps})), full)
		same("coalescing vs full", run(mustMemo(t, f, replay.MemoConfig{BudgetBytes: 1 << 20, Coalesce: true})), full)
		same("sliding W=steps vs full", run(sliding(steps)), full)

		bwd := replay.Config{Window: w, ResetAt: resets}
		fwdCfg := replay.Config{Window: w, ResetAt: resets, From: replay.SourceForward, Forward: fwd}
		winB, winF := run(mustWindowed(t, f, bwd)), run(mustWindowed(t, f, fwdCfg))
		same("coalescing vs windowed (backward starts)",
			run(mustMemo(t, f, replay.MemoConfig{Config: bwd, BudgetBytes: 256, Coalesce: true})), winB)
		same("coalescing vs windowed (forward starts)",
			run(mustMemo(t, f, replay.MemoConfig{Config: fwdCfg, BudgetBytes: 1 << 20, Stride: 2, Coalesce: true})), winF)

		// Before the first anchor move every windowed variant is full.
		first := w
		for _, r := range resets {
			first = min(first, r)
		}
		var early []int
		for n := 0; n <= first && n <= steps; n++ {
			early = append(early, n)
		}
		same("windowed (backward) before the first reset vs full", winB, full, early...)
		same("windowed (forward) before the first reset vs full", winF, full, early...)

		// Periodic anchors only: at n = (j+1)W the forward-start window
		// is exactly the sliding window of width W.
		perF := run(mustWindowed(t, f, replay.Config{Window: w, From: replay.SourceForward, Forward: fwd}))
		var ends []int
		for n := w; n <= steps; n += w {
			ends = append(ends, n)
		}
		same("windowed (forward) at window ends vs sliding", perF, run(sliding(w)), ends...)
		// Resets at multiples of W are the periodic ones: nothing changes.
		var dup []int
		for n := w; n <= steps; n += w {
			dup = append(dup, n)
		}
		same("windowed with redundant resets", run(mustWindowed(t, f, replay.Config{Window: w, ResetAt: dup})),
			run(mustWindowed(t, f, replay.Config{Window: w})))

		// Affine and momentum-affine families: the prefix agrees to
		// rounding under the same anchors.
		_, affine := f.Ops.(replay.AffineOperators)
		_, momentum := replay.AsMomentumAffine(f.Ops)
		if affine || momentum {
			for _, c := range []struct {
				cfg  replay.Config
				want [][]float32
			}{{bwd, winB}, {fwdCfg, winF}} {
				got := run(mustMemo(t, f, replay.MemoConfig{Config: c.cfg}))
				for n := range got {
					if !replaytest.CloseBlocks(got[n], c.want[n], f.Blocks, 1e-4) {
						e := replaytest.RelErr(got[n], c.want[n])
						t.Fatalf("affine prefix (%s starts) step %d: relative error %.3g", c.cfg.From, n, e)
					}
				}
			}
		}
	}
}

// TestConfigValidate: every problem is reported, with the right sentinel.
func TestConfigValidate(t *testing.T) {
	err := replay.Config{Window: -1, ResetAt: []int{0, 3, -2}, From: replay.SourceForward}.Validate()
	if err == nil {
		t.Fatal("invalid configuration accepted")
	}
	for _, want := range []error{replay.ErrConfig, replay.ErrNoForward} {
		if !errorsIs(err, want) {
			t.Errorf("error %q does not wrap %v", err, want)
		}
	}
	if err := (replay.Config{From: "sideways"}).Validate(); !errorsIs(err, replay.ErrConfig) {
		t.Errorf("unknown source: %v", err)
	}
	f := replaytest.NewQuadraticFamily(newRand(t), 10, 1, 0.1, 10)
	if _, err := replay.NewSliding(f.Ops, f.Theta0, 0, nil); !errorsIs(err, replay.ErrConfig) || !errorsIs(err, replay.ErrNoForward) {
		t.Errorf("sliding W=0 without forward source: %v", err)
	}
	d := replay.NewDirect(f.Ops)
	if _, err := d.Eval(context.Background(), make([]float32, 1), replay.Anchor{Step: 5, Start: f.Theta0}, 4); !errorsIs(err, replay.ErrStep) {
		t.Errorf("step before anchor: %v", err)
	}
}
