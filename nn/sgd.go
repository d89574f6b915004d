package nn

import (
	"fmt"

	"gonum.org/v1/gonum/blas"
)

// SGD is the family of SGD operators of a run: T_k(θ) = θ − η∇L_{b_k}(θ)
// with b_k = batches.Batch(k), L the batch-mean loss of the model on the
// training data. The step is computed in float32 (η rounded to float32).
//
// SGD implements replay.Operators, and replay.AffineOperators when IsAffine
// reports true (the compile-time assertions live in the tests, so that this
// package does not import replay, whose tests may import this one).
//
// An SGD owns scratch space and is not safe for concurrent use; Clone gives
// each goroutine its own. The model, data set and batches are shared and
// only read.
type SGD struct {
	eng     *engine
	lr      float64
	batches Batches
	// Affine-step scratch (see AffineStep), allocated on first use: x
	// holds one sample's inputs.
	u, off []float64
	x      []float32
}

// NewSGD returns the operators of model m trained with loss on data at
// learning rate lr. batches may be nil if only Step is used.
func NewSGD(m *Model, loss Loss, data *Dataset, lr float64, batches Batches) (*SGD, error) {
	return newSGD(m, loss, data, lr, batches, defaultBLAS)
}

func newSGD(m *Model, loss Loss, data *Dataset, lr float64, batches Batches, impl blas.Float32) (*SGD, error) {
	if err := data.check(m); err != nil {
		return nil, err
	}
	if _, err := ParseLoss(loss.String()); err != nil {
		return nil, err
	}
	if !(lr > 0) {
		return nil, fmt.Errorf("learning rate %g must be positive: %w", lr, ErrSpec)
	}
	return &SGD{eng: newEngine(m, loss, data, impl), lr: lr, batches: batches}, nil
}

// Clone returns operators with the same model, loss, data, learning rate and
// batches but their own scratch space.
func (s *SGD) Clone() *SGD {
	return &SGD{eng: s.eng.clone(), lr: s.lr, batches: s.batches}
}

// Dim returns the number of parameters.
func (s *SGD) Dim() int { return s.eng.m.dim }

// Model returns the model.
func (s *SGD) Model() *Model { return s.eng.m }

// LR returns the learning rate η.
func (s *SGD) LR() float64 { return s.lr }

// Apply replaces theta by T_k(theta), using batches.Batch(k).
func (s *SGD) Apply(k int, theta []float32) {
	s.StepLoss(theta, s.batches.Batch(k))
}

// Step replaces theta by θ − η∇L_batch(θ). It does not allocate once the
// scratch space has grown to the batch size.
func (s *SGD) Step(theta []float32, batch []int32) {
	s.StepLoss(theta, batch)
}

// StepLoss is Step that also returns the batch loss L_batch(θ) before the
// step (computed on the way; it costs nothing extra).
func (s *SGD) StepLoss(theta []float32, batch []int32) float64 {
	checkTheta("SGD.Step", theta, s.eng.m)
	checkBatch(batch, s.eng.data)
	loss := s.eng.outputGrad(s.eng.forward(theta, batch), batch)
	s.eng.backward(theta, theta, batch, float32(-s.lr), 1)
	return loss
}

// Gradient writes ∇L_batch(theta) into dst (len Dim, must not alias theta)
// and returns L_batch(theta).
func (s *SGD) Gradient(dst, theta []float32, batch []int32) float64 {
	checkTheta("SGD.Gradient", theta, s.eng.m)
	checkTheta("SGD.Gradient", dst, s.eng.m)
	checkBatch(batch, s.eng.data)
	loss := s.eng.outputGrad(s.eng.forward(theta, batch), batch)
	s.eng.backward(theta, dst, batch, 1, 0)
	return loss
}

// BatchLoss returns L_batch(theta) without changing theta.
func (s *SGD) BatchLoss(theta []float32, batch []int32) float64 {
	checkTheta("SGD.BatchLoss", theta, s.eng.m)
	checkBatch(batch, s.eng.data)
	logits := s.eng.forward(theta, batch)
	out := s.eng.m.out
	var sum float64
	for i, j := range batch {
		sum += s.eng.loss.sampleLoss(logits[i*out:(i+1)*out], s.eng.data.Y[int(j)*out:(int(j)+1)*out], nil, 0)
	}
	return sum / float64(len(batch))
}

func checkBatch(batch []int32, d *Dataset) {
	if len(batch) == 0 {
		panic("nn: empty batch")
	}
	for _, i := range batch {
		if i < 0 || int(i) >= d.N {
			panic(fmt.Sprintf("nn: batch index %d out of range [0, %d)", i, d.N))
		}
	}
}

// IsAffine reports whether every T_k is affine in θ, so that the
// replay.AffineOperators methods may be used: the linear or scalar model
// with the MSE or quadratic loss.
func (s *SGD) IsAffine() bool {
	k := s.eng.m.kind
	l := s.eng.loss
	return (k == kindLinear || k == kindScalar) && (l == MSE || l == Quadratic)
}

func (s *SGD) mustAffine() {
	if !s.IsAffine() {
		panic(fmt.Sprintf("nn: model %s with loss %s is not affine", s.eng.m.spec, s.eng.loss))
	}
}

// AffineShape returns the matrix view Θ of θ: for the linear model
// Θ = [W b], Out×(In+1); for the scalar model 1×1. It panics unless IsAffine.
func (s *SGD) AffineShape() (rows, cols int) {
	s.mustAffine()
	m := s.eng.m
	if m.kind == kindScalar {
		return 1, 1
	}
	return m.out, m.in + 1
}

// Pack writes Θ = [W b] (row-major) into dst.
func (s *SGD) Pack(dst []float64, theta []float32) {
	rows, cols := s.AffineShape()
	checkTheta("SGD.Pack", theta, s.eng.m)
	ly := s.eng.m.layers[0]
	if len(dst) != rows*cols {
		panic(fmt.Sprintf("nn: Pack: len(dst) = %d, want %d", len(dst), rows*cols))
	}
	for i := range rows {
		for j := range ly.in {
			dst[i*cols+j] = float64(theta[ly.w+i*ly.in+j])
		}
		dst[i*cols+cols-1] = float64(theta[ly.b+i])
	}
}

// Unpack is the inverse of Pack, rounding to float32.
func (s *SGD) Unpack(dst []float32, m []float64) {
	rows, cols := s.AffineShape()
	checkTheta("SGD.Unpack", dst, s.eng.m)
	ly := s.eng.m.layers[0]
	if len(m) != rows*cols {
		panic(fmt.Sprintf("nn: Unpack: len(m) = %d, want %d", len(m), rows*cols))
	}
	for i := range rows {
		for j := range ly.in {
			dst[ly.w+i*ly.in+j] = float32(m[i*cols+j])
		}
		dst[ly.b+i] = float32(m[i*cols+cols-1])
	}
}

// AffineStep returns the affine form of T_k: T_k(Θ) = Θ(I − c·UᵀU) + C.
//
// For the linear model with a batch of b samples, U is the b×(In+1) matrix
// of the batch's inputs with a 1 appended (X̂), and C = c·YᵀX̂ with
// c = 2η/(b·Out) for MSE and c = ηa/b for the quadratic loss. For the
// scalar model U = [[1]] (b = 1 row), c = 2η (MSE) or ηa (quadratic) and
// C = c·mean(y_batch). The returned slices are reused by the next call.
func (s *SGD) AffineStep(k int) (u []float64, b int, c float64, off []float64) {
	rows, cols := s.AffineShape()
	batch := s.batches.Batch(k)
	checkBatch(batch, s.eng.data)
	d := s.eng.data
	nb := len(batch)
	switch s.eng.loss {
	case MSE:
		c = 2 * s.lr / float64(nb*rows)
	case Quadratic:
		c = s.lr * QuadraticA / float64(nb)
	}
	if cap(s.off) < rows*cols {
		s.off = make([]float64, rows*cols)
	}
	off = s.off[:rows*cols]
	clear(off)
	if s.eng.m.kind == kindScalar {
		// Σ_i c (y_i − θ) = c·b·(ȳ − θ): U = [[1]] with c·b.
		var sum float64
		for _, i := range batch {
			sum += float64(d.Y[i])
		}
		c *= float64(nb)
		off[0] = c * sum / float64(nb)
		if cap(s.u) < 1 {
			s.u = make([]float64, 1)
		}
		u = s.u[:1]
		u[0] = 1
		return u, 1, c, off
	}
	if cap(s.u) < nb*cols {
		s.u = make([]float64, nb*cols)
	}
	u = s.u[:nb*cols]
	if cap(s.x) < d.In {
		s.x = make([]float32, d.In)
	}
	x := s.x[:d.In]
	for r, i := range batch {
		d.Input(x, int(i))
		for j, v := range x {
			u[r*cols+j] = float64(v)
		}
		u[r*cols+cols-1] = 1
		// C += c·y_rᵀ x̂_r
		y := d.Y[int(i)*rows : (int(i)+1)*rows]
		for o, yv := range y {
			cy := c * float64(yv)
			orow := off[o*cols : (o+1)*cols]
			for j := range cols {
				orow[j] += cy * u[r*cols+j]
			}
		}
	}
	return u, nb, c, off
}
