package replay_test

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/replay-sgd/replay/replay"
	"github.com/replay-sgd/replay/replay/replaytest"
)

// cancelAfter wraps operators and cancels a context at its k-th Apply.
type cancelAfter struct {
	replay.Operators
	k, calls int
	cancel   context.CancelFunc
}

func (c *cancelAfter) Apply(k int, theta []float32) {
	c.calls++
	if c.calls == c.k {
		c.cancel()
	}
	c.Operators.Apply(k, theta)
}

// affineCancelAfter is cancelAfter for affine operators (the affine prefix
// composes maps instead of applying them).
type affineCancelAfter struct {
	replay.AffineOperators
	k, calls int
	cancel   context.CancelFunc
}

func (c *affineCancelAfter) AffineStep(k int) ([]float64, int, float64, []float64) {
	c.calls++
	if c.calls == c.k {
		c.cancel()
	}
	return c.AffineOperators.AffineStep(k)
}

// TestEvalCancel: every evaluator returns the context's error soon after it
// is cancelled, with no silent partial result, and its memo stays exact: the
// next call returns bitwise what a fresh evaluator returns.
func TestEvalCancel(t *testing.T) {
	rng := newRand(t)
	const steps = 60
	fam := replaytest.NewLeastSquaresFamily(rng, 3, 2, 50, 4, 0.05, steps)
	aff := fam.Ops.(replay.AffineOperators)
	anchor := replay.Anchor{Step: 0, Start: fam.Theta0}
	cases := []struct {
		name string
		make func(cancel context.CancelFunc) (replay.Evaluator, replay.Evaluator)
	}{
		{"direct", func(cancel context.CancelFunc) (replay.Evaluator, replay.Evaluator) {
			return replay.NewDirect(&cancelAfter{Operators: fam.Ops, k: 10, cancel: cancel}), replay.NewDirect(fam.Ops)
		}},
		{"affine", func(cancel context.CancelFunc) (replay.Evaluator, replay.Evaluator) {
			return replay.NewAffinePrefix(&affineCancelAfter{AffineOperators: aff, k: 10, cancel: cancel}), replay.NewAffinePrefix(aff)
		}},
		{"coalescing", func(cancel context.CancelFunc) (replay.Evaluator, replay.Evaluator) {
			return replay.NewCoalescing(&cancelAfter{Operators: fam.Ops, k: 10, cancel: cancel}, 1<<20, 1), replay.NewCoalescing(fam.Ops, 1<<20, 1)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			ev, ref := c.make(cancel)
			dst, want := make([]float32, fam.Ops.Dim()), make([]float32, fam.Ops.Dim())
			// Warm the memo on earlier steps first, then cancel inside a
			// long call.
			for n := 1; n <= 3; n++ {
				if _, err := ev.Eval(context.Background(), dst, anchor, n); err != nil {
					t.Fatal(err)
				}
			}
			applied, err := ev.Eval(ctx, dst, anchor, steps)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled Eval: %d applied, err %v, want context.Canceled", applied, err)
			}
			// Cancelled at its 10th application (4 warm-up calls' worth
			// before it for direct and coalescing): it stops within
			// checkEvery of them, far before the 60 it was asked for.
			if applied >= steps-10 {
				t.Errorf("cancelled Eval went on for %d applications", applied)
			}
			if _, err := ev.Eval(context.Background(), dst, anchor, steps); err != nil {
				t.Fatal(err)
			}
			if _, err := ref.Eval(context.Background(), want, anchor, steps); err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if !sameBits32(dst[i], want[i]) {
					t.Fatalf("after a cancel, θ̃[%d] = %v, a fresh evaluator gives %v", i, dst[i], want[i])
				}
			}
		})
	}
}

func sameBits32(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }
