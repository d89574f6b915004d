package replay

import (
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// AffinePrefix evaluates backward iterates of affine operators by composing
// the maps instead of re-applying them. Under an anchor (r, x_r) it keeps
//
//	P_n = T_{r+1}∘…∘T_n,  P_n(Θ) = Θ A_n + B_n,  A_r = I, B_r = 0,
//
// in float64 and extends it with P_n = P_{n−1}∘T_n: since
// T_n(Θ) = Θ S_n + C_n with S_n = I − c Uᵀ U,
//
//	A_n = S_n A_{n−1} = A_{n−1} − c Uᵀ (U A_{n−1})   (a rank-b update)
//	B_n = C_n A_{n−1} + B_{n−1}
//
// and θ̃_n = Unpack(x_r A_n + B_n). Extending the prefix by one step costs
// O((b+Rows)·Cols²) flops whatever n is, so a whole trajectory is linear in
// n. The result equals the direct evaluation up to rounding (float64
// composition against float32 application), not bitwise.
//
// The memo is kept for one anchor: a call with another anchor (step or
// start bits) or with n below the memoized step starts again from A = I,
// B = 0. Memory: Cols² + 3·Rows·Cols float64 plus the operators' scratch.
type AffinePrefix struct {
	ops        AffineOperators
	rows, cols int

	valid bool
	step  int       // anchor step r of the memo
	start []float32 // copy of the anchor start x_r
	n     int       // the memo holds P_n
	x     []float64 // Pack(x_r), Rows×Cols
	a     []float64 // A_n, Cols×Cols
	b     []float64 // B_n, Rows×Cols
	w     []float64 // scratch for U A, b×Cols
	out   []float64 // scratch for x_r A_n + B_n
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
		b:     make([]float64, rows*cols),
		out:   make([]float64, rows*cols),
	}
}

// Eval implements Evaluator. The count it returns is the number of maps it
// composed into the memo during this call (each one a low-rank update, the
// equivalent of one operator application); 0 when the memo already holds
// P_n.
func (p *AffinePrefix) Eval(dst []float32, an Anchor, n int) (int, error) {
	if err := checkEval(p.ops.Dim(), dst, an, n); err != nil {
		return 0, err
	}
	if !p.valid || an.Step != p.step || n < p.n || !sameBits(p.start, an.Start) {
		p.restart(an)
	}
	applied := 0
	for k := p.n + 1; k <= n; k++ {
		p.compose(k)
		applied++
	}
	p.n = n
	copy(p.out, p.b)
	blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, p.general(p.x, p.rows), p.general(p.a, p.cols), 1, p.general(p.out, p.rows))
	p.ops.Unpack(dst, p.out)
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
	clear(p.b)
}

// compose replaces P_{n−1} by P_{n−1}∘T_k (k = n).
func (p *AffinePrefix) compose(k int) {
	u, bsz, c, off := p.ops.AffineStep(k)
	if len(u) != bsz*p.cols || len(off) != p.rows*p.cols {
		panic("replay: AffineStep returned matrices of the wrong shape")
	}
	a := p.general(p.a, p.cols)
	// B += C_k A_{n−1} first: it needs the old A.
	blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, p.general(off, p.rows), a, 1, p.general(p.b, p.rows))
	if bsz == 0 || c == 0 {
		return
	}
	if cap(p.w) < bsz*p.cols {
		p.w = make([]float64, bsz*p.cols)
	}
	w := p.general(p.w[:bsz*p.cols], bsz)
	um := p.general(u, bsz)
	blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, um, a, 0, w) // W = U A
	blas64.Gemm(blas.Trans, blas.NoTrans, -c, um, w, 1, a)  // A −= c Uᵀ W
}

// general views data as a row-major r×Cols matrix.
func (p *AffinePrefix) general(data []float64, r int) blas64.General {
	return blas64.General{Rows: r, Cols: p.cols, Stride: p.cols, Data: data}
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
