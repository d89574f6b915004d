package replay_test

import (
	"fmt"

	"github.com/replay-sgd/replay/replay"
	"github.com/replay-sgd/replay/replay/replaytest"
)

// A scalar quadratic with ρ = 1 − ηa = 0.5: T_k(θ) = θ/2 + y_k/2, with
// y = 1, −1, 0.5 at steps 1, 2, 3. The backward iterate applies the newest
// batch first: θ̃_3 = T_1(T_2(T_3(θ_0))). With W = 2 the anchor moves to
// step 2 before step 3, starting from θ̃_2: T_3(θ̃_2) = 0.375.
func Example() {
	ops := &replaytest.Quadratic{
		Y: []float32{1, -1, 0.5}, A: 1, LR: 0.5,
		Batches: replaytest.Batches{{0}, {1}, {2}},
	}
	theta0 := []float32{0}

	fwd := replaytest.NewForward(ops, theta0)
	full := replay.NewFull(ops, theta0)
	win, err := replay.NewWindowed(ops, theta0, replay.Config{Window: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	th, bk, bw := make([]float32, 1), make([]float32, 1), make([]float32, 1)
	for n := 1; n <= 3; n++ {
		_ = fwd.Forward(th, n)
		rf, _ := full.Backward(bk, n)
		rw, _ := win.Backward(bw, n)
		fmt.Printf("n=%d forward %-6g backward %-6g (%d applications)  windowed W=2 %-6g (anchor %d from %s)\n",
			n, th[0], bk[0], rf.Applied, bw[0], rw.Anchor, rw.From)
	}
	// Output:
	// n=1 forward 0.5    backward 0.5    (1 applications)  windowed W=2 0.5    (anchor 0 from init)
	// n=2 forward -0.25  backward 0.25   (2 applications)  windowed W=2 0.25   (anchor 0 from init)
	// n=3 forward 0.125  backward 0.3125 (3 applications)  windowed W=2 0.375  (anchor 2 from backward)
}

// Heavy-ball momentum (μ = 0.5) on the scalar quadratic T: ∇ = θ − y_k,
// η = 0.5, y = 1, −1 at steps 1, 2. The state is (θ, buf, t). The backward
// iterate θ̃_2 = T_1(T_2(s_0)) applies step 2 first, at t = 0 (torch's
// absent buffer: buf = ∇ = 1, θ = −0.5), then step 1: buf = 0.5·1 + (−0.5
// − 1) = −1, θ = −0.5 + 0.5 = 0. Memo composes the maps exactly instead
// (a MomentumPrefix).
func Example_momentum() {
	q := &replaytest.Quadratic{Y: []float32{1, -1}, A: 1, LR: 0.5, Batches: replaytest.Batches{{0}, {1}}}
	f := replaytest.OptimFamily(replaytest.Family{Name: "quadratic", Ops: q, Theta0: []float32{0}, Steps: 2},
		&replaytest.Optim{Name: replaytest.OptMomentum, LR: 0.5, Momentum: 0.5})
	full := replay.NewFull(f.Ops, f.Theta0)
	memo, err := replay.NewMemo(f.Ops, f.Theta0, replay.MemoConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	bk, bm := make([]float32, 3), make([]float32, 3)
	for n := 1; n <= 2; n++ {
		_, _ = full.Backward(bk, n)
		_, _ = memo.Backward(bm, n)
		fmt.Printf("n=%d full (θ, buf, t) = %v, memo %v (%T)\n", n, bk, bm, memo.Evaluator())
	}
	// Output:
	// n=1 full (θ, buf, t) = [0.5 -1 1], memo [0.5 -1 1] (*replay.MomentumPrefix)
	// n=2 full (θ, buf, t) = [0 -1 2], memo [0 -1 2] (*replay.MomentumPrefix)
}
