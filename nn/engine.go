package nn

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
)

// engine runs forward and backward passes of one model over a batch with
// its own scratch space, grown to the largest batch seen and then reused.
type engine struct {
	m    *Model
	data *Dataset
	loss Loss
	impl blas.Float32

	capB int
	// acts[0] holds the gathered inputs (b×In); acts[l+1] the output of
	// layer l (b×out_l): after ReLU for hidden layers, the logits for the last.
	acts [][]float32
	// deltas[l] holds ∂L/∂z_l (b×out_l), z_l the pre-activation of layer l.
	deltas [][]float32
	// colsum holds the bias gradient of one layer (max width).
	colsum []float32
}

func newEngine(m *Model, loss Loss, data *Dataset, impl blas.Float32) *engine {
	return &engine{m: m, data: data, loss: loss, impl: impl}
}

// clone returns an engine sharing everything read-only, without scratch.
func (e *engine) clone() *engine {
	return newEngine(e.m, e.loss, e.data, e.impl)
}

// reserve makes the scratch space hold a batch of b samples.
func (e *engine) reserve(b int) {
	if b <= e.capB {
		return
	}
	ls := e.m.layers
	e.acts = make([][]float32, len(ls)+1)
	e.deltas = make([][]float32, len(ls))
	e.acts[0] = make([]float32, b*e.m.in)
	e.colsum = make([]float32, 0)
	for l, ly := range ls {
		if ly.out > len(e.colsum) {
			e.colsum = make([]float32, ly.out)
		}
		e.acts[l+1] = make([]float32, b*ly.out)
		e.deltas[l] = make([]float32, b*ly.out)
	}
	e.capB = b
}

// forward gathers the batch's inputs and computes every layer's output for
// parameters theta. It returns the logits (b×Out).
func (e *engine) forward(theta []float32, batch []int32) []float32 {
	b := len(batch)
	e.reserve(b)
	in := e.data.In
	if e.m.in > 0 {
		x := e.acts[0][:b*in]
		for i, s := range batch {
			e.data.Input(x[i*in:(i+1)*in], int(s))
		}
	}
	last := len(e.m.layers) - 1
	for l, ly := range e.m.layers {
		a, z := e.acts[l][:b*ly.in], e.acts[l+1][:b*ly.out]
		bias := theta[ly.b : ly.b+ly.out]
		for i := range b {
			copy(z[i*ly.out:(i+1)*ly.out], bias)
		}
		if ly.in > 0 {
			// z = a Wᵀ + z (z holds the bias rows).
			e.impl.Sgemm(blas.NoTrans, blas.Trans, b, ly.out, ly.in,
				1, a, ly.in, theta[ly.w:ly.w+ly.out*ly.in], ly.in, 1, z, ly.out)
		}
		if l < last {
			relu(z)
		}
	}
	return e.acts[last+1][:b*e.m.out]
}

// outputGrad writes ∂L_batch/∂logits into deltas[last] and returns the
// batch loss (mean over the batch).
func (e *engine) outputGrad(logits []float32, batch []int32) float64 {
	out := e.m.out
	g := e.deltas[len(e.deltas)-1]
	scale := 1 / float64(len(batch))
	var sum float64
	for i, s := range batch {
		sum += e.loss.sampleLoss(logits[i*out:(i+1)*out], e.data.Y[int(s)*out:(int(s)+1)*out],
			g[i*out:(i+1)*out], scale)
	}
	return sum / float64(len(batch))
}

// backward back-propagates deltas[last] (set by outputGrad) through the
// layers at parameters theta and, for every layer, sets
//
//	dstW = alpha·∂L/∂W + beta·dstW,  dstB = alpha·∂L/∂b + beta·dstB
//
// where dst has the layout of theta. beta must be 0 or 1. dst may be theta
// itself (the SGD step: alpha = −η, beta = 1): each layer's weight is read
// to form the previous layer's delta before it is updated, so the update
// needs no gradient buffer and the weight update is one rank-b GEMM.
func (e *engine) backward(theta, dst []float32, batch []int32, alpha, beta float32) {
	e.backwardEach(theta, dst, batch, alpha, beta, nil)
}

// backwardEach is backward that calls each, if not nil, with the range
// [lo, hi) of the layout (one layer's weight and bias) as soon as that
// layer's dst is complete, last layer first. From then on backward reads
// nothing of that range of theta, so each may update it (Optim fuses its
// elementwise update into the pass this way, while the layer's gradient is
// still in cache).
func (e *engine) backwardEach(theta, dst []float32, batch []int32, alpha, beta float32, each func(lo, hi int)) {
	b := len(batch)
	for l := len(e.m.layers) - 1; l >= 0; l-- {
		ly := e.m.layers[l]
		g := e.deltas[l][:b*ly.out]
		a := e.acts[l][:b*ly.in]
		if l > 0 {
			// δ_{l−1} = (δ_l W_l) ⊙ 1[z_{l−1} > 0]; acts[l] is relu(z_{l−1}),
			// positive exactly where z_{l−1} is.
			d := e.deltas[l-1][:b*ly.in]
			e.impl.Sgemm(blas.NoTrans, blas.NoTrans, b, ly.in, ly.out,
				1, g, ly.out, theta[ly.w:ly.w+ly.out*ly.in], ly.in, 0, d, ly.in)
			reluMask(d, a)
		}
		if ly.in > 0 {
			// W ← alpha·δᵀ a + beta·W: one rank-b GEMM into the weight.
			e.impl.Sgemm(blas.Trans, blas.NoTrans, ly.out, ly.in, b,
				alpha, g, ly.out, a, ly.in, beta, dst[ly.w:ly.w+ly.out*ly.in], ly.in)
		}
		// Bias: alpha times the column sums of δ, plus beta·b.
		s := e.colsum[:ly.out]
		copy(s, g[:ly.out])
		for i := 1; i < b; i++ {
			for j, v := range g[i*ly.out : (i+1)*ly.out] {
				s[j] += v
			}
		}
		db := dst[ly.b : ly.b+ly.out]
		if beta == 0 {
			for j, v := range s {
				db[j] = alpha * v
			}
		} else {
			for j, v := range s {
				db[j] += alpha * v
			}
		}
		if each != nil {
			each(min(ly.w, ly.b), ly.b+ly.out)
		}
	}
}

func checkTheta(who string, theta []float32, m *Model) {
	if len(theta) != m.dim {
		panic(fmt.Sprintf("nn: %s: len(theta) = %d, model %s has dim %d", who, len(theta), m.spec, m.dim))
	}
}

// relu sets z = max(z, 0) without branches: about half of the signs are
// random, which would make a branch mispredict on every other element. The
// sign bit, spread over the word, clears negative values (and −0, −NaN).
func relu(z []float32) {
	for i, v := range z {
		u := math.Float32bits(v)
		z[i] = math.Float32frombits(u &^ uint32(int32(u)>>31))
	}
}

// reluMask zeroes d where a (a ReLU output, so ≥ +0) is zero, without
// branches: for a ≥ 0 the word u is non-zero exactly when a > 0, and then
// u | −u has its top bit set.
func reluMask(d, a []float32) {
	d = d[:len(a)]
	for i, v := range a {
		u := math.Float32bits(v)
		m := uint32(int32(u|-u) >> 31)
		d[i] = math.Float32frombits(math.Float32bits(d[i]) & m)
	}
}
