package replay_test

import (
	"math"
	"testing"

	"github.com/replay-sgd/replay/replay"
	"github.com/replay-sgd/replay/replay/replaytest"
)

// quadraticSetting is the paper's §3.1: a = 1, batch 1, y ~ N(0, 1) on
// 1000 points, η = 0.1, so ρ = 1 − ηa = 0.9.
func quadraticSetting(t *testing.T, steps int, iid bool) (*replaytest.Quadratic, float32) {
	rng := newRand(t)
	f := replaytest.NewQuadraticFamily(rng, 1000, 1, 0.1, steps)
	q := f.Ops.(*replaytest.Quadratic)
	if !iid {
		q.Batches = replaytest.ShuffledBatches(rng, 1000, 1, steps)
	}
	return q, f.Theta0[0]
}

// TestQuadraticClosedForm checks forward and backward iterates against
//
//	θ_n = ρ^n θ_0 + ηa Σ_k ρ^{n−k} y_{b_k},   θ̃_n = ρ^n θ_0 + ηa Σ_k ρ^{k−1} y_{b_k},
//
// computed in float64 with the very η the float32 operator uses
// (float32(0.1)), so the only difference is float32 rounding.
//
// Tolerance: one step θ − η(θ − y) rounds three times (the subtraction, the
// product, the update), each by at most u = 2^-24 relative, on values of
// magnitude at most M = max|θ| + max|y|; that is a local error ≤ (1+2η)uM.
// Later steps multiply an earlier error by ρ (forward: the error is carried
// by θ; backward: it is carried through the outer maps T_1…T_{k−1}), so the
// accumulated error is ≤ (1+2η)uM/(1−ρ). We allow twice that bound for the
// second-order terms. A wrong composition order moves θ̃_n by O(1).
func TestQuadraticClosedForm(t *testing.T) {
	const steps = 1000
	q, theta0 := quadraticSetting(t, steps, false)
	eta := float64(q.LR) * float64(q.A)
	rho := 1 - eta
	y := func(k int) float64 { return float64(q.Y[q.Batches.Batch(k)[0]]) }

	// Oracles in float64.
	fwdOracle := make([]float64, steps+1)
	bwdOracle := make([]float64, steps+1)
	fwdOracle[0], bwdOracle[0] = float64(theta0), float64(theta0)
	rk := 1.0 // ρ^{k−1}
	var bsum float64
	for n := 1; n <= steps; n++ {
		fwdOracle[n] = rho*fwdOracle[n-1] + eta*y(n) // = ρ^n θ0 + ηa Σ ρ^{n−k} y_{b_k}
		bsum += rk * y(n)
		rk *= rho
		bwdOracle[n] = rk*float64(theta0) + eta*bsum
	}
	// The recursion above is the closed form; check it against the sum
	// written out at a few steps so the oracle itself is not the recursion
	// under test.
	for _, n := range []int{1, 2, 17, 500, steps} {
		s := math.Pow(rho, float64(n)) * float64(theta0)
		for k := 1; k <= n; k++ {
			s += eta * math.Pow(rho, float64(n-k)) * y(k)
		}
		if math.Abs(s-fwdOracle[n]) > 1e-12 {
			t.Fatalf("oracle recursion at %d: %g vs %g", n, fwdOracle[n], s)
		}
	}

	m := math.Abs(float64(theta0))
	for _, v := range q.Y {
		m = max(m, math.Abs(float64(v)))
	}
	m *= 2 // max|θ| ≤ max(|θ0|, max|y|): θ stays in the convex hull
	u := math.Ldexp(1, -24)
	tol := 2 * (1 + 2*eta) * u * m / (1 - rho)
	t.Logf("θ0 = %g, M = %.3g, tolerance %.3g", theta0, m, tol)

	fwd := replaytest.NewForward(q, []float32{theta0})
	full := replay.NewFull(q, []float32{theta0})
	memo, err := replay.NewMemo(q, []float32{theta0}, replay.MemoConfig{})
	if err != nil {
		t.Fatal(err)
	}
	coal, err := replay.NewMemo(q, []float32{theta0}, replay.MemoConfig{BudgetBytes: 1 << 16, Coalesce: true})
	if err != nil {
		t.Fatal(err)
	}
	th, bk, bm, bc := make([]float32, 1), make([]float32, 1), make([]float32, 1), make([]float32, 1)
	var worstF, worstB float64
	prev := theta0
	for n := 0; n <= steps; n++ {
		if err := fwd.Forward(th, n); err != nil {
			t.Fatal(err)
		}
		for _, s := range []struct {
			s   replay.Strategy
			dst []float32
		}{{full, bk}, {memo, bm}, {coal, bc}} {
			if _, err := s.s.Backward(s.dst, n); err != nil {
				t.Fatal(err)
			}
		}
		ef := math.Abs(float64(th[0]) - fwdOracle[n])
		eb := math.Abs(float64(bk[0]) - bwdOracle[n])
		worstF, worstB = max(worstF, ef), max(worstB, eb)
		if ef > tol || eb > tol {
			t.Fatalf("step %d: forward %g (oracle %g), backward %g (oracle %g), tolerance %.3g",
				n, th[0], fwdOracle[n], bk[0], bwdOracle[n], tol)
		}
		if e := math.Abs(float64(bm[0]) - bwdOracle[n]); e > tol {
			t.Fatalf("step %d: affine prefix %g, oracle %g", n, bm[0], bwdOracle[n])
		}
		if bc[0] != bk[0] {
			t.Fatalf("step %d: coalescing %g, full %g", n, bc[0], bk[0])
		}
		// Backward iterates converge to a point: |θ̃_n − θ̃_{n−1}| =
		// ρ^{n−1}|ηa y_{b_n} − ηa θ0| ≈ 1e-23 at n = 500.
		if n >= 500 {
			if d := math.Abs(float64(bk[0] - prev)); d >= 1e-6 {
				t.Fatalf("step %d: backward moved by %g ≥ 1e-6", n, d)
			}
		}
		prev = bk[0]
	}
	t.Logf("worst error: forward %.3g, backward %.3g (tolerance %.3g)", worstF, worstB, tol)
}

// TestQuadraticForwardVariance: forward iterates do not converge; their
// stationary variance is (ηa)² s²/(1−ρ²), s² the data set's (population)
// variance. Batches are drawn iid from the 1000 points, so the y_{b_k} are
// iid with variance exactly s² and the formula is exact for the stationary
// AR(1) process θ_n = ρθ_{n−1} + ηa y_{b_n}.
//
// Statistics: after a burn-in of 1000 steps (ρ^1000 ≈ 1e-46 of the start
// remains) we take the sample variance of 100 000 iterates. For an AR(1)
// process the variance of that estimate is ≈ 2σ⁴(1+ρ²)/((1−ρ²)N), a
// relative standard deviation of √(2·1.81/0.19/100000) ≈ 1.4%. The 10%
// tolerance is about 7 standard deviations: a false failure has
// probability < 1e-11, while a wrong ρ (e.g. 0.8) changes the variance by
// far more than 10%. The sample may contain heavier tails than Gaussian
// y, which only changes the constant of the 1.4% slightly (fourth moment of
// a fixed sample of N(0,1) draws).
//
// The same holds, within the tolerance, with nn's sampling (shuffled epochs
// without replacement): two samples of one epoch then have covariance
// −s²/(N−1), which lowers the variance by about
// ((Σw)² − Σw²)/((N−1)Σw²) = (1/(1−ρ)² − 1/(1−ρ²))/(999/(1−ρ²)) ≈ 1.8%
// (w_k = ηa ρ^{n−k}), still 5 standard deviations inside 10%.
func TestQuadraticForwardVariance(t *testing.T) {
	for _, iid := range []bool{true, false} {
		name := map[bool]string{true: "iid", false: "shuffled-epochs"}[iid]
		t.Run(name, func(t *testing.T) { testForwardVariance(t, iid) })
	}
}

func testForwardVariance(t *testing.T, iid bool) {
	const burn, steps = 1000, 100000
	q, theta0 := quadraticSetting(t, burn+steps, iid)
	var mean, s2 float64
	for _, v := range q.Y {
		mean += float64(v)
	}
	mean /= float64(len(q.Y))
	for _, v := range q.Y {
		s2 += (float64(v) - mean) * (float64(v) - mean)
	}
	s2 /= float64(len(q.Y))
	eta := float64(q.LR) * float64(q.A)
	rho := 1 - eta
	want := eta * eta * s2 / (1 - rho*rho)

	th := []float32{theta0}
	var sum, sumSq float64
	for k := 1; k <= burn+steps; k++ {
		q.Apply(k, th)
		if k > burn {
			v := float64(th[0])
			sum += v
			sumSq += v * v
		}
	}
	mu := sum / steps
	got := sumSq/steps - mu*mu
	t.Logf("s² = %.4f, stationary variance %.5f, measured %.5f (%.2f%%), mean %.4f (data mean %.4f)",
		s2, want, got, 100*(got-want)/want, mu, mean)
	if math.Abs(got-want) > 0.1*want {
		t.Fatalf("forward variance %.5f, want %.5f ± 10%%", got, want)
	}
}

// TestExample24 is the paper's Example 2.4: two constant maps T(θ) = c_0 or
// c_1. The backward iterate is T_1(…) = c_{b_1} from step 1 on — it has
// converged at once, to the first map's constant — while the forward
// iterate θ_n = c_{b_n} keeps jumping between the two.
func TestExample24(t *testing.T) {
	const steps = 300
	rng := newRand(t)
	f := replaytest.NewConstantFamily(rng, 2, 1, steps)
	c := f.Ops.(*replaytest.Constant)
	c.C = [][]float32{{-1}, {1}}
	first := c.C[c.Batches.Batch(1)[0]][0]

	full, _ := backward(t, replay.NewFull(c, f.Theta0), 1, steps)
	memo, res := backward(t, mustMemo(t, f, replay.MemoConfig{BudgetBytes: 1 << 16}), 1, steps)
	fwd := replaytest.NewForward(c, f.Theta0)
	th := make([]float32, 1)
	jumps := 0
	prev := f.Theta0[0]
	for n := 1; n <= steps; n++ {
		if full[n][0] != first || memo[n][0] != first {
			t.Fatalf("step %d: backward %g (memo %g), want the first map's constant %g", n, full[n][0], memo[n][0], first)
		}
		// The memo meets the previous chain after two maps.
		if n > 1 && res[n].Applied > 2 {
			t.Fatalf("step %d: memo applied %d maps, want ≤ 2", n, res[n].Applied)
		}
		if err := fwd.Forward(th, n); err != nil {
			t.Fatal(err)
		}
		if th[0] != c.C[c.Batches.Batch(n)[0]][0] {
			t.Fatalf("forward step %d: %g", n, th[0])
		}
		if n > steps/2 && th[0] != prev {
			jumps++
		}
		prev = th[0]
	}
	// Each late step jumps with probability 1/2: 150 steps without a jump
	// has probability 2^-150.
	if jumps == 0 {
		t.Fatal("forward iterates never jumped")
	}
	t.Logf("forward jumps over the last %d steps: %d; backward fixed at %g", steps/2, jumps, first)
}
