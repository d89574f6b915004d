package replay_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/replay-sgd/replay/replay"
	"github.com/replay-sgd/replay/replay/replaytest"
)

// BenchmarkMomentumMemo: the memoized prefix under heavy-ball momentum
// (μ = 0.9) on least squares (16 inputs, 2 outputs, batch 8) against full,
// for whole backward trajectories of n steps. The prefix's cost per step
// (ns/step) stays flat as n doubles; full's grows linearly with n. The
// in=784 case has Fashion-MNIST's linear shape (10×785, random data): a
// step of the prefix there is ≈ 8·b·Cols² = 39 MFLOP whatever n.
func BenchmarkMomentumMemo(b *testing.B) {
	for _, c := range []struct{ in, out, steps int }{{16, 2, 250}, {16, 2, 500}, {16, 2, 1000}, {784, 10, 40}} {
		steps := c.steps
		rng := rand.New(rand.NewPCG(1, 2))
		f := replaytest.OptimFamily(replaytest.NewLeastSquaresFamily(rng, c.in, c.out, 500, 8, 0.05, steps),
			&replaytest.Optim{Name: replaytest.OptMomentum, LR: 0.05, Momentum: 0.9})
		for _, name := range []string{"memo", "full"} {
			b.Run(fmt.Sprintf("%s/in=%d/n=%d", name, c.in, steps), func(b *testing.B) {
				for b.Loop() {
					var s replay.Strategy = replay.NewFull(f.Ops, f.Theta0)
					if name == "memo" {
						m, err := replay.NewMemo(f.Ops, f.Theta0, replay.MemoConfig{})
						if err != nil {
							b.Fatal(err)
						}
						if _, ok := m.Evaluator().(*replay.MomentumPrefix); !ok {
							b.Fatalf("memo chose %T", m.Evaluator())
						}
						s = m
					}
					trajectory(b, s, f.Ops.Dim(), steps)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(steps), "ns/step")
			})
		}
	}
}
