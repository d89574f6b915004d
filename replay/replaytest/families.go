package replaytest

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/replay-sgd/replay/replay"
)

// Batches is a batch log: Batches[k−1] holds the sample indices of step k.
type Batches [][]int32

// Batch returns the batch of step k ≥ 1; it panics outside the log.
func (b Batches) Batch(k int) []int32 {
	if k < 1 || k > len(b) {
		panic(fmt.Sprintf("replaytest: step %d outside the batch log (1..%d)", k, len(b)))
	}
	return b[k-1]
}

// ShuffledBatches draws steps batches of size from n samples in shuffled
// epochs without replacement (a batch never spans two epochs; the tail of an
// epoch too short for a batch is skipped), like nn's sampler.
func ShuffledBatches(rng *rand.Rand, n, size, steps int) Batches {
	if size < 1 || size > n {
		panic("replaytest: batch size out of range")
	}
	out := make(Batches, 0, steps)
	var perm []int
	pos := n
	for len(out) < steps {
		if pos+size > n {
			perm = rng.Perm(n)
			pos = 0
		}
		b := make([]int32, size)
		for i := range b {
			b[i] = int32(perm[pos+i])
		}
		pos += size
		out = append(out, b)
	}
	return out
}

// IIDBatches draws steps batches of size from n samples uniformly with
// replacement: the samples of different steps are independent.
func IIDBatches(rng *rand.Rand, n, size, steps int) Batches {
	out := make(Batches, steps)
	for k := range out {
		b := make([]int32, size)
		for i := range b {
			b[i] = int32(rng.IntN(n))
		}
		out[k] = b
	}
	return out
}

// Quadratic is SGD on the per-sample loss a(θ − y_i)²/2 with a scalar θ:
//
//	T_k(θ) = θ − η·a·(θ − ȳ_k),  ȳ_k the mean of y over batch b_k,
//
// that is ρθ + ηa ȳ_k with ρ = 1 − ηa. It is affine: U = [1], c = ηa,
// C = [ηa ȳ_k].
type Quadratic struct {
	Y       []float32
	A, LR   float32
	Batches Batches

	off [1]float64
}

var _ replay.AffineOperators = (*Quadratic)(nil)

// Dim implements replay.Operators.
func (q *Quadratic) Dim() int { return 1 }

func (q *Quadratic) mean(k int) float32 {
	b := q.Batches.Batch(k)
	var s float32
	for _, i := range b {
		s += q.Y[i]
	}
	return s / float32(len(b))
}

// Apply implements replay.Operators.
func (q *Quadratic) Apply(k int, theta []float32) {
	g := q.A * (theta[0] - q.mean(k))
	theta[0] -= q.LR * g
}

// AffineShape implements replay.AffineOperators.
func (q *Quadratic) AffineShape() (rows, cols int) { return 1, 1 }

// Pack implements replay.AffineOperators.
func (q *Quadratic) Pack(dst []float64, theta []float32) { dst[0] = float64(theta[0]) }

// Unpack implements replay.AffineOperators.
func (q *Quadratic) Unpack(dst []float32, m []float64) { dst[0] = float32(m[0]) }

var one = []float64{1}

// AffineStep implements replay.AffineOperators.
func (q *Quadratic) AffineStep(k int) ([]float64, int, float64, []float64) {
	c := float64(q.LR) * float64(q.A)
	q.off[0] = c * float64(q.mean(k))
	return one, 1, c, q.off[:]
}

// LeastSquares is SGD on a linear model with PyTorch's MSELoss (mean over
// batch and outputs). θ is the Out×(In+1) row-major matrix [W | bias]; with
// x̃ = (x, 1) and X̃_b the b×(In+1) batch matrix,
//
//	T_k(Θ) = Θ − c (Θ X̃_bᵀ − Y_bᵀ) X̃_b = Θ (I − c X̃_bᵀ X̃_b) + c Y_bᵀ X̃_b,
//
// with c = 2η/(b·Out): affine with U = X̃_b.
type LeastSquares struct {
	In, Out int
	X, Y    []float32 // N×In and N×Out row-major
	LR      float32
	Batches Batches

	res    []float32 // b×Out residuals
	u, off []float64
}

var _ replay.AffineOperators = (*LeastSquares)(nil)

// Dim implements replay.Operators.
func (l *LeastSquares) Dim() int { return l.Out * (l.In + 1) }

// Apply implements replay.Operators.
func (l *LeastSquares) Apply(k int, theta []float32) {
	b := l.Batches.Batch(k)
	cols := l.In + 1
	if cap(l.res) < len(b)*l.Out {
		l.res = make([]float32, len(b)*l.Out)
	}
	res := l.res[:len(b)*l.Out]
	for s, i := range b {
		x := l.X[int(i)*l.In : int(i+1)*l.In]
		for o := 0; o < l.Out; o++ {
			w := theta[o*cols : (o+1)*cols]
			acc := w[l.In]
			for j, xj := range x {
				acc += w[j] * xj
			}
			res[s*l.Out+o] = acc - l.Y[int(i)*l.Out+o]
		}
	}
	scale := l.LR * 2 / float32(len(b)*l.Out)
	for o := 0; o < l.Out; o++ {
		w := theta[o*cols : (o+1)*cols]
		for j := 0; j < cols; j++ {
			var g float32
			for s, i := range b {
				xj := float32(1)
				if j < l.In {
					xj = l.X[int(i)*l.In+j]
				}
				g += res[s*l.Out+o] * xj
			}
			w[j] -= scale * g
		}
	}
}

// AffineShape implements replay.AffineOperators.
func (l *LeastSquares) AffineShape() (rows, cols int) { return l.Out, l.In + 1 }

// Pack implements replay.AffineOperators.
func (l *LeastSquares) Pack(dst []float64, theta []float32) {
	for i, v := range theta {
		dst[i] = float64(v)
	}
}

// Unpack implements replay.AffineOperators.
func (l *LeastSquares) Unpack(dst []float32, m []float64) {
	for i, v := range m {
		dst[i] = float32(v)
	}
}

// AffineStep implements replay.AffineOperators.
func (l *LeastSquares) AffineStep(k int) ([]float64, int, float64, []float64) {
	return l.affineStep(k, float64(l.LR))
}

// affineStep is the affine form of scale times the gradient step of batch
// k: U = X̃_b, c = scale·2/(b·Out), C = c Yᵀ X̃_b (AffineStep at scale η,
// GradStep at 1).
func (l *LeastSquares) affineStep(k int, scale float64) ([]float64, int, float64, []float64) {
	b := l.Batches.Batch(k)
	cols := l.In + 1
	if cap(l.u) < len(b)*cols {
		l.u = make([]float64, len(b)*cols)
	}
	u := l.u[:len(b)*cols]
	for s, i := range b {
		for j := 0; j < l.In; j++ {
			u[s*cols+j] = float64(l.X[int(i)*l.In+j])
		}
		u[s*cols+l.In] = 1
	}
	c := scale * 2 / float64(len(b)*l.Out)
	if l.off == nil {
		l.off = make([]float64, l.Out*cols)
	}
	clear(l.off)
	for s, i := range b {
		for o := 0; o < l.Out; o++ {
			y := c * float64(l.Y[int(i)*l.Out+o])
			for j := 0; j < cols; j++ {
				l.off[o*cols+j] += y * u[s*cols+j]
			}
		}
	}
	return u, len(b), c, l.off
}

// TanhNet is SGD with MSE loss on f(x) = Σ_h v_h tanh(w_h x + b_h) + c for
// scalar x and y, with H hidden units. θ = [w (H), b (H), v (H), c].
type TanhNet struct {
	H       int
	X, Y    []float32
	LR      float32
	Batches Batches

	grad []float32
	t    []float32
}

var _ replay.Operators = (*TanhNet)(nil)

// Dim implements replay.Operators.
func (n *TanhNet) Dim() int { return 3*n.H + 1 }

// Apply implements replay.Operators.
func (n *TanhNet) Apply(k int, theta []float32) {
	h := n.H
	if n.grad == nil {
		n.grad, n.t = make([]float32, n.Dim()), make([]float32, h)
	}
	clear(n.grad)
	b := n.Batches.Batch(k)
	w, bias, v := theta[:h], theta[h:2*h], theta[2*h:3*h]
	for _, i := range b {
		x := n.X[i]
		f := theta[3*h]
		for j := 0; j < h; j++ {
			n.t[j] = float32(math.Tanh(float64(w[j]*x + bias[j])))
			f += v[j] * n.t[j]
		}
		d := 2 * (f - n.Y[i]) / float32(len(b))
		for j := 0; j < h; j++ {
			dz := d * v[j] * (1 - n.t[j]*n.t[j])
			n.grad[j] += dz * x
			n.grad[h+j] += dz
			n.grad[2*h+j] += d * n.t[j]
		}
		n.grad[3*h] += d
	}
	for j := range theta {
		theta[j] -= n.LR * n.grad[j]
	}
}

// Constant is the paper's Example 2.4: T_k(θ) = C[b_k[0]], a constant map
// chosen by the batch. Backward iterates equal C[b_1[0]] from step 1 on;
// forward iterates jump between the constants.
type Constant struct {
	C       [][]float32
	Batches Batches
}

var _ replay.Operators = (*Constant)(nil)

// Dim implements replay.Operators.
func (c *Constant) Dim() int { return len(c.C[0]) }

// Apply implements replay.Operators.
func (c *Constant) Apply(k int, theta []float32) { copy(theta, c.C[c.Batches.Batch(k)[0]]) }

// Forward is an in-memory replay.ForwardSource: it applies the operators
// forward from θ_0 and keeps every iterate it computed.
type Forward struct {
	ops  replay.Operators
	traj [][]float32
}

var _ replay.ForwardSource = (*Forward)(nil)

// NewForward returns a Forward over ops from θ_0 (copied).
func NewForward(ops replay.Operators, theta0 []float32) *Forward {
	return &Forward{ops: ops, traj: [][]float32{append([]float32(nil), theta0...)}}
}

// Forward implements replay.ForwardSource.
func (f *Forward) Forward(dst []float32, k int) error {
	if k < 0 {
		return fmt.Errorf("forward step %d: %w", k, replay.ErrStep)
	}
	for len(f.traj) <= k {
		next := append([]float32(nil), f.traj[len(f.traj)-1]...)
		f.ops.Apply(len(f.traj), next)
		f.traj = append(f.traj, next)
	}
	copy(dst, f.traj[k])
	return nil
}

// Affine is a generic affine family T_k(Θ) = Θ (I − c Uᵀ U) + C_k with
// random U_k (b×Cols, unit rows) and offsets C_k of three kinds, cycling
// with k: a dense random C (outside the row space of U), C = Gᵀ U (in the
// row space, as in least squares), and C = Gᵀ U with two equal rows of U
// (a rank-deficient batch). It exercises every path of replay.AffinePrefix.
// Apply computes in float32: Θ − c (Θ Uᵀ) U + C.
type Affine struct {
	Rows, Cols, B int
	C             float64
	U, Off        [][]float64 // per step k−1: b×Cols and Rows×Cols, row-major

	t []float32
}

var _ replay.AffineOperators = (*Affine)(nil)

// NewAffineFamily returns an Affine with the given shape, batch size b < cols
// and steps, and θ_0 ~ N(0, 1).
func NewAffineFamily(rng *rand.Rand, rows, cols, b, steps int) Family {
	f := &Affine{Rows: rows, Cols: cols, B: b, C: 0.5 / float64(b)}
	for k := 0; k < steps; k++ {
		u := make([]float64, b*cols)
		for s := 0; s < b; s++ {
			var n float64
			for j := 0; j < cols; j++ {
				u[s*cols+j] = rng.NormFloat64()
				n += u[s*cols+j] * u[s*cols+j]
			}
			for j := 0; j < cols; j++ {
				u[s*cols+j] /= math.Sqrt(n)
			}
		}
		off := make([]float64, rows*cols)
		switch k % 3 {
		case 0:
			for i := range off {
				off[i] = 0.1 * rng.NormFloat64()
			}
		case 2:
			if b > 1 {
				copy(u[cols:2*cols], u[:cols])
			}
			fallthrough
		case 1:
			for s := 0; s < b; s++ {
				for i := 0; i < rows; i++ {
					g := 0.1 * rng.NormFloat64()
					for j := 0; j < cols; j++ {
						off[i*cols+j] += g * u[s*cols+j]
					}
				}
			}
		}
		// Round to float32 so that Apply and AffineStep see the same numbers.
		for i := range u {
			u[i] = float64(float32(u[i]))
		}
		for i := range off {
			off[i] = float64(float32(off[i]))
		}
		f.U, f.Off = append(f.U, u), append(f.Off, off)
	}
	return Family{Name: "affine", Ops: f, Theta0: normal(rng, rows*cols, 1), Steps: steps}
}

// Dim implements replay.Operators.
func (f *Affine) Dim() int { return f.Rows * f.Cols }

// Apply implements replay.Operators.
func (f *Affine) Apply(k int, theta []float32) {
	u, off := f.U[k-1], f.Off[k-1]
	if f.t == nil {
		f.t = make([]float32, f.Rows*f.B)
	}
	c := float32(f.C)
	for i := 0; i < f.Rows; i++ {
		row := theta[i*f.Cols : (i+1)*f.Cols]
		for s := 0; s < f.B; s++ {
			var acc float32
			for j, x := range row {
				acc += x * float32(u[s*f.Cols+j])
			}
			f.t[i*f.B+s] = c * acc
		}
		for j := range row {
			var acc float32
			for s := 0; s < f.B; s++ {
				acc += f.t[i*f.B+s] * float32(u[s*f.Cols+j])
			}
			row[j] = row[j] - acc + float32(off[i*f.Cols+j])
		}
	}
}

// AffineShape implements replay.AffineOperators.
func (f *Affine) AffineShape() (rows, cols int) { return f.Rows, f.Cols }

// Pack implements replay.AffineOperators.
func (f *Affine) Pack(dst []float64, theta []float32) {
	for i, v := range theta {
		dst[i] = float64(v)
	}
}

// Unpack implements replay.AffineOperators.
func (f *Affine) Unpack(dst []float32, m []float64) {
	for i, v := range m {
		dst[i] = float32(v)
	}
}

// AffineStep implements replay.AffineOperators.
func (f *Affine) AffineStep(k int) ([]float64, int, float64, []float64) {
	return f.U[k-1], f.B, float64(float32(f.C)), f.Off[k-1]
}
