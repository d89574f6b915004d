package replay_test

import (
	"math"
	"math/cmplx"
	"testing"

	"github.com/replay-sgd/replay/replay"
	"github.com/replay-sgd/replay/replay/replaytest"
)

// mat2 is a 2×2 matrix acting on the column x = (θ, buf).
type mat2 [2][2]float64

func (m mat2) mul(x [2]float64) [2]float64 {
	return [2]float64{m[0][0]*x[0] + m[0][1]*x[1], m[1][0]*x[0] + m[1][1]*x[1]}
}

func (m mat2) norm() float64 { // ‖·‖_∞, the largest row sum
	return max(math.Abs(m[0][0])+math.Abs(m[0][1]), math.Abs(m[1][0])+math.Abs(m[1][1]))
}

func vnorm(x [2]float64) float64 { return max(math.Abs(x[0]), math.Abs(x[1])) }

// power returns K^j by Cayley–Hamilton: with the eigenvalues λ1 ≠ λ2 of K
// (real or complex conjugate), K^j = α_j K − λ1λ2 α_{j−1} I with
// α_j = (λ1^j − λ2^j)/(λ1 − λ2) — a closed form, not the recursion.
func (m mat2) power(j int) mat2 {
	if j == 0 {
		return mat2{{1, 0}, {0, 1}}
	}
	tr, det := m[0][0]+m[1][1], m[0][0]*m[1][1]-m[0][1]*m[1][0]
	s := cmplx.Sqrt(complex(tr*tr-4*det, 0))
	l1, l2 := (complex(tr, 0)+s)/2, (complex(tr, 0)-s)/2
	alpha := func(j int) float64 {
		return real((cmplx.Pow(l1, complex(float64(j), 0)) - cmplx.Pow(l2, complex(float64(j), 0))) / (l1 - l2))
	}
	a, b := alpha(j), det*alpha(j-1)
	return mat2{{a*m[0][0] - b, a * m[0][1]}, {a * m[1][0], a*m[1][1] - b}}
}

// TestMomentumQuadraticClosedForm: heavy-ball momentum (torch.optim.SGD,
// momentum μ, dampening d) on the paper's §3.1 quadratic — per-sample loss
// a(θ − y_i)²/2, batch 1, so ∇ = a(θ − y_k) — is the 2×2 linear recurrence
// on x = (θ, buf)
//
//	t ≥ 1: buf' = μ buf + (1−d) a(θ − y),  θ' = θ − η buf':   x' = K x + h y,
//	       K = [[1 − η(1−d)a, −ημ], [(1−d)a, μ]],  h = ((1−d)ηa, −(1−d)a)
//	t = 0: buf' = a(θ − y) (torch's absent buffer), θ' = θ − η buf':
//	       x' = K⁰ x + h⁰ y,  K⁰ = [[1 − ηa, 0], [a, 0]],  h⁰ = (ηa, −a),
//
// so from s_0 = (θ_0, 0, 0), with y_k = y_{b_k},
//
//	x_n = K^{n−1}(K⁰x_0 + h⁰y_1) + Σ_{k=2}^{n} K^{n−k} h y_k         (forward)
//	x̃_n = K^{n−1}(K⁰x_0 + h⁰y_n) + Σ_{k=1}^{n−1} K^{k−1} h y_k       (backward:
//	      T_n is applied first, at t = 0, and T_k is followed by k−1 maps),
//
// with K^j in closed form (mat2.power). The oracle is float64 with the very
// η, μ, a, d the float32 operators use; the only difference is float32
// rounding.
//
// Tolerance, derived as in TestQuadraticClosedForm: a float32 step rounds
// g = a(θ − y) twice, buf' = μ buf + (1−d) g three times (plus g's error),
// θ' = θ − η buf' twice (plus η times buf's error), each by at most
// u = 2^-24 relative. With X a bound on |θ| and |buf| over every chain
// (below) and G = a(X + Y), Y = max|y|, a step's local error is at most
// δ_b = u(2μX + 4G) on buf and δ_θ = u(ηX + X) + ηδ_b on θ. An error made
// at one level is carried to the result by the linear parts of the maps
// applied after it, a power K^j (forward: the later steps; backward: the
// outer maps T_{k−1}…T_1), so the accumulated error is at most
// S·max(δ_θ, δ_b) with S = Σ_{j≥0} ‖K^j‖_∞ (summed in closed form until
// the terms vanish; finite since K's spectral radius is below 1). X is
// computed: the largest |θ|, |buf| of every state of every chain, by the
// recursion in float64 (the a-priori bound S(‖K⁰‖|θ_0| + ‖h⁰‖Y) + S‖h‖Y
// holds too but is a hundred times larger). We allow twice S·δ for the
// second order terms. The memo (MomentumPrefix) is held to the same bound
// (it is exact in float64 and rounds once at the end) and the coalescence
// memo to full, bitwise.
func TestMomentumQuadraticClosedForm(t *testing.T) {
	for _, c := range []struct {
		name     string
		mu, damp float32
	}{
		{"mu0.9", 0.9, 0},           // complex eigenvalues: underdamped
		{"mu0.5-damp0.3", 0.5, 0.3}, // real eigenvalues
	} {
		t.Run(c.name, func(t *testing.T) { testMomentumClosedForm(t, c.mu, c.damp) })
	}
}

func testMomentumClosedForm(t *testing.T, mu32, damp32 float32) {
	const steps = 1000
	q, theta0 := quadraticSetting(t, steps, false)
	o := &replaytest.Optim{Name: replaytest.OptMomentum, LR: q.LR, Momentum: mu32, Dampening: damp32}
	fam := replaytest.OptimFamily(replaytest.Family{Name: "quadratic", Ops: q, Theta0: []float32{theta0}, Steps: steps}, o)
	eta, a, mu := float64(q.LR), float64(q.A), float64(mu32)
	dc := float64(float32(1 - float64(damp32))) // 1 − d as the float32 step uses it
	K := mat2{{1 - eta*dc*a, -eta * mu}, {dc * a, mu}}
	K0 := mat2{{1 - eta*a, 0}, {a, 0}}
	h := [2]float64{dc * eta * a, -dc * a}
	h0 := [2]float64{eta * a, -a}
	y := func(k int) float64 { return float64(q.Y[q.Batches.Batch(k)[0]]) }
	x0 := [2]float64{float64(theta0), 0}

	pow := make([]mat2, steps)
	for j := range pow {
		pow[j] = K.power(j)
	}
	// The closed form against the recursion K^{j+1} = K·K^j at a few j, so
	// that the oracle is not wrong in the same way as the code under test.
	rec := mat2{{1, 0}, {0, 1}}
	for j := 0; j < steps; j++ {
		if j == 1 || j == 2 || j == 17 || j == 500 || j == steps-1 {
			for r := 0; r < 2; r++ {
				for cc := 0; cc < 2; cc++ {
					if math.Abs(rec[r][cc]-pow[j][r][cc]) > 1e-12 {
						t.Fatalf("K^%d closed form %v, recursion %v", j, pow[j], rec)
					}
				}
			}
		}
		rec = mat2{
			{K[0][0]*rec[0][0] + K[0][1]*rec[1][0], K[0][0]*rec[0][1] + K[0][1]*rec[1][1]},
			{K[1][0]*rec[0][0] + K[1][1]*rec[1][0], K[1][0]*rec[0][1] + K[1][1]*rec[1][1]},
		}
	}
	add := func(x, y [2]float64, s float64) [2]float64 { return [2]float64{x[0] + s*y[0], x[1] + s*y[1]} }
	forward := func(n int) [2]float64 {
		x := pow[n-1].mul(add(K0.mul(x0), h0, y(1)))
		for k := 2; k <= n; k++ {
			x = add(x, pow[n-k].mul(h), y(k))
		}
		return x
	}
	backward := func(n int) [2]float64 {
		x := pow[n-1].mul(add(K0.mul(x0), h0, y(n)))
		for k := 1; k <= n-1; k++ {
			x = add(x, pow[k-1].mul(h), y(k))
		}
		return x
	}

	// The tolerance.
	var S float64
	for j := 0; ; j++ {
		nk := K.power(j).norm()
		S += nk
		if nk < 1e-18 && j > 10 {
			break
		}
		if j > 1e6 {
			t.Fatal("Σ‖K^j‖ does not converge")
		}
	}
	var Y float64
	for _, v := range q.Y {
		Y = max(Y, math.Abs(float64(v)))
	}
	// X: the largest |θ|, |buf| of every state of every chain (forward,
	// and each backward chain's levels), by the recursion in float64, with
	// 1% for float32's own deviation (far more than the tolerance).
	step := func(x [2]float64, k int, first bool) [2]float64 {
		if first {
			return add(K0.mul(x), h0, y(k))
		}
		return add(K.mul(x), h, y(k))
	}
	var X float64
	xf := x0
	for n := 1; n <= steps; n++ {
		xf = step(xf, n, n == 1)
		X = max(X, vnorm(xf))
		xb := x0
		for k := n; k >= 1; k-- {
			xb = step(xb, k, k == n)
			X = max(X, vnorm(xb))
		}
	}
	X = 1.01 * max(X, math.Abs(float64(theta0)))
	G := a * (X + Y)
	u := math.Ldexp(1, -24)
	db := u * (2*mu*X + 4*G)
	dth := u*(eta*X+X) + eta*db
	tol := 2 * S * max(dth, db)
	t.Logf("θ0 = %g, S = Σ‖K^j‖ = %.4g, X = %.4g, tolerance %.3g", theta0, S, X, tol)

	fwd := replaytest.NewForward(fam.Ops, fam.Theta0)
	full := replay.NewFull(fam.Ops, fam.Theta0)
	memo := mustMemo(t, fam, replay.MemoConfig{})
	if _, ok := memo.Evaluator().(*replay.MomentumPrefix); !ok {
		t.Fatalf("memo chose %T", memo.Evaluator())
	}
	coal := mustMemo(t, fam, replay.MemoConfig{BudgetBytes: 1 << 16, Coalesce: true})
	th, bk, bm, bc := make([]float32, 3), make([]float32, 3), make([]float32, 3), make([]float32, 3)
	var worstF, worstB, worstM float64
	for n := 1; n <= steps; n++ {
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
		fo, bo := forward(n), backward(n)
		for _, c := range []struct {
			what  string
			got   []float32
			want  [2]float64
			worst *float64
		}{{"forward", th, fo, &worstF}, {"backward", bk, bo, &worstB}, {"memo", bm, bo, &worstM}} {
			e := max(math.Abs(float64(c.got[0])-c.want[0]), math.Abs(float64(c.got[1])-c.want[1]))
			*c.worst = max(*c.worst, e)
			if e > tol || c.got[2] != float32(n) {
				t.Fatalf("step %d: %s (θ, buf, t) = %v, closed form %v, t %d: error %.3g > %.3g",
					n, c.what, c.got, c.want, n, e, tol)
			}
		}
		if !replaytest.Bitwise(bc, bk) {
			t.Fatalf("step %d: coalescing %v, full %v", n, bc, bk)
		}
	}
	t.Logf("worst error: forward %.3g, backward %.3g, memo %.3g (tolerance %.3g)", worstF, worstB, worstM, tol)
}
