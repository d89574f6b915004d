package replay

import (
	"context"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
)

// AffinePrefix evaluates backward iterates of affine operators by composing
// the maps instead of re-applying them. Under an anchor (r, x_r) the prefix
//
//	P_n = T_{r+1}∘…∘T_n,  P_n(Θ) = Θ A_n + B_n,  A_r = I, B_r = 0,
//
// grows by P_n = P_{n−1}∘T_n. Since T_n(Θ) = Θ S_n + C_n with
// S_n = I − c Uᵀ U,
//
//	A_n = S_n A_{n−1} = A_{n−1} − c Uᵀ W_n,   W_n = U A_{n−1}   (rank b)
//	B_n = C_n A_{n−1} + B_{n−1}
//
// and θ̃_n = Unpack(x_r A_n + B_n). Only v_n = x_r A_n + B_n is needed, and
// it follows from W_n alone:
//
//	v_n = v_{n−1} − c (x_r Uᵀ) W_n + C_n A_{n−1},   v_r = x_r.
//
// When C_n lies in the row space of U (C_n = Gᵀ U, as for least squares,
// C = c Yᵀ U, and the scalar quadratic), C_n A_{n−1} = Gᵀ W_n, so a step
// costs two rank-b products with the Cols×Cols matrix A (4·b·Cols² flops)
// and nothing of size Rows·Cols². G is found by solving (U Uᵀ) G = U Cᵀ
// (Cholesky of a b×b matrix) and accepted only if ‖C − Gᵀ U‖ ≤ 1e-10 ‖C‖;
// otherwise (rank-deficient batch, C outside the row space) the step uses
// the dense product C_n A_{n−1}. Either way the cost does not depend on n,
// so a whole trajectory is linear in n.
//
// Arithmetic is float64 (gonum blas64/lapack64, whatever implementation is
// registered there); the result equals the direct float32 evaluation up to
// rounding, not bitwise.
//
// The memo holds one anchor: a call with another anchor (step or start bits)
// or with n below the memoized step starts again from A = I, v = x_r.
// Memory: Cols² + 2·Rows·Cols float64 plus O(b·(Rows+Cols)) scratch.
type AffinePrefix struct {
	ops        AffineOperators
	rows, cols int

	valid bool
	step  int       // anchor step r of the memo
	start []float32 // copy of the anchor start x_r
	n     int       // the memo holds P_n
	x     []float64 // Pack(x_r), Rows×Cols
	a     []float64 // A_n, Cols×Cols
	v     []float64 // v_n = x_r A_n + B_n, Rows×Cols

	// Scratch, grown to the batch size.
	w   []float64 // W = U A, b×Cols
	h   []float64 // Gᵀ − c x Uᵀ, Rows×b
	g   []float64 // G, b×Rows
	m   []float64 // U Uᵀ, b×b
	res []float64 // C − Gᵀ U, Rows×Cols
}

var _ Evaluator = (*AffinePrefix)(nil)

// NewAffinePrefix returns an AffinePrefix over ops. It panics if the affine
// shape of ops does not match its dimension.
func NewAffinePrefix(ops AffineOperators) *AffinePrefix {
	rows, cols := ops.AffineShape()
	if rows <= 0 || cols <= 0 || rows*cols != ops.Dim() {
		panic("replay: affine shape does not match the operators' dimension")
	}
	return &AffinePrefix{
		ops: ops, rows: rows, cols: cols,
		start: make([]float32, ops.Dim()),
		x:     make([]float64, rows*cols),
		a:     make([]float64, cols*cols),
		v:     make([]float64, rows*cols),
		res:   make([]float64, rows*cols),
	}
}

// Eval implements Evaluator. The count it returns is the number of maps it
// composed into the memo during this call (each one a low-rank update, the
// equivalent of one operator application); 0 when the memo already holds
// P_n.
func (p *AffinePrefix) Eval(ctx context.Context, dst []float32, an Anchor, n int) (int, error) {
	if err := checkEval(p.ops.Dim(), dst, an, n); err != nil {
		return 0, err
	}
	if !p.valid || an.Step != p.step || n < p.n || !sameBits(p.start, an.Start) {
		p.restart(an)
	}
	applied := 0
	for k := p.n + 1; k <= n; k++ {
		if applied%checkEvery == 0 {
			if err := cancelled(ctx, n); err != nil {
				// P_{k−1} is composed: the memo stays exact, and the
				// composition sequence (so every bit) is the one an
				// uninterrupted call makes.
				p.n = k - 1
				return applied, err
			}
		}
		p.compose(k)
		applied++
	}
	p.n = n
	p.ops.Unpack(dst, p.v)
	return applied, nil
}

func (p *AffinePrefix) restart(an Anchor) {
	p.valid = true
	p.step = an.Step
	p.n = an.Step
	copy(p.start, an.Start)
	p.ops.Pack(p.x, p.start)
	clear(p.a)
	for i := 0; i < p.cols; i++ {
		p.a[i*p.cols+i] = 1
	}
	copy(p.v, p.x)
}

// compose replaces P_{n−1} by P_{n−1}∘T_k (k = n).
func (p *AffinePrefix) compose(k int) {
	u, bsz, c, off := p.ops.AffineStep(k)
	if len(u) != bsz*p.cols || len(off) != p.rows*p.cols {
		panic("replay: AffineStep returned matrices of the wrong shape")
	}
	a := general(p.a, p.cols, p.cols)
	v := general(p.v, p.rows, p.cols)
	if bsz == 0 {
		blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, general(off, p.rows, p.cols), a, 1, v)
		return
	}
	p.grow(bsz)
	um := general(u, bsz, p.cols)
	w := general(p.w, bsz, p.cols)
	h := general(p.h, p.rows, bsz)
	blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, um, a, 0, w) // W = U A_{n−1}
	if p.factor(um, bsz, off) {
		// H = Gᵀ, then v += (Gᵀ − c x Uᵀ) W below.
		for i := 0; i < bsz; i++ {
			for j := 0; j < p.rows; j++ {
				p.h[j*bsz+i] = p.g[i*p.rows+j]
			}
		}
	} else {
		// Dense offset: v += C A_{n−1} (needs the old A), H = 0.
		blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, general(off, p.rows, p.cols), a, 1, v)
		clear(p.h)
	}
	blas64.Gemm(blas.NoTrans, blas.Trans, -c, general(p.x, p.rows, p.cols), um, 1, h) // H −= c x Uᵀ
	blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, h, w, 1, v)                            // v += H W
	blas64.Gemm(blas.Trans, blas.NoTrans, -c, um, w, 1, a)                            // A −= c Uᵀ W
}

// factor tries to write G (b×Rows) with C = Gᵀ U into p.g, solving
// (U Uᵀ) G = U Cᵀ, and reports whether the residual is negligible.
func (p *AffinePrefix) factor(um blas64.General, bsz int, off []float64) bool {
	var cnorm float64
	for _, x := range off {
		cnorm += x * x
	}
	if cnorm == 0 {
		clear(p.g)
		return true
	}
	mm := general(p.m, bsz, bsz)
	blas64.Gemm(blas.NoTrans, blas.Trans, 1, um, um, 0, mm) // U Uᵀ
	g := general(p.g, bsz, p.rows)
	blas64.Gemm(blas.NoTrans, blas.Trans, 1, um, general(off, p.rows, p.cols), 0, g) // U Cᵀ
	t, ok := lapack64.Potrf(blas64.Symmetric{Uplo: blas.Upper, N: bsz, Stride: bsz, Data: p.m})
	if !ok {
		return false
	}
	lapack64.Potrs(t, g)
	copy(p.res, off)
	blas64.Gemm(blas.Trans, blas.NoTrans, -1, g, um, 1, general(p.res, p.rows, p.cols)) // C − Gᵀ U
	var rnorm float64
	for _, x := range p.res {
		rnorm += x * x
	}
	return !math.IsNaN(rnorm) && rnorm <= 1e-20*cnorm
}

func (p *AffinePrefix) grow(bsz int) {
	if cap(p.w) < bsz*p.cols {
		p.w = make([]float64, bsz*p.cols)
		p.h = make([]float64, p.rows*bsz)
		p.g = make([]float64, bsz*p.rows)
		p.m = make([]float64, bsz*bsz)
	}
	p.w = p.w[:bsz*p.cols]
	p.h = p.h[:p.rows*bsz]
	p.g = p.g[:bsz*p.rows]
	p.m = p.m[:bsz*bsz]
}

// general views data as a row-major r×c matrix.
func general(data []float64, r, c int) blas64.General {
	return blas64.General{Rows: r, Cols: c, Stride: c, Data: data}
}

// sameBits reports whether a and b hold bitwise identical values (so +0 and
// −0 differ and a NaN equals the same NaN).
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}
