package nn

import (
	"fmt"
	"math"
	"testing"

	"gonum.org/v1/gonum/diff/fd"
)

// refLoss is an independent float64 implementation of the batch loss of m at
// theta (in the documented layout), written with plain loops.
func refLoss(m *Model, loss Loss, d *Dataset, theta []float64, batch []int32) float64 {
	var total float64
	for _, s := range batch {
		x := make([]float32, d.In)
		d.Input(x, int(s))
		a := make([]float64, d.In)
		for j := range a {
			a[j] = float64(x[j])
		}
		for l, ly := range m.layers {
			z := make([]float64, ly.out)
			for o := range z {
				z[o] = theta[ly.b+o]
				for j := 0; j < ly.in; j++ {
					z[o] += theta[ly.w+o*ly.in+j] * a[j]
				}
				if l < len(m.layers)-1 && z[o] < 0 {
					z[o] = 0
				}
			}
			a = z
		}
		y := make([]float64, d.Out)
		for j := range y {
			y[j] = float64(d.Y[int(s)*d.Out+j])
		}
		switch loss {
		case CrossEntropy:
			var sum float64
			for _, v := range a {
				sum += math.Exp(v)
			}
			for j, v := range a {
				total -= y[j] * (v - math.Log(sum))
			}
		case MSE:
			for j, v := range a {
				total += (v - y[j]) * (v - y[j]) / float64(len(a))
			}
		case Quadratic:
			for j, v := range a {
				total += QuadraticA * (v - y[j]) * (v - y[j]) / 2
			}
		}
	}
	return total / float64(len(batch))
}

type gradCase struct {
	spec    string
	in, out int
	loss    Loss
	classes bool
}

func gradCases() []gradCase {
	var cs []gradCase
	for _, loss := range []Loss{CrossEntropy, MSE, Quadratic} {
		for _, spec := range []string{"mlp:5", "mlp:6x2,4", "linear"} {
			cs = append(cs, gradCase{spec, 4, 3, loss, loss != Quadratic})
		}
		cs = append(cs, gradCase{"scalar", 2, 1, loss, false})
		cs = append(cs, gradCase{"linear", 0, 2, loss, false}) // bias only (quadratic data has In 0)
	}
	return cs
}

// TestGradientFiniteDifferences checks the backpropagated gradient of every
// model and loss against central finite differences of refLoss.
func TestGradientFiniteDifferences(t *testing.T) {
	const seed = 7
	t.Logf("seed %d", seed)
	for _, c := range gradCases() {
		t.Run(fmt.Sprintf("%s/%s/in%d", c.spec, c.loss, c.in), func(t *testing.T) {
			d := synthetic(20, c.in, c.out, c.classes, seed)
			m := mustModel(t, c.spec, c.in, c.out)
			theta := initTheta(t, m, "torch", seed) // non-zero biases exercise every term
			sgd, err := NewSGD(m, c.loss, d, 0.1, nil)
			if err != nil {
				t.Fatal(err)
			}
			batch := []int32{3, 0, 17, 9, 3} // a repeated index must count twice
			grad := make([]float32, m.Dim())
			loss := sgd.Gradient(grad, theta, batch)

			theta64 := make([]float64, m.Dim())
			for i, v := range theta {
				theta64[i] = float64(v)
			}
			f := func(x []float64) float64 { return refLoss(m, c.loss, d, x, batch) }
			// Central differences in float64 with h = 1e-6: truncation error
			// O(h²·f''') ≈ 1e-12, cancellation error ≈ ε64·|f|/h ≈ 1e-10;
			// ReLU kinks are met with probability ≈ 1e-6 per unit for random data.
			want := fd.Gradient(nil, f, theta64, &fd.Settings{Formula: fd.Central, Step: 1e-6})

			// The engine computes in float32: the forward pass, the loss
			// derivative and the back-propagation each add relative errors of a
			// few ε32 ≈ 1e-7 per accumulated term (at most 7 here), so 1e-5 of the
			// gradient's scale bounds them with a wide margin; a wrong term would
			// be off by O(scale).
			var scale float64
			for _, v := range want {
				scale = max(scale, math.Abs(v))
			}
			if scale == 0 && c.loss != CrossEntropy {
				t.Fatal("zero gradient: the test would prove nothing")
			}
			tol := 1e-5 * max(scale, 1e-3)
			for i := range want {
				if math.Abs(float64(grad[i])-want[i]) > tol {
					t.Errorf("∂L/∂θ[%d] = %g, finite differences %g (tol %g)", i, grad[i], want[i], tol)
				}
			}
			if ref := f(theta64); math.Abs(loss-ref) > 1e-6*max(1, math.Abs(ref)) {
				t.Errorf("loss %g, reference %g", loss, ref)
			}
			if bl := sgd.BatchLoss(theta, batch); bl != loss {
				t.Errorf("BatchLoss %g, Gradient's loss %g", bl, loss)
			}
		})
	}
}

// TestStepIsGradientStep checks that the fused in-place step equals
// θ − η∇L(θ) computed from the separate gradient, to float32 rounding.
func TestStepIsGradientStep(t *testing.T) {
	const seed, lr = 11, 0.05
	t.Logf("seed %d", seed)
	for _, c := range gradCases() {
		t.Run(fmt.Sprintf("%s/%s/in%d", c.spec, c.loss, c.in), func(t *testing.T) {
			d := synthetic(20, c.in, c.out, c.classes, seed)
			m := mustModel(t, c.spec, c.in, c.out)
			theta := initTheta(t, m, "torch", seed)
			sgd, err := NewSGD(m, c.loss, d, lr, nil)
			if err != nil {
				t.Fatal(err)
			}
			batch := []int32{1, 5, 2, 19}
			grad := make([]float32, m.Dim())
			sgd.Gradient(grad, theta, batch)
			stepped := append([]float32(nil), theta...)
			sgd.Step(stepped, batch)
			for i := range theta {
				want := float64(theta[i]) - lr*float64(grad[i])
				// One float32 rounding of the update and of the product
				// (the GEMM forms η·g itself): a few ε32 of |θ| + η|g|.
				tol := 4 * 0x1p-23 * (math.Abs(float64(theta[i])) + lr*math.Abs(float64(grad[i])))
				if d := math.Abs(float64(stepped[i]) - want); d > tol {
					t.Errorf("θ'[%d] = %g, θ − η∇L = %g (tol %g)", i, stepped[i], want, tol)
				}
			}
		})
	}
}

func TestReLUBits(t *testing.T) {
	negZero := float32(math.Copysign(0, -1))
	in := []float32{-2, negZero, 0, 1e-45, 3, float32(math.Inf(-1)), float32(math.Inf(1))}
	z := append([]float32(nil), in...)
	relu(z)
	want := []float32{0, 0, 0, 1e-45, 3, 0, float32(math.Inf(1))}
	for i := range z {
		if math.Float32bits(z[i]) != math.Float32bits(want[i]) {
			t.Errorf("relu(%g) = %g, want %g", in[i], z[i], want[i])
		}
	}
	d := []float32{5, 5, 5, 5, 5, 5, 5}
	reluMask(d, z)
	for i, v := range d {
		w := float32(5)
		if z[i] == 0 {
			w = 0
		}
		if v != w {
			t.Errorf("mask at relu %g: %g, want %g", z[i], v, w)
		}
	}
}
