package replay

import (
	"context"
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
)

// MomentumSettings are torch.optim.SGD's settings of a momentum run: the
// learning rate η > 0, momentum μ ≥ 0 (μ = 0: torch keeps no buffer, the
// step is plain SGD and the buffer is left as it is), dampening d, weight
// decay wd, and Nesterov's variant. (torch refuses Nesterov with μ = 0 or
// d ≠ 0; the algebra below does not need that restriction.)
type MomentumSettings struct {
	LR, Momentum, Dampening, WeightDecay float64
	Nesterov                             bool
}

// MomentumAffineOperators is an optional capability of Operators (checked
// by type assertion) whose T_k is a step of torch.optim.SGD with momentum
// on a loss whose gradient is affine in θ (least squares, the scalar
// quadratic). The state is s = (θ, buf, t) (docs/protocol.md, "The
// optimizer state"): θ, then the momentum buffer with θ's layout, then the
// step count t as one float32, so Dim = 2·Rows·Cols + 1. T_k(s) is
//
//	g = ∇L_k(θ) + wd θ;  buf = g if t = 0 else μ buf + (1 − d) g;
//	θ −= η (g + μ buf) (Nesterov) or η buf;  t += 1,
//
// a pure function of (k, s). With g affine in θ the step is affine in
// (θ, buf) — with a different map at t = 0 — and MomentumPrefix composes it
// exactly.
type MomentumAffineOperators interface {
	Operators
	// AffineShape is the matrix view (Rows, Cols) of θ.
	AffineShape() (rows, cols int)
	// Pack writes a θ-shaped vector (θ or the momentum buffer) as a
	// row-major Rows×Cols float64 matrix into dst.
	Pack(dst []float64, theta []float32)
	// Unpack is the inverse of Pack, rounding to float32.
	Unpack(dst []float32, m []float64)
	// MomentumStep returns the low-rank data of η times the gradient of
	// batch k, without weight decay:
	//
	//	η ∇L_k(Θ) = c ΘUᵀU − C,
	//
	// U row-major b×Cols, C row-major Rows×Cols: exactly what
	// AffineOperators.AffineStep returns for plain SGD at the same η
	// (Θ − η∇L_k(Θ) = Θ(I − c UᵀU) + C). The slices may be reused by the
	// next call.
	MomentumStep(k int) (u []float64, b int, c float64, off []float64)
	// MomentumSettings returns the optimizer's settings.
	MomentumSettings() MomentumSettings
}

// momentumAffineChecker is implemented by operator families that know at
// run time whether their MomentumAffineOperators methods are valid (the
// optimizer is momentum or Nesterov and the gradient is affine).
type momentumAffineChecker interface{ IsMomentumAffine() bool }

// AsMomentumAffine returns ops' momentum-affine capability when it has one
// that is valid: it implements MomentumAffineOperators, IsMomentumAffine
// (if it has that method) reports true, the state has the layout
// (Dim = 2·Rows·Cols + 1), the learning rate is positive and finite (the
// algebra scales the buffer by η) and the dampening is not the degenerate 1
// of heavy ball. NewMomentumPrefix accepts what it accepts.
func AsMomentumAffine(ops Operators) (MomentumAffineOperators, bool) {
	m, ok := ops.(MomentumAffineOperators)
	if !ok {
		return nil, false
	}
	if c, ok := ops.(momentumAffineChecker); ok && !c.IsMomentumAffine() {
		return nil, false
	}
	if rows, cols := m.AffineShape(); rows <= 0 || cols <= 0 || ops.Dim() != 2*rows*cols+1 {
		return nil, false
	}
	s := m.MomentumSettings()
	if !(s.LR > 0) || math.IsInf(s.LR, 0) {
		return nil, false
	}
	if gen, _ := momentumMaps(s); gen.vt == 0 || math.IsNaN(gen.vt) || math.IsInf(gen.vt, 0) {
		// Heavy ball with dampening 1: no gradient reaches θ after the
		// first step; the prefix's basis needs vt ≠ 0 (coalescence memo).
		return nil, false
	}
	return m, true
}

// momentumMap is one step's affine map in the scaled state z = [Θ, M],
// M = η·buf (Rows×2Cols), with q = η g = Θ S − C, S = c UᵀU + λI, λ = η wd:
//
//	Θ' = k11 Θ + k21 M + vt c ΘUᵀU − vt C     (k11 = 1 + vt λ)
//	M' = k12 Θ + k22 M + vm c ΘUᵀU − vm C     (k12 = vm λ)
//
// that is Θ' = Θ + vt q + k21 M, M' = vm q + k22 M.
type momentumMap struct {
	k11, k12, k21, k22 float64
	vt, vm             float64
}

// momentumMaps returns the maps of a step at t ≥ 1 (gen) and at t = 0
// (first, where torch's buffer is "absent": buf = g, no dampening):
//
//	heavy ball, t ≥ 1: M' = μM + (1−d) q,   Θ' = Θ − M' = Θ − (1−d) q − μM
//	Nesterov,   t ≥ 1: M' = μM + (1−d) q,   Θ' = Θ − q − μM' = Θ − (1+μ(1−d)) q − μ²M
//	heavy ball, t = 0: M' = q,              Θ' = Θ − q
//	Nesterov,   t = 0: M' = q,              Θ' = Θ − (1+μ) q
//	μ = 0 (any t):     M' = M,              Θ' = Θ − q
func momentumMaps(s MomentumSettings) (gen, first momentumMap) {
	mu, d, lam := s.Momentum, s.Dampening, s.LR*s.WeightDecay
	mk := func(vt, vm, k21, k22 float64) momentumMap {
		return momentumMap{k11: 1 + vt*lam, k12: vm * lam, k21: k21, k22: k22, vt: vt, vm: vm}
	}
	switch {
	case mu == 0:
		gen = mk(-1, 0, 0, 1)
		return gen, gen
	case s.Nesterov:
		return mk(-(1 + mu*(1-d)), 1-d, -mu*mu, mu), mk(-(1 + mu), 1, 0, 0)
	default:
		return mk(-(1 - d), 1-d, -mu, mu), mk(-1, 1, 0, 0)
	}
}

// MomentumPrefix evaluates backward iterates of momentum operators on an
// affine gradient (MomentumAffineOperators) by composing the maps, exactly
// and at a cost per step that does not depend on n: the memoized prefix of
// DESIGN §1 for the state (θ, buf, t) of DESIGN §5.
//
// # The maps
//
// In the scaled state z = [Θ, M] (M = η·buf, a Rows×2Cols matrix) a step
// at t ≥ 1 is the affine map (momentumMaps gives the coefficients)
//
//	A_k(z) = z 𝕄_k + e_k,   𝕄_k = (K ⊗ I) + [c Uᵀ; 0] V,   V = [vt U, vm U],
//
// with K = [[k11, k12], [k21, k22]] acting on the blocks
// (z (K⊗I) = [k11 Θ + k21 M, k12 Θ + k22 M]) and e_k = −[vt C, vm C] —
// [[I − (1−d)S, (1−d)S], [−μI, μI]] for heavy ball. When C lies in the row
// space of U (C = Gᵀ U: least squares, the quadratic) e_k = −Gᵀ V. The step
// at t = 0 is another map F_k of the same form, coefficients f (K's bottom
// row zero: the absent buffer is not read). Momentum has no bias
// correction, so A_k does not depend on t ≥ 1.
//
// # The composition
//
// Under an anchor (r, x_r), the chain of θ̃_n applies T_n first, to x_r:
// with x_r's step count t_r the first map is F_n if t_r = 0 and A_n
// otherwise, and every later one (T_{n−1}, …, T_{r+1}) sees t ≥ 1. So
//
//	θ̃_n = Q_{n−1}(F_n(x_r)) (or A_n for t_r ≥ 1),  Q_j = A_{r+1}∘…∘A_j,
//	Q_j(z) = z 𝔸_j + B_j,  𝔸_r = I, B_r = 0,
//
// and the memo grows by Q_j = Q_{j−1}∘A_j, 𝔸_j = 𝕄_j 𝔸_{j−1}, B_j =
// B_{j−1} + e_j 𝔸_{j−1}. With top, bot the Θ- and M-rows of 𝔸 (Cols×2Cols
// each) that is top' = k11 top + k12 bot + c Uᵀ(V𝔸), bot' = k21 top +
// k22 bot, where V𝔸 = U(vt top + vm bot). The memo stores 𝔸 in the basis
// where that combination is a row block of its own, Ã = R𝔸 with
// R = [[vt, vm], [0, 1]] ⊗ I (vt ≠ 0): Ã's top is vt top + vm bot, so
//
//	V𝔸 = U·Ã_top,   Ã' = (R₂ K R₂⁻¹ ⊗ I) Ã + [vt c Uᵀ; 0](V𝔸),
//	B' = B − Gᵀ(V𝔸)  (dense C: B' = B − C·Ã_top),
//
// one b×Cols·Cols×2Cols product for V𝔸 and one for the update. The start
// is only ever needed through L_{a,p} = (ι_p x_a) 𝔸_j for a ∈ {Θ_r, M_r},
// ι_1 y = [y, 0], ι_2 y = [0, y], which follow the same recursion without
// touching 𝔸's size:
//
//	L'_{a,1} = k11 L_{a,1} + k12 L_{a,2} + c (x_a Uᵀ)(V𝔸),   L'_{a,2} = k21 L_{a,1} + k22 L_{a,2},
//
// and the result with the first map's coefficients f is
//
//	F_n(x_r) 𝔸_{n−1} + B_{n−1} = k11f L_{Θ,1} + k12f L_{Θ,2} + k21f L_{M,1} + k22f L_{M,2}
//	                            + B_{n−1} + (c x_Θ Uᵀ − Gᵀ)(V_f 𝔸_{n−1}),
//
// V_f𝔸 = α V𝔸 + β U·bot with α = vt_f/vt, β = vm_f − α vm. β is 0 for
// heavy ball (whatever the dampening), for Nesterov without dampening (the
// only Nesterov torch accepts) and for μ = 0; only Nesterov with dampening
// pays a third product U·bot on the steps it returns.
//
// A step costs 8·b·Cols² flops for 𝔸 and O(b·Rows·Cols) for the rest:
// nothing depends on n, so a whole trajectory is linear in n. When C is not
// in U's row space (found as AffinePrefix does: Cholesky of U Uᵀ, residual
// ≤ 1e-10 ‖C‖) the offset terms use the dense products C·Ã_top (and C·bot
// when β ≠ 0), 4·Rows·Cols² flops each.
//
// Arithmetic is float64; the buffer is unscaled (M/η) and both are rounded
// to float32 at the end, so the result equals the direct float32 evaluation
// to rounding, not bitwise. The step count of the result is t_r + n − r,
// exact as the operators' float32 t += 1 is while t ≤ 2^24.
//
// The memo holds one anchor: another anchor (step or start bits), or an n
// at or below the memoized step (other than the last result, which is
// kept), starts again from 𝔸 = I. Memory: MomentumPrefixBytes.
type MomentumPrefix struct {
	ops          MomentumAffineOperators
	rows, cols   int
	p            int // Rows·Cols, the length of θ
	lr           float64
	gen, firstFn momentumMap
	kt           [2][2]float64 // R₂ K R₂⁻¹, K of the general map
	alpha, beta  float64       // V_f𝔸 = α V𝔸 + β U·bot, f the first map

	valid bool
	step  int          // anchor step r
	start []float32    // copy of x_r
	first bool         // x_r's t is 0: the first map is F
	t0    float64      // x_r's t
	n     int          // the memo holds Q_n
	x     [2][]float64 // Pack(Θ_r), η·Pack(buf_r): Rows×Cols
	a     []float64    // Ã_n = R𝔸_n, 2Cols×2Cols: Ã_top then bot
	b     []float64    // B_n, Rows×2Cols
	l     [4][]float64 // L_{Θ,1}, L_{Θ,2}, L_{M,1}, L_{M,2}: Rows×2Cols
	resN  int          // out holds the result of step resN (−1: none)
	out   []float64    // Rows×2Cols

	// Scratch.
	vw  []float64 // V𝔸 = U·Ã_top, b×2Cols
	vf  []float64 // V_f𝔸, b×2Cols
	xu  []float64 // x_a Uᵀ, Rows×b
	h   []float64 // c x_Θ Uᵀ − Gᵀ, Rows×b
	g   []float64 // G, b×Rows
	m   []float64 // U Uᵀ, b×b
	res []float64 // C − Gᵀ U, Rows×Cols
	hb  []float64 // one Rows×Cols block for Pack/Unpack
}

var _ Evaluator = (*MomentumPrefix)(nil)

// MomentumPrefixBytes is what a MomentumPrefix over a Rows×Cols θ holds,
// besides scratch that grows with the batch size b (≈ 8·(6·b·Cols +
// 3·b·Rows + b²) bytes) and its copy of the start state.
func MomentumPrefixBytes(rows, cols int) int64 {
	r, c := int64(rows), int64(cols)
	// Ã (4c²), B, four L and out (2rc each), two packed starts, the
	// residual and one half block (rc each).
	return 8 * (4*c*c + 6*2*r*c + 4*r*c)
}

// NewMomentumPrefix returns a MomentumPrefix over ops. It panics unless
// AsMomentumAffine accepts ops (shapes, learning rate, settings).
func NewMomentumPrefix(ops MomentumAffineOperators) *MomentumPrefix {
	if _, ok := AsMomentumAffine(ops); !ok {
		rows, cols := ops.AffineShape()
		panic(fmt.Sprintf("replay: no momentum prefix for operators of dimension %d, θ %d×%d, settings %+v", ops.Dim(), rows, cols, ops.MomentumSettings()))
	}
	rows, cols := ops.AffineShape()
	p := rows * cols
	set := ops.MomentumSettings()
	gen, first := momentumMaps(set)
	// R₂ = [[vt, vm], [0, 1]], R₂⁻¹ = [[1/vt, −vm/vt], [0, 1]].
	vt, vm := gen.vt, gen.vm
	k := [2][2]float64{{gen.k11, gen.k12}, {gen.k21, gen.k22}}
	rk := [2][2]float64{ // R₂ K
		{vt*k[0][0] + vm*k[1][0], vt*k[0][1] + vm*k[1][1]},
		{k[1][0], k[1][1]},
	}
	kt := [2][2]float64{ // (R₂ K) R₂⁻¹
		{rk[0][0] / vt, -rk[0][0]*vm/vt + rk[0][1]},
		{rk[1][0] / vt, -rk[1][0]*vm/vt + rk[1][1]},
	}
	alpha := first.vt / vt
	beta := first.vm - alpha*vm
	if !set.Nesterov || set.Momentum == 0 || set.Dampening == 0 {
		beta = 0 // exactly, as the algebra says (momentumMaps)
	}
	mp := &MomentumPrefix{
		ops: ops, rows: rows, cols: cols, p: p, lr: set.LR, gen: gen, firstFn: first,
		kt: kt, alpha: alpha, beta: beta,
		start: make([]float32, ops.Dim()),
		a:     make([]float64, 4*cols*cols),
		b:     make([]float64, 2*p),
		out:   make([]float64, 2*p),
		res:   make([]float64, p),
		hb:    make([]float64, p),
		resN:  -1,
	}
	for i := range mp.x {
		mp.x[i] = make([]float64, p)
	}
	for i := range mp.l {
		mp.l[i] = make([]float64, 2*p)
	}
	return mp
}

// Eval implements Evaluator. The count it returns is the number of maps it
// composed into the memo during this call (one low-rank update each, the
// equivalent of one operator application); 0 when it returns the result
// it holds.
func (mp *MomentumPrefix) Eval(ctx context.Context, dst []float32, an Anchor, n int) (int, error) {
	if err := checkEval(mp.ops.Dim(), dst, an, n); err != nil {
		return 0, err
	}
	if n == an.Step {
		copy(dst, an.Start)
		return 0, nil
	}
	same := mp.valid && an.Step == mp.step && sameBits(mp.start, an.Start)
	if same && mp.resN == n {
		mp.unpack(dst, n)
		return 0, nil
	}
	if !same || n <= mp.n {
		mp.restart(an)
	}
	applied := 0
	for k := mp.n + 1; k <= n; k++ {
		if applied%checkEvery == 0 {
			if err := cancelled(ctx, n); err != nil {
				// Q_{k−1} is composed: the memo stays exact and the
				// composition sequence is an uninterrupted call's.
				return applied, err
			}
		}
		mp.compose(k, k == n)
		applied++
	}
	mp.unpack(dst, n)
	return applied, nil
}

func (mp *MomentumPrefix) restart(an Anchor) {
	mp.valid = true
	mp.step, mp.n, mp.resN = an.Step, an.Step, -1
	copy(mp.start, an.Start)
	t := mp.start[2*mp.p]
	mp.t0 = float64(t)
	mp.first = t == 0
	mp.ops.Pack(mp.x[0], mp.start[:mp.p])
	mp.ops.Pack(mp.x[1], mp.start[mp.p:2*mp.p])
	for i := range mp.x[1] {
		mp.x[1][i] *= mp.lr
	}
	// Ã = R·I: Ã_top = [vt I, vm I], bot = [0, I].
	c := mp.cols
	clear(mp.a)
	for i := 0; i < c; i++ {
		mp.a[i*2*c+i] = mp.gen.vt
		mp.a[i*2*c+c+i] = mp.gen.vm
		mp.a[(c+i)*2*c+c+i] = 1
	}
	clear(mp.b)
	// L_{a,1} = [x_a, 0], L_{a,2} = [0, x_a].
	for ai, x := range mp.x {
		l1, l2 := mp.l[2*ai], mp.l[2*ai+1]
		clear(l1)
		clear(l2)
		for i := 0; i < mp.rows; i++ {
			copy(l1[i*2*c:i*2*c+c], x[i*c:(i+1)*c])
			copy(l2[i*2*c+c:(i+1)*2*c], x[i*c:(i+1)*c])
		}
	}
}

// compose replaces Q_{k−1} by Q_{k−1}∘A_k; with result, it first writes
// θ̃_k (scaled state) into out.
func (mp *MomentumPrefix) compose(k int, result bool) {
	u, bsz, c, off := mp.ops.MomentumStep(k)
	rows, cols := mp.rows, mp.cols
	if len(u) != bsz*cols || len(off) != mp.p {
		panic("replay: MomentumStep returned matrices of the wrong shape")
	}
	mp.grow(bsz)
	um := general(u, bsz, cols)
	top := blas64.General{Rows: cols, Cols: 2 * cols, Stride: 2 * cols, Data: mp.a[:2*cols*cols]}
	bot := blas64.General{Rows: cols, Cols: 2 * cols, Stride: 2 * cols, Data: mp.a[2*cols*cols:]}
	offm := general(off, rows, cols)
	vw := general(mp.vw, bsz, 2*cols)
	if bsz > 0 {
		blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, um, top, 0, vw) // V𝔸 = U·Ã_top
	}
	rowSpace := mp.factor(um, bsz, off)

	if result {
		mp.result(k, um, bsz, c, offm, rowSpace, top, bot)
	}

	// The memo: L, B and Ã with the coefficients of A_k.
	g := mp.gen
	for ai := range mp.x {
		if ai == 1 && mp.first {
			continue // the first map never reads M_r
		}
		l1, l2 := mp.l[2*ai], mp.l[2*ai+1]
		for i := range l1 {
			a1, a2 := l1[i], l2[i]
			l1[i] = g.k11*a1 + g.k12*a2
			l2[i] = g.k21*a1 + g.k22*a2
		}
		if bsz > 0 {
			xu := general(mp.xu, rows, bsz)
			blas64.Gemm(blas.NoTrans, blas.Trans, 1, general(mp.x[ai], rows, cols), um, 0, xu) // x_a Uᵀ
			blas64.Gemm(blas.NoTrans, blas.NoTrans, c, xu, vw, 1, general(l1, rows, 2*cols))   // += c (x_a Uᵀ)(V𝔸)
		}
	}
	bm := general(mp.b, rows, 2*cols)
	if rowSpace {
		if bsz > 0 {
			blas64.Gemm(blas.Trans, blas.NoTrans, -1, general(mp.g, bsz, rows), vw, 1, bm) // −Gᵀ(V𝔸)
		}
	} else {
		blas64.Gemm(blas.NoTrans, blas.NoTrans, -1, offm, top, 1, bm) // −C·Ã_top
	}
	kt := mp.kt
	half := 2 * cols * cols
	for i := 0; i < half; i++ {
		a1, a2 := mp.a[i], mp.a[half+i]
		mp.a[i] = kt[0][0]*a1 + kt[0][1]*a2
		mp.a[half+i] = kt[1][0]*a1 + kt[1][1]*a2
	}
	if bsz > 0 {
		blas64.Gemm(blas.Trans, blas.NoTrans, g.vt*c, um, vw, 1, top) // Ã_top += vt c Uᵀ(V𝔸)
	}
	mp.n = k
}

// result writes θ̃_k = F_k(x_r) 𝔸_{k−1} + B_{k−1} (scaled state) into out,
// F_k the first map (A_k when x_r's t ≥ 1), from the memo of Q_{k−1} and
// V𝔸 in vw.
func (mp *MomentumPrefix) result(k int, um blas64.General, bsz int, c float64, offm blas64.General, rowSpace bool, top, bot blas64.General) {
	rows, cols := mp.rows, mp.cols
	f, alpha, beta := mp.gen, 1.0, 0.0
	if mp.first {
		f, alpha, beta = mp.firstFn, mp.alpha, mp.beta
	}
	mp.resN = k
	out := mp.out
	for i := range out {
		v := f.k11*mp.l[0][i] + f.k12*mp.l[1][i] + mp.b[i]
		if !mp.first {
			v += f.k21*mp.l[2][i] + f.k22*mp.l[3][i]
		}
		out[i] = v
	}
	outm := general(out, rows, 2*cols)
	if bsz > 0 {
		// V_f𝔸 = α V𝔸 + β U·bot.
		for i, x := range mp.vw {
			mp.vf[i] = alpha * x
		}
		vf := general(mp.vf, bsz, 2*cols)
		if beta != 0 {
			blas64.Gemm(blas.NoTrans, blas.NoTrans, beta, um, bot, 1, vf)
		}
		h := general(mp.h, rows, bsz)
		if rowSpace {
			for i := 0; i < bsz; i++ { // H = −Gᵀ
				for j := 0; j < rows; j++ {
					mp.h[j*bsz+i] = -mp.g[i*rows+j]
				}
			}
		} else {
			clear(mp.h)
		}
		blas64.Gemm(blas.NoTrans, blas.Trans, c, general(mp.x[0], rows, cols), um, 1, h) // H += c x_Θ Uᵀ
		blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, h, vf, 1, outm)
	}
	if !rowSpace {
		// e_f 𝔸 = −C(vt_f top + vm_f bot) = −C(α Ã_top + β bot).
		blas64.Gemm(blas.NoTrans, blas.NoTrans, -alpha, offm, top, 1, outm)
		if beta != 0 {
			blas64.Gemm(blas.NoTrans, blas.NoTrans, -beta, offm, bot, 1, outm)
		}
	}
}

// unpack writes the result held in out (step n) into dst: θ, buf = M/η, t.
func (mp *MomentumPrefix) unpack(dst []float32, n int) {
	rows, cols := mp.rows, mp.cols
	for part := 0; part < 2; part++ {
		scale := 1.0
		if part == 1 {
			scale = 1 / mp.lr
		}
		for i := 0; i < rows; i++ {
			src := mp.out[i*2*cols+part*cols : i*2*cols+(part+1)*cols]
			for j, v := range src {
				mp.hb[i*cols+j] = v * scale
			}
		}
		mp.ops.Unpack(dst[part*mp.p:(part+1)*mp.p], mp.hb)
	}
	dst[2*mp.p] = float32(mp.t0 + float64(n-mp.step))
}

// factor tries to write G (b×Rows) with C = Gᵀ U into mp.g, solving
// (U Uᵀ) G = U Cᵀ, and reports whether the residual is negligible (as
// AffinePrefix.factor).
func (mp *MomentumPrefix) factor(um blas64.General, bsz int, off []float64) bool {
	var cnorm float64
	for _, x := range off {
		cnorm += x * x
	}
	if cnorm == 0 {
		clear(mp.g)
		return true
	}
	if bsz == 0 {
		return false
	}
	mm := general(mp.m, bsz, bsz)
	blas64.Gemm(blas.NoTrans, blas.Trans, 1, um, um, 0, mm)
	g := general(mp.g, bsz, mp.rows)
	blas64.Gemm(blas.NoTrans, blas.Trans, 1, um, general(off, mp.rows, mp.cols), 0, g)
	t, ok := lapack64.Potrf(blas64.Symmetric{Uplo: blas.Upper, N: bsz, Stride: bsz, Data: mp.m})
	if !ok {
		return false
	}
	lapack64.Potrs(t, g)
	copy(mp.res, off)
	blas64.Gemm(blas.Trans, blas.NoTrans, -1, g, um, 1, general(mp.res, mp.rows, mp.cols))
	var rnorm float64
	for _, x := range mp.res {
		rnorm += x * x
	}
	return !math.IsNaN(rnorm) && rnorm <= 1e-20*cnorm
}

func (mp *MomentumPrefix) grow(bsz int) {
	cols, rows := mp.cols, mp.rows
	if cap(mp.vw) < bsz*2*cols || cap(mp.g) < bsz*rows {
		mp.vw = make([]float64, bsz*2*cols)
		mp.vf = make([]float64, bsz*2*cols)
		mp.xu = make([]float64, rows*bsz)
		mp.h = make([]float64, rows*bsz)
		mp.g = make([]float64, bsz*rows)
		mp.m = make([]float64, bsz*bsz)
	}
	mp.vw, mp.vf = mp.vw[:bsz*2*cols], mp.vf[:bsz*2*cols]
	mp.xu, mp.h, mp.g, mp.m = mp.xu[:rows*bsz], mp.h[:rows*bsz], mp.g[:bsz*rows], mp.m[:bsz*bsz]
}
