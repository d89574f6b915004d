package replay_test

import (
	"math/rand/v2"
	"testing"

	"github.com/replay-sgd/replay/replay"
	"github.com/replay-sgd/replay/replay/replaytest"
)

// trajectory computes θ̃_1 … θ̃_steps with s and returns the operator
// applications it reported.
func trajectory(b *testing.B, s replay.Strategy, dim, steps int) int {
	dst := make([]float32, dim)
	applied := 0
	for n := 1; n <= steps; n++ {
		res, err := s.Backward(dst, n)
		if err != nil {
			b.Fatal(err)
		}
		applied += res.Applied
	}
	return applied
}

// benchTrajectories times whole backward trajectories under each strategy
// (one op = one trajectory, fresh strategy) and reports the applications.
func benchTrajectories(b *testing.B, f replaytest.Family, steps int, strategies map[string]func() replay.Strategy) {
	for _, name := range []string{"full", "memo", "coalescing"} {
		mk, ok := strategies[name]
		if !ok {
			continue
		}
		b.Run(name, func(b *testing.B) {
			applied := 0
			for b.Loop() {
				applied = trajectory(b, mk(), f.Ops.Dim(), steps)
			}
			b.ReportMetric(float64(applied), "applications/traj")
		})
	}
}

// BenchmarkCoalescingScalar: coalescence memo vs full for the scalar
// quadratic with ρ = 0.9 (η = 0.1, a = 1, batch 1, 1000 points), a
// trajectory of 2000 backward iterates.
func BenchmarkCoalescingScalar(b *testing.B) {
	const steps = 2000
	rng := rand.New(rand.NewPCG(1, 2))
	f := replaytest.NewQuadraticFamily(rng, 1000, 1, 0.1, steps)
	benchTrajectories(b, f, steps, map[string]func() replay.Strategy{
		"full": func() replay.Strategy { return replay.NewFull(f.Ops, f.Theta0) },
		"coalescing": func() replay.Strategy {
			m, _ := replay.NewMemo(f.Ops, f.Theta0, replay.MemoConfig{BudgetBytes: 1 << 20, Coalesce: true})
			return m
		},
		"memo": func() replay.Strategy { // affine prefix
			m, _ := replay.NewMemo(f.Ops, f.Theta0, replay.MemoConfig{})
			return m
		},
	})
}

// BenchmarkAffinePrefixLeastSquares: memoized prefix vs full for the
// in-package least-squares family (16 inputs, 2 outputs, batch 8), 1000
// backward iterates. The Fashion-MNIST figure is in the integration
// benchmark.
func BenchmarkAffinePrefixLeastSquares(b *testing.B) {
	const steps = 1000
	rng := rand.New(rand.NewPCG(1, 2))
	f := replaytest.NewLeastSquaresFamily(rng, 16, 2, 500, 8, 0.05, steps)
	benchTrajectories(b, f, steps, map[string]func() replay.Strategy{
		"full": func() replay.Strategy { return replay.NewFull(f.Ops, f.Theta0) },
		"memo": func() replay.Strategy {
			m, _ := replay.NewMemo(f.Ops, f.Theta0, replay.MemoConfig{})
			return m
		},
	})
}
