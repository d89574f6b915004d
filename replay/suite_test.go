package replay_test

import (
	"testing"

	"github.com/replay-sgd/replay/replay"
	"github.com/replay-sgd/replay/replay/replaytest"
)

// affineTol is the relative error allowed to the affine and momentum
// prefixes against direct float32 application over the suite's 40 steps
// (block by block: θ, the momentum buffer, t): the prefixes are composed in
// float64, the reference accumulates float32 rounding (unit roundoff 6e-8)
// over at most 40 stable steps, far below 1e-5. (For momentum,
// TestMomentumPrefixMatchesDirect derives the bound: the prefix is as close
// to direct as direct's own rounding allows; measured ≤ 1.2e-6 over 1500
// steps.)
const affineTol = 1e-5

// TestStrategies runs the shared suite over every strategy and every
// anchor configuration.
func TestStrategies(t *testing.T) {
	type maker = replaytest.New
	windowed := func(cfg replay.Config) maker {
		return func(ops replay.Operators, theta0 []float32, fwd replay.ForwardSource) (replay.Strategy, error) {
			if cfg.From == replay.SourceForward {
				cfg.Forward = fwd
			}
			return replay.NewWindowed(ops, theta0, cfg)
		}
	}
	memo := func(cfg replay.MemoConfig) maker {
		return func(ops replay.Operators, theta0 []float32, fwd replay.ForwardSource) (replay.Strategy, error) {
			if cfg.From == replay.SourceForward {
				cfg.Forward = fwd
			}
			return replay.NewMemo(ops, theta0, cfg)
		}
	}
	sliding := func(w int) maker {
		return func(ops replay.Operators, theta0 []float32, fwd replay.ForwardSource) (replay.Strategy, error) {
			return replay.NewSliding(ops, theta0, w, fwd)
		}
	}
	cases := []struct {
		name string
		new  maker
		tol  float64
	}{
		{"full", func(ops replay.Operators, theta0 []float32, _ replay.ForwardSource) (replay.Strategy, error) {
			return replay.NewFull(ops, theta0), nil
		}, 0},
		{"windowed/W7/backward", windowed(replay.Config{Window: 7}), 0},
		{"windowed/W7/forward+resets", windowed(replay.Config{Window: 7, From: replay.SourceForward, ResetAt: []int{10, 3, 23, 10}}), 0},
		{"windowed/resets-only", windowed(replay.Config{ResetAt: []int{5, 17}}), 0},
		{"windowed/W100", windowed(replay.Config{Window: 100}), 0},
		{"sliding/W1", sliding(1), 0},
		{"sliding/W5", sliding(5), 0},
		{"sliding/W100", sliding(100), 0},
		{"memo/full", memo(replay.MemoConfig{BudgetBytes: 1 << 20}), affineTol},
		{"memo/W9/backward", memo(replay.MemoConfig{Config: replay.Config{Window: 9}, BudgetBytes: 1 << 20}), affineTol},
		{"memo/W9/forward", memo(replay.MemoConfig{Config: replay.Config{Window: 9, From: replay.SourceForward}, BudgetBytes: 1 << 20}), affineTol},
		{"coalescing/full", memo(replay.MemoConfig{BudgetBytes: 1 << 20, Coalesce: true}), 0},
		{"coalescing/W9/backward+resets", memo(replay.MemoConfig{Config: replay.Config{Window: 9, ResetAt: []int{4}}, BudgetBytes: 1 << 20, Coalesce: true}), 0},
		{"coalescing/stride3", memo(replay.MemoConfig{BudgetBytes: 1 << 20, Stride: 3, Coalesce: true}), 0},
		// 4 levels of 13 floats (the tanh net): the stride has to grow.
		{"coalescing/tiny-budget", memo(replay.MemoConfig{BudgetBytes: 4 * 13 * 4, Coalesce: true}), 0},
		{"coalescing/no-budget", memo(replay.MemoConfig{Coalesce: true}), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { replaytest.TestStrategy(t, c.new, c.tol) })
	}
}
