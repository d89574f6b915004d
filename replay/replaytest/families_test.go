package replaytest

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/replay-sgd/replay/replay"
)

// TestAffineForms: for every affine family, Unpack(Pack(θ)(I − c UᵀU) + C)
// equals Apply(θ) to float32 rounding (the affine form is what the memoized
// prefix composes, Apply what Direct applies).
func TestAffineForms(t *testing.T) {
	rng := rand.New(rand.NewPCG(Seed(t), 7))
	for _, f := range Families(rng, 30) {
		ops, ok := f.Ops.(replay.AffineOperators)
		if !ok {
			continue
		}
		rows, cols := ops.AffineShape()
		for k := 1; k <= f.Steps; k++ {
			theta := normal(rng, ops.Dim(), 1)
			x := make([]float64, rows*cols)
			ops.Pack(x, theta)
			u, b, c, off := ops.AffineStep(k)
			// y = x − c (x Uᵀ) U + C
			y := make([]float64, rows*cols)
			for i := 0; i < rows; i++ {
				for j := 0; j < cols; j++ {
					y[i*cols+j] = x[i*cols+j] + off[i*cols+j]
				}
				for s := 0; s < b; s++ {
					var xu float64
					for j := 0; j < cols; j++ {
						xu += x[i*cols+j] * u[s*cols+j]
					}
					for j := 0; j < cols; j++ {
						y[i*cols+j] -= c * xu * u[s*cols+j]
					}
				}
			}
			want := make([]float32, ops.Dim())
			ops.Unpack(want, y)
			ops.Apply(k, theta)
			// Apply rounds a handful of float32 operations on values of
			// order one per entry: 1e-5 is ~100 ulps.
			if e := RelErr(theta, want); e > 1e-5 {
				t.Fatalf("%s step %d: Apply %v, affine form %v (error %.3g)", f.Name, k, theta, want, e)
			}
		}
	}
}

// TestTanhNetGradient: one TanhNet step is θ − η∇L with ∇L the gradient of
// the batch MSE, checked against central differences of L in float64
// (step 1e-6: truncation O(h²) ≈ 1e-12, cancellation ε/h ≈ 1e-10; the
// float32 step adds ≈ 1e-6 relative, hence the 1e-3 tolerance on ∇L).
func TestTanhNetGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(Seed(t), 8))
	f := NewTanhFamily(rng, 4, 20, 5, 0.01, 3)
	net := f.Ops.(*TanhNet)
	loss := func(theta []float64, batch []int32) float64 {
		h := net.H
		var l float64
		for _, i := range batch {
			x, y := float64(net.X[i]), float64(net.Y[i])
			z := theta[3*h]
			for j := 0; j < h; j++ {
				z += theta[2*h+j] * math.Tanh(theta[j]*x+theta[h+j])
			}
			l += (z - y) * (z - y)
		}
		return l / float64(len(batch))
	}
	for k := 1; k <= f.Steps; k++ {
		theta := normal(rng, net.Dim(), 1)
		th64 := make([]float64, len(theta))
		for i, v := range theta {
			th64[i] = float64(v)
		}
		step := append([]float32(nil), theta...)
		net.Apply(k, step)
		for i := range th64 {
			const h = 1e-6
			p := append([]float64(nil), th64...)
			p[i] += h
			m := append([]float64(nil), th64...)
			m[i] -= h
			fd := (loss(p, net.Batches.Batch(k)) - loss(m, net.Batches.Batch(k))) / (2 * h)
			got := (float64(theta[i]) - float64(step[i])) / float64(net.LR)
			if math.Abs(got-fd) > 1e-3*max(1, math.Abs(fd)) {
				t.Fatalf("step %d parameter %d: gradient %g, finite difference %g", k, i, got, fd)
			}
		}
	}
}
