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
