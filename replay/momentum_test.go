package replay_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/replay-sgd/replay/replay"
	"github.com/replay-sgd/replay/replay/replaytest"
)

// ref64 is heavy-ball/Nesterov momentum applied step by step in float64
// from torch.optim.SGD's definition and the operators' gradient data — an
// evaluation independent of MomentumPrefix's block algebra. The state is
// (Θ, M = η·buf, t) with Θ and M Rows×Cols (Pack's layout).
type ref64 struct {
	ops        replay.MomentumAffineOperators
	set        replay.MomentumSettings
	rows, cols int
	q          []float64
}

func newRef64(ops replay.MomentumAffineOperators) *ref64 {
	rows, cols := ops.AffineShape()
	return &ref64{ops: ops, set: ops.MomentumSettings(), rows: rows, cols: cols, q: make([]float64, rows*cols)}
}

// step applies T_k to (th, m) at step count t:
//
//	q = η g = c ΘUᵀU − C + η wd Θ;  M = q if t = 0 else μM + (1−d) q;
//	Θ −= q + μM (Nesterov) or M;   μ = 0: Θ −= q, M untouched.
//
// With probe, the offset C is left out (the linear part of the map). It
// returns the largest magnitude it met (‖z‖, ‖q‖, ‖C‖ and c‖ΘUᵀ‖‖U‖, in
// Frobenius norms), the scale of its intermediate values.
func (r *ref64) step(k int, th, m []float64, t int, probe bool) float64 {
	u, b, c, off := r.ops.MomentumStep(k)
	rows, cols, q := r.rows, r.cols, r.q
	lam := r.set.LR * r.set.WeightDecay
	var xuNorm, uNorm, cNorm float64
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			q[i*cols+j] = lam * th[i*cols+j]
			if !probe {
				q[i*cols+j] -= off[i*cols+j]
				cNorm += off[i*cols+j] * off[i*cols+j]
			}
		}
		for s := 0; s < b; s++ {
			var xu float64
			for j := 0; j < cols; j++ {
				xu += th[i*cols+j] * u[s*cols+j]
			}
			xuNorm += xu * xu
			for j := 0; j < cols; j++ {
				q[i*cols+j] += c * xu * u[s*cols+j]
			}
		}
	}
	for _, x := range u {
		uNorm += x * x
	}
	scale := c*math.Sqrt(xuNorm*uNorm) + math.Sqrt(cNorm) + norm(q) + norm(th) + norm(m)
	mu, d := r.set.Momentum, r.set.Dampening
	for i := range th {
		switch {
		case mu == 0:
			th[i] -= q[i]
			continue
		case t == 0:
			m[i] = q[i]
		default:
			m[i] = mu*m[i] + (1-d)*q[i]
		}
		if r.set.Nesterov {
			th[i] -= q[i] + mu*m[i]
		} else {
			th[i] -= m[i]
		}
	}
	return scale
}

// linear returns the 2Cols×2Cols matrix 𝕄_k of the step at t ≥ 1 acting on
// one row [θ_i, m_i] of the state (every row is mapped alike), probed on
// basis rows.
func (r *ref64) linear(k int) []float64 {
	c2 := 2 * r.cols
	mat := make([]float64, c2*c2)
	th, m := make([]float64, r.rows*r.cols), make([]float64, r.rows*r.cols)
	for j := 0; j < c2; j++ {
		clear(th)
		clear(m)
		if j < r.cols {
			th[j] = 1
		} else {
			m[j-r.cols] = 1
		}
		r.step(k, th, m, 1, true)
		copy(mat[j*c2:j*c2+r.cols], th[:r.cols])
		copy(mat[j*c2+r.cols:(j+1)*c2], m[:r.cols])
	}
	return mat
}

func norm(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

// matMul returns a·b for n×n row-major matrices.
func matMul(a, b []float64, n int) []float64 {
	out := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for l := 0; l < n; l++ {
			x := a[i*n+l]
			for j := 0; j < n; j++ {
				out[i*n+j] += x * b[l*n+j]
			}
		}
	}
	return out
}

func identity(n int) []float64 {
	out := make([]float64, n*n)
	for i := 0; i < n; i++ {
		out[i*n+i] = 1
	}
	return out
}

// momentumFamilies returns the optimizer families with the momentum-affine
// capability.
func momentumFamilies(t *testing.T, steps int) []replaytest.Family {
	var out []replaytest.Family
	for _, f := range replaytest.OptimFamilies(newRand(t), steps) {
		if _, ok := replay.AsMomentumAffine(f.Ops); ok {
			out = append(out, f)
		}
	}
	if len(out) != 6 {
		t.Fatalf("%d momentum-affine families, want 6 (heavy ball and Nesterov over quadratic, least squares, affine)", len(out))
	}
	return out
}

// TestMomentumPrefixMatchesDirect proves MomentumPrefix against direct
// application, over heavy-ball and Nesterov momentum on the quadratic,
// least squares (dampening, weight decay) and the generic affine family
// (dense offsets, rank-deficient batches), 1500 steps, under four anchors:
// s_0 (t = 0, where the first map is torch's "absent buffer" step), a
// random θ and buffer with t = 0 (the buffer must be ignored), the forward
// state at r = 300 (t = 300) and a random state with t = 7.
//
// Each result is checked twice, at sampled steps:
//
//   - against ref64, the chain in float64: element by element
//     |θ̃ − ref| ≤ u₃₂|ref| + τ (buffer: τ/η), where u₃₂|ref| is the final
//     rounding to float32 and τ bounds the float64 rounding of both
//     computations (below); a wrong term of the algebra is off by O(1);
//   - against Direct in float32, by the triangle inequality through ref:
//     |θ̃ − direct| ≤ |direct − ref| + u₃₂|ref| + τ — so the memo is as
//     close to the float32 full evaluation as that evaluation's own
//     rounding allows, with nothing guessed.
//
// τ (first order in u = 2^-53): an error made at level k of the chain is
// carried to the result by the linear parts of the maps around it. For
// ref64 these are the outer maps, 𝔸_{k−1} = 𝕄_{k−1}⋯𝕄_{r+1}; for the
// prefix, an error in its composed 𝔸_k is carried by the inner maps
// 𝕄_n⋯𝕄_{k+1} and multiplied by the start. With P the largest Frobenius
// norm of those products (computed here from ref64's probed 𝕄_k), Z the
// largest intermediate magnitude of a step of the chain, and κ = 3(Cols+b)
// + 14 the roundings an entry goes through per step in the two
// computations together (dot products of length Cols and b, a few
// updates), τ = 2·κ·u·(n − r)·Z·P·max(1, P) — the factor 2 for the second
// order. The last element, t, must be exact.
func TestMomentumPrefixMatchesDirect(t *testing.T) {
	const steps = 1500
	rng := newRand(t)
	for _, f := range momentumFamilies(t, steps) {
		t.Run(f.Name, func(t *testing.T) {
			ops, _ := replay.AsMomentumAffine(f.Ops)
			rows, cols := ops.AffineShape()
			p := rows * cols
			dim := f.Ops.Dim()
			lr := ops.MomentumSettings().LR
			ref := newRef64(ops)
			c2 := 2 * cols
			mats := make([][]float64, steps+1)
			for k := 1; k <= steps; k++ {
				mats[k] = ref.linear(k)
			}
			fwd := replaytest.NewForward(f.Ops, f.Theta0)
			at300 := make([]float32, dim)
			if err := fwd.Forward(at300, 300); err != nil {
				t.Fatal(err)
			}
			random := func(tt float32) []float32 {
				s := make([]float32, dim)
				for i := 0; i < 2*p; i++ {
					s[i] = float32(rng.NormFloat64())
				}
				s[2*p] = tt
				return s
			}
			anchors := []struct {
				name string
				an   replay.Anchor
			}{
				{"s0", replay.Anchor{Step: 0, Start: f.Theta0}},
				{"t0-buffer", replay.Anchor{Step: 0, Start: random(0)}},
				{"forward300", replay.Anchor{Step: 300, Start: at300}},
				{"t7", replay.Anchor{Step: 10, Start: random(7)}},
			}
			u64, u32 := math.Ldexp(1, -53), math.Ldexp(1, -24)
			for _, a := range anchors {
				mp := replay.NewMomentumPrefix(ops)
				direct := replay.NewDirect(f.Ops)
				got, want := make([]float32, dim), make([]float32, dim)
				start := slices.Clone(a.an.Start)
				r := a.an.Step
				outer := identity(c2) // 𝔸_{n−1}
				var pOuter float64
				worstRef, worstDirect := 0.0, 0.0
				for n := r + 1; n <= steps; n++ {
					pOuter = max(pOuter, norm(outer))
					applied, err := mp.Eval(context.Background(), got, a.an, n)
					if err != nil {
						t.Fatal(err)
					}
					if applied != 1 {
						t.Fatalf("%s step %d: %d maps composed, want 1 (sequential calls)", a.name, n, applied)
					}
					outer = matMul(mats[n], outer, c2)
					if n-r > 12 && n%101 != 0 && n != steps {
						continue
					}
					// ref64 from the start, and the inner products.
					th, m := make([]float64, p), make([]float64, p)
					ops.Pack(th, start[:p])
					ops.Pack(m, start[p:2*p])
					for i := range m {
						m[i] *= lr
					}
					tt := int(start[2*p])
					z := 0.0
					inner, pInner := identity(c2), 0.0
					for k := n; k > r; k-- {
						z = max(z, ref.step(k, th, m, tt, false))
						tt++
						pInner = max(pInner, norm(inner))
						inner = matMul(inner, mats[k], c2)
					}
					pp := max(pOuter, pInner)
					kappa := float64(3*(cols+8) + 14) // b ≤ 8 in these families
					tau := 2 * kappa * u64 * float64(n-r) * z * pp * max(1, pp)
					refState := make([]float32, dim)
					ops.Unpack(refState[:p], th)
					for i := range m {
						m[i] /= lr
					}
					ops.Unpack(refState[p:2*p], m)
					if _, err := direct.Eval(context.Background(), want, a.an, n); err != nil {
						t.Fatal(err)
					}
					if got[2*p] != float32(int(start[2*p])+n-r) || got[2*p] != want[2*p] {
						t.Fatalf("%s step %d: t = %g, direct %g, want %d", a.name, n, got[2*p], want[2*p], int(start[2*p])+n-r)
					}
					// Element values in float64 (Pack order = state order for
					// these families: Pack is a plain conversion).
					refVals := append(append([]float64(nil), th...), m...)
					for i := 0; i < 2*p; i++ {
						tol := tau
						if i >= p {
							tol = tau / lr
						}
						eRef := math.Abs(float64(got[i]) - refVals[i])
						bound := u32*math.Abs(refVals[i]) + tol
						if eRef > bound {
							t.Fatalf("%s step %d element %d: prefix %g, float64 chain %g: error %.3g > %.3g (τ %.3g)",
								a.name, n, i, got[i], refVals[i], eRef, bound, tau)
						}
						eDirect := math.Abs(float64(got[i]) - float64(want[i]))
						dRef := math.Abs(float64(want[i]) - refVals[i])
						if eDirect > dRef+bound {
							t.Fatalf("%s step %d element %d: prefix %g, direct %g (direct vs float64 %.3g): error %.3g > %.3g",
								a.name, n, i, got[i], want[i], dRef, eDirect, dRef+bound)
						}
						worstRef = max(worstRef, eRef/max(1, math.Abs(refVals[i])))
						worstDirect = max(worstDirect, eDirect/max(1, math.Abs(float64(want[i]))))
					}
					if n == steps {
						t.Logf("%s: worst error vs float64 chain %.3g, vs float32 direct %.3g (relative to max(1,|x|)); at n = %d: P = %.3g, Z = %.3g, τ = %.3g",
							a.name, worstRef, worstDirect, n, pp, z, tau)
					}
				}
			}
		})
	}
}

// TestMemoChoosesMomentumPrefix: NewMemo (and NewMemoEvaluator) pick the
// momentum prefix exactly for momentum-affine operators and the
// coalescence memo for every other optimizer family (Adam, AdamW, momentum
// on the tanh network), which is then bitwise equal to full.
func TestMemoChoosesMomentumPrefix(t *testing.T) {
	const steps = 60
	for _, f := range replaytest.OptimFamilies(newRand(t), steps) {
		t.Run(f.Name, func(t *testing.T) {
			m := mustMemo(t, f, replay.MemoConfig{BudgetBytes: 1 << 20})
			o := f.Ops.(*replaytest.Optim)
			_, affineGrad := o.Grad.(replaytest.AffineGradient)
			wantPrefix := affineGrad && (o.Name == replaytest.OptMomentum || o.Name == replaytest.OptNesterov)
			switch m.Evaluator().(type) {
			case *replay.MomentumPrefix:
				if !wantPrefix {
					t.Fatalf("memo chose the momentum prefix for %s", f.Name)
				}
			case *replay.Coalescing:
				if wantPrefix {
					t.Fatalf("memo chose the coalescence memo for %s", f.Name)
				}
				full, _ := backward(t, replay.NewFull(f.Ops, f.Theta0), f.Ops.Dim(), steps)
				got, _ := backward(t, m, f.Ops.Dim(), steps)
				for n := range got {
					if !replaytest.Bitwise(got[n], full[n]) {
						t.Fatalf("step %d: coalescence memo %v, full %v", n, got[n], full[n])
					}
				}
			default:
				t.Fatalf("memo chose %T", m.Evaluator())
			}
			if forced := mustMemo(t, f, replay.MemoConfig{BudgetBytes: 1 << 20, Coalesce: true}); !isCoalescing(forced.Evaluator()) {
				t.Fatalf("Coalesce: true chose %T", forced.Evaluator())
			}
		})
	}
	// A non-positive learning rate cannot be scaled out of the buffer: the
	// capability is refused and the coalescence memo is used.
	f := replaytest.OptimFamilies(newRand(t), 5)[0]
	f.Ops.(*replaytest.Optim).LR = 0
	if _, ok := replay.AsMomentumAffine(f.Ops); ok {
		t.Fatal("AsMomentumAffine accepted η = 0")
	}
	if ev := replay.NewMemoEvaluator(f.Ops, 1<<20, 1); !isCoalescing(ev) {
		t.Fatalf("η = 0: memo evaluator %T", ev)
	}
	// Heavy ball with dampening 1 (no gradient reaches θ after step 1):
	// refused too, and the coalescence memo is still exact.
	f = replaytest.OptimFamilies(newRand(t), 30)[1]
	f.Ops.(*replaytest.Optim).Dampening = 1
	if _, ok := replay.AsMomentumAffine(f.Ops); ok {
		t.Fatal("AsMomentumAffine accepted dampening 1")
	}
	m := mustMemo(t, f, replay.MemoConfig{BudgetBytes: 1 << 20})
	got, _ := backward(t, m, f.Ops.Dim(), 30)
	full, _ := backward(t, replay.NewFull(f.Ops, f.Theta0), f.Ops.Dim(), 30)
	for n := range got {
		if !isCoalescing(m.Evaluator()) || !replaytest.Bitwise(got[n], full[n]) {
			t.Fatalf("dampening 1, step %d: %T gives %v, full %v", n, m.Evaluator(), got[n], full[n])
		}
	}
}

func isCoalescing(ev replay.Evaluator) bool {
	_, ok := ev.(*replay.Coalescing)
	return ok
}

// momentumCancelAfter cancels a context at its k-th MomentumStep.
type momentumCancelAfter struct {
	*replaytest.Optim
	k, calls int
	cancel   context.CancelFunc
}

func (c *momentumCancelAfter) MomentumStep(k int) ([]float64, int, float64, []float64) {
	c.calls++
	if c.calls == c.k {
		c.cancel()
	}
	return c.Optim.MomentumStep(k)
}

// TestMomentumPrefixCancel: a cancelled Eval returns the context's error
// within checkEvery compositions, and the memo stays exact: the next call
// returns bitwise what a fresh prefix returns.
func TestMomentumPrefixCancel(t *testing.T) {
	const steps = 60
	f := momentumFamilies(t, steps)[1] // heavy ball on least squares
	o := f.Ops.(*replaytest.Optim)
	an := replay.Anchor{Start: f.Theta0}
	ctx, cancel := context.WithCancel(context.Background())
	mp := replay.NewMomentumPrefix(&momentumCancelAfter{Optim: o, k: 10, cancel: cancel})
	dst, want := make([]float32, o.Dim()), make([]float32, o.Dim())
	for n := 1; n <= 3; n++ {
		if _, err := mp.Eval(context.Background(), dst, an, n); err != nil {
			t.Fatal(err)
		}
	}
	applied, err := mp.Eval(ctx, dst, an, steps)
	if !errors.Is(err, context.Canceled) || applied >= steps-10 {
		t.Fatalf("cancelled Eval: %d composed, err %v", applied, err)
	}
	if _, err := mp.Eval(context.Background(), dst, an, steps); err != nil {
		t.Fatal(err)
	}
	if _, err := replay.NewMomentumPrefix(o).Eval(context.Background(), want, an, steps); err != nil {
		t.Fatal(err)
	}
	if !replaytest.Bitwise(dst, want) {
		t.Fatalf("after a cancel %v, a fresh prefix %v", dst, want)
	}
}
