package replaytest

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// torchStep64 is one torch.optim step (1.13's single-tensor code, written
// out again) in float64 on s = (θ, buffers, t), given the gradient g at θ.
func torchStep64(o *Optim, s, g []float64) {
	p := len(g)
	theta, t := s[:p], &s[len(s)-1]
	lr, wd := float64(o.LR), float64(o.WeightDecay)
	mu, damp := float64(o.Momentum), float64(o.Dampening)
	switch o.Name {
	case OptMomentum, OptNesterov:
		buf := s[p : 2*p]
		for i := range g {
			d := g[i] + wd*theta[i]
			if mu != 0 {
				if *t == 0 {
					buf[i] = d
				} else {
					buf[i] = mu*buf[i] + (1-damp)*d
				}
				if o.Name == OptNesterov {
					d += mu * buf[i]
				} else {
					d = buf[i]
				}
			}
			theta[i] -= lr * d
		}
		*t++
	case OptAdam, OptAdamW:
		*t++
		b1, b2, eps := float64(o.Beta1), float64(o.Beta2), float64(o.Eps)
		m, v := s[p:2*p], s[2*p:3*p]
		for i := range g {
			gi := g[i]
			if o.Name == OptAdamW {
				theta[i] *= 1 - lr*wd
			} else {
				gi += wd * theta[i]
			}
			m[i] = b1*m[i] + (1-b1)*gi
			v[i] = b2*v[i] + (1-b2)*gi*gi
			denom := math.Sqrt(v[i])/math.Sqrt(1-math.Pow(b2, *t)) + eps
			theta[i] -= lr / (1 - math.Pow(b1, *t)) * m[i] / denom
		}
	}
}

// TestOptimMatchesTorchDefinition: one Optim step from random states (t = 0
// and t ≥ 1, so the absent buffer and the bias correction are both
// exercised) equals torchStep64 fed the same float32 gradient, within
// float32 rounding: each element goes through ≤ 10 float32 operations on
// values of order one, and Adam's division by √v/√(1−β2^t) + eps is well
// conditioned at these magnitudes (v ≥ (1−β2)g² ≫ eps²), so 1e-5 relative
// to max(1, |x|) is ~100 ulps of margin; a wrong formula (a missing
// dampening, bias correction from the wrong t) is off by far more.
func TestOptimMatchesTorchDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(Seed(t), 11))
	for _, f := range OptimFamilies(rng, 10) {
		o := f.Ops.(*Optim)
		p := o.ThetaDim()
		for _, t0 := range []float32{0, 1, 6} {
			s := make([]float32, o.Dim())
			for i := 0; i < len(s)-1; i++ {
				s[i] = float32(rng.NormFloat64())
			}
			if o.Name == OptAdam || o.Name == OptAdamW {
				for i := 2 * p; i < 3*p; i++ {
					s[i] = float32(math.Abs(float64(s[i]))) // exp_avg_sq ≥ 0
				}
			}
			s[len(s)-1] = t0
			g := make([]float32, p)
			o.Grad.Grad(3, g, s[:p])
			s64, g64 := make([]float64, len(s)), make([]float64, p)
			for i, x := range s {
				s64[i] = float64(x)
			}
			for i, x := range g {
				g64[i] = float64(x)
			}
			torchStep64(o, s64, g64)
			o.Apply(3, s)
			for i := range s {
				if e := math.Abs(float64(s[i]) - s64[i]); e > 1e-5*max(1, math.Abs(s64[i])) {
					t.Fatalf("%s t=%g: element %d = %g, torch's definition %g", f.Name, t0, i, s[i], s64[i])
				}
			}
			if s[len(s)-1] != t0+1 {
				t.Fatalf("%s: t %g after a step from %g", f.Name, s[len(s)-1], t0)
			}
		}
	}
}

// TestOptimPure: Apply is a function of (k, s) only: the same state gives
// the same bits whatever was applied before, and the step count it reads
// is s's (Adam's bias correction differs between t = 0 and t = 5 states
// that are otherwise equal).
func TestOptimPure(t *testing.T) {
	rng := rand.New(rand.NewPCG(Seed(t), 12))
	for _, f := range OptimFamilies(rng, 20) {
		s := slices.Clone(f.Theta0)
		for k := 1; k <= 7; k++ {
			f.Ops.Apply(k, s)
		}
		a, b := slices.Clone(s), slices.Clone(s)
		f.Ops.Apply(9, a)
		f.Ops.Apply(2, make([]float32, len(s))) // other work in between
		f.Ops.Apply(9, b)
		if !Bitwise(a, b) {
			t.Fatalf("%s: T_9 of the same state gave different bits", f.Name)
		}
		c := slices.Clone(s)
		c[len(c)-1] = 0
		f.Ops.Apply(9, c)
		p := f.Ops.(*Optim).ThetaDim()
		if Bitwise(a[:p], c[:p]) {
			t.Fatalf("%s: θ after T_9 does not depend on the state's step count", f.Name)
		}
	}
}

// TestGradStepForms: for every affine gradient, c ΘUᵀU − C from GradStep
// equals Grad to float32 rounding (the form MomentumPrefix composes, the
// gradient Optim applies); and for every gradient family θ − η Grad(θ) is
// the SGD family's own step (TanhNet's against finite differences in
// TestTanhNetGradient), to float32 rounding.
func TestGradStepForms(t *testing.T) {
	rng := rand.New(rand.NewPCG(Seed(t), 13))
	lrs := map[string]float32{"quadratic": 0.1, "least-squares": 0.05, "tanh": 0.05, "affine": 1}
	for _, f := range Families(rng, 12)[:5] {
		if gr, ok := f.Ops.(Gradient); ok {
			for k := 1; k <= f.Steps; k++ {
				theta := normal(rng, gr.Dim(), 1)
				got := make([]float32, gr.Dim())
				gr.Grad(k, got, theta)
				sgd := slices.Clone(theta)
				f.Ops.Apply(k, sgd)
				for i := range got {
					got[i] = theta[i] - lrs[f.Name]*got[i]
				}
				if e := RelErr(got, sgd); e > 1e-5 {
					t.Fatalf("%s step %d: θ − η∇ %v, SGD step %v (error %.3g)", f.Name, k, got, sgd, e)
				}
			}
		}
		g, ok := f.Ops.(AffineGradient)
		if !ok {
			continue
		}
		rows, cols := g.AffineShape()
		for k := 1; k <= f.Steps; k++ {
			theta := normal(rng, g.Dim(), 1)
			x := make([]float64, rows*cols)
			g.Pack(x, theta)
			u, b, c, off := g.GradStep(k)
			want64 := make([]float64, rows*cols)
			for i := 0; i < rows; i++ {
				for s := 0; s < b; s++ {
					var xu float64
					for j := 0; j < cols; j++ {
						xu += x[i*cols+j] * u[s*cols+j]
					}
					for j := 0; j < cols; j++ {
						want64[i*cols+j] += c * xu * u[s*cols+j]
					}
				}
				for j := 0; j < cols; j++ {
					want64[i*cols+j] -= off[i*cols+j]
				}
			}
			want := make([]float32, g.Dim())
			g.Unpack(want, want64)
			got := make([]float32, g.Dim())
			g.Grad(k, got, theta)
			// A handful of float32 operations on values of order one.
			if e := RelErr(got, want); e > 1e-5 {
				t.Fatalf("%s step %d: Grad %v, GradStep form %v (error %.3g)", f.Name, k, got, want, e)
			}
		}
	}
}
