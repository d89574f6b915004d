package replaytest

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/replay-sgd/replay/replay"
)

// Optimizer names of Optim, torch.optim's.
const (
	OptMomentum = "momentum" // torch.optim.SGD(momentum=μ, dampening=d, weight_decay=wd)
	OptNesterov = "nesterov" // the same with nesterov=True
	OptAdam     = "adam"     // torch.optim.Adam
	OptAdamW    = "adamw"    // torch.optim.AdamW
)

// Gradient is a family whose batch gradient is known: the loss of the
// family's SGD operators, whose T_k is θ − η ∇L_{b_k}(θ).
type Gradient interface {
	// Dim is the length of θ.
	Dim() int
	// Grad writes ∇L_{b_k}(θ) into dst (len Dim, must not alias theta).
	Grad(k int, dst, theta []float32)
}

// AffineGradient is a Gradient that is affine in θ: viewing θ as a
// Rows×Cols matrix Θ (Pack),
//
//	∇L_k(Θ) = c ΘUᵀU − C
//
// with U b×Cols, as GradStep returns them (the unscaled counterpart of
// replay.AffineOperators.AffineStep: η times this gradient is that SGD
// step's data).
type AffineGradient interface {
	Gradient
	AffineShape() (rows, cols int)
	Pack(dst []float64, theta []float32)
	Unpack(dst []float32, m []float64)
	GradStep(k int) (u []float64, b int, c float64, off []float64)
}

var (
	_ AffineGradient = (*Quadratic)(nil)
	_ AffineGradient = (*LeastSquares)(nil)
	_ AffineGradient = (*Affine)(nil)
	_ Gradient       = (*TanhNet)(nil)
)

// Grad implements Gradient: a(θ − ȳ_k).
func (q *Quadratic) Grad(k int, dst, theta []float32) {
	dst[0] = q.A * (theta[0] - q.mean(k))
}

// GradStep implements AffineGradient: U = [1], c = a, C = a ȳ_k.
func (q *Quadratic) GradStep(k int) ([]float64, int, float64, []float64) {
	c := float64(q.A)
	q.off[0] = c * float64(q.mean(k))
	return one, 1, c, q.off[:]
}

// Grad implements Gradient: (2/(b·Out)) (Θ X̃ᵀ − Yᵀ) X̃.
func (l *LeastSquares) Grad(k int, dst, theta []float32) {
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
				acc += float32(w[j] * xj)
			}
			res[s*l.Out+o] = acc - l.Y[int(i)*l.Out+o]
		}
	}
	scale := 2 / float32(len(b)*l.Out)
	for o := 0; o < l.Out; o++ {
		for j := 0; j < cols; j++ {
			var g float32
			for s, i := range b {
				xj := float32(1)
				if j < l.In {
					xj = l.X[int(i)*l.In+j]
				}
				g += float32(res[s*l.Out+o] * xj)
			}
			dst[o*cols+j] = scale * g
		}
	}
}

// GradStep implements AffineGradient: U = X̃_b, c = 2/(b·Out), C = c Yᵀ X̃_b.
func (l *LeastSquares) GradStep(k int) ([]float64, int, float64, []float64) {
	return l.affineStep(k, 1)
}

// Grad implements Gradient: the gradient of the batch MSE of the network.
func (n *TanhNet) Grad(k int, dst, theta []float32) {
	h := n.H
	if n.t == nil {
		n.t = make([]float32, h)
	}
	clear(dst)
	b := n.Batches.Batch(k)
	w, bias, v := theta[:h], theta[h:2*h], theta[2*h:3*h]
	for _, i := range b {
		x := n.X[i]
		f := theta[3*h]
		for j := 0; j < h; j++ {
			n.t[j] = float32(math.Tanh(float64(w[j]*x + bias[j])))
			f += float32(v[j] * n.t[j])
		}
		d := 2 * (f - n.Y[i]) / float32(len(b))
		for j := 0; j < h; j++ {
			dz := d * v[j] * (1 - n.t[j]*n.t[j])
			dst[j] += float32(dz * x)
			dst[h+j] += dz
			dst[2*h+j] += float32(d * n.t[j])
		}
		dst[3*h] += d
	}
}

// Grad implements Gradient, viewing the family as SGD with η = 1:
// ∇(Θ) = c ΘUᵀU − C.
func (f *Affine) Grad(k int, dst, theta []float32) {
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
				acc += float32(x * float32(u[s*f.Cols+j]))
			}
			f.t[i*f.B+s] = c * acc
		}
		for j := range row {
			var acc float32
			for s := 0; s < f.B; s++ {
				acc += float32(f.t[i*f.B+s] * float32(u[s*f.Cols+j]))
			}
			dst[i*f.Cols+j] = acc - float32(off[i*f.Cols+j])
		}
	}
}

// GradStep implements AffineGradient.
func (f *Affine) GradStep(k int) ([]float64, int, float64, []float64) {
	return f.AffineStep(k)
}

// Optim is an optimizer's operators over a Gradient family, on the flat
// state s = (θ, buffers, t) of docs/protocol.md ("The optimizer state"):
// θ (len p), then for momentum and nesterov the momentum buffer (p), for
// adam and adamw exp_avg (p) and exp_avg_sq (p), then the step count t as
// one float32. T_k(s) is one step of torch.optim (1.13, single-tensor
// code) with batch k from s, in float32:
//
//	momentum/nesterov: g = ∇ + wd θ; buf = g if t = 0 else μ buf + (1 − d) g;
//	                   g = g + μ buf (nesterov) or buf; θ −= η g; t += 1
//	                   (μ = 0: θ −= η g, the buffer untouched, t += 1)
//	adam/adamw:        t += 1; g = ∇ (+ wd θ for adam; adamw: θ *= 1 − η wd);
//	                   m = β1 m + (1 − β1) g; v = β2 v + (1 − β2) g²;
//	                   θ −= (η/(1 − β1^t)) m / (√v/√(1 − β2^t) + eps)
//
// with the scalars computed in float64 and rounded to float32, as
// torch.optim passes Python floats to float32 kernels. It is a pure
// function of (k, s): the buffer's "absent" (t = 0) and Adam's bias
// correction come from s's t. This is an implementation independent of
// nn's, written from torch's definitions, for replay's own tests.
//
// Over an AffineGradient with momentum or nesterov it implements
// replay.MomentumAffineOperators (IsMomentumAffine reports it).
type Optim struct {
	Name string
	Grad Gradient
	// LR is η; the other fields are torch.optim's.
	LR, Momentum, Dampening, Beta1, Beta2, Eps, WeightDecay float32

	g   []float32
	off []float64 // MomentumStep's scaled offset
}

var _ replay.MomentumAffineOperators = (*Optim)(nil)

// p is the length of θ.
func (o *Optim) p() int { return o.Grad.Dim() }

// buffers is the number of θ-sized buffers of the state.
func (o *Optim) buffers() int {
	switch o.Name {
	case OptMomentum, OptNesterov:
		return 1
	case OptAdam, OptAdamW:
		return 2
	}
	panic(fmt.Sprintf("replaytest: unknown optimizer %q", o.Name))
}

// Dim implements replay.Operators: p·(1 + buffers) + 1.
func (o *Optim) Dim() int { return o.p()*(1+o.buffers()) + 1 }

// ThetaDim is p, the length of θ.
func (o *Optim) ThetaDim() int { return o.p() }

// Apply implements replay.Operators.
func (o *Optim) Apply(k int, s []float32) {
	p := o.p()
	if len(s) != o.Dim() {
		panic(fmt.Sprintf("replaytest: state of length %d, want %d", len(s), o.Dim()))
	}
	if o.g == nil {
		o.g = make([]float32, p)
	}
	theta, t := s[:p], &s[len(s)-1]
	o.Grad.Grad(k, o.g, theta)
	wd, lr := o.WeightDecay, o.LR
	switch o.Name {
	case OptMomentum, OptNesterov:
		buf := s[p : 2*p]
		mu, damp := o.Momentum, float32(1-float64(o.Dampening))
		first := *t == 0
		for i, g := range o.g {
			g += float32(wd * theta[i])
			if mu == 0 {
				theta[i] -= float32(lr * g)
				continue
			}
			if first {
				buf[i] = g
			} else {
				buf[i] = float32(mu*buf[i]) + float32(damp*g)
			}
			if o.Name == OptNesterov {
				g += float32(mu * buf[i])
			} else {
				g = buf[i]
			}
			theta[i] -= float32(lr * g)
		}
		*t++
	case OptAdam, OptAdamW:
		*t++
		step := float64(*t)
		b1, b2 := float64(o.Beta1), float64(o.Beta2)
		stepSize := float32(float64(lr) / (1 - math.Pow(b1, step)))
		bc2 := float32(math.Sqrt(1 - math.Pow(b2, step)))
		c1, c2 := float32(1-b1), float32(1-b2)
		decay := float32(1 - float64(lr)*float64(wd))
		m, v := s[p:2*p], s[2*p:3*p]
		for i, g := range o.g {
			if o.Name == OptAdamW {
				theta[i] *= decay
			} else {
				g += float32(wd * theta[i])
			}
			m[i] = float32(o.Beta1*m[i]) + float32(c1*g)
			v[i] = float32(o.Beta2*v[i]) + float32(float32(c2*g)*g)
			denom := float32(math.Sqrt(float64(v[i])))/bc2 + o.Eps
			theta[i] -= float32(stepSize * m[i] / denom)
		}
	default:
		panic(fmt.Sprintf("replaytest: unknown optimizer %q", o.Name))
	}
}

// IsMomentumAffine reports whether the replay.MomentumAffineOperators
// methods are valid: momentum or nesterov over an AffineGradient.
func (o *Optim) IsMomentumAffine() bool {
	_, ok := o.Grad.(AffineGradient)
	return ok && (o.Name == OptMomentum || o.Name == OptNesterov)
}

func (o *Optim) affine() AffineGradient {
	if !o.IsMomentumAffine() {
		panic("replaytest: " + o.Name + " over a non-affine gradient has no affine form")
	}
	return o.Grad.(AffineGradient)
}

// AffineShape implements replay.MomentumAffineOperators.
func (o *Optim) AffineShape() (rows, cols int) { return o.affine().AffineShape() }

// Pack implements replay.MomentumAffineOperators.
func (o *Optim) Pack(dst []float64, theta []float32) { o.affine().Pack(dst, theta) }

// Unpack implements replay.MomentumAffineOperators.
func (o *Optim) Unpack(dst []float32, m []float64) { o.affine().Unpack(dst, m) }

// MomentumStep implements replay.MomentumAffineOperators: η times the
// gradient's data.
func (o *Optim) MomentumStep(k int) ([]float64, int, float64, []float64) {
	u, b, c, off := o.affine().GradStep(k)
	lr := float64(o.LR)
	if cap(o.off) < len(off) {
		o.off = make([]float64, len(off))
	}
	o.off = o.off[:len(off)]
	for i, x := range off {
		o.off[i] = lr * x
	}
	return u, b, lr * c, o.off
}

// MomentumSettings implements replay.MomentumAffineOperators.
func (o *Optim) MomentumSettings() replay.MomentumSettings {
	return replay.MomentumSettings{
		LR: float64(o.LR), Momentum: float64(o.Momentum), Dampening: float64(o.Dampening),
		WeightDecay: float64(o.WeightDecay), Nesterov: o.Name == OptNesterov,
	}
}

// OptimState returns s_0 = (θ_0, zero buffers, t = 0) for o.
func OptimState(o *Optim, theta0 []float32) []float32 {
	s := make([]float32, o.Dim())
	copy(s, theta0)
	return s
}

// OptimFamily wraps the SGD family f (its operators must be a Gradient) in
// the optimizer o (o.Grad is set to f.Ops): the family's name is
// "<optimizer>/<f.Name>", its start s_0 = (θ_0, 0, 0) and its blocks θ, each
// buffer and t.
func OptimFamily(f Family, o *Optim) Family {
	g, ok := f.Ops.(Gradient)
	if !ok {
		panic("replaytest: family " + f.Name + " has no gradient")
	}
	o.Grad = g
	p := g.Dim()
	blocks := []int{p}
	for range o.buffers() {
		blocks = append(blocks, p)
	}
	blocks = append(blocks, 1)
	return Family{Name: o.Name + "/" + f.Name, Ops: o, Theta0: OptimState(o, f.Theta0), Steps: f.Steps, Blocks: blocks}
}

// OptimFamilies returns one instance of each optimizer family, over fresh
// SGD families with random data from rng: heavy-ball and Nesterov momentum
// over every affine family (exercising replay.MomentumPrefix: scalar,
// least squares with weight decay, generic low-rank with dense offsets and
// dampening) and over the tanh network, Adam and AdamW over the quadratic,
// least squares and the tanh network.
func OptimFamilies(rng *rand.Rand, steps int) []Family {
	quad := func() Family { return NewQuadraticFamily(rng, 200, 2, 0.1, steps) }
	ls := func() Family { return NewLeastSquaresFamily(rng, 3, 2, 50, 4, 0.05, steps) }
	tanh := func() Family { return NewTanhFamily(rng, 3, 40, 4, 0.05, steps) }
	// The generic affine family is SGD with η = 1: η = 0.5 with momentum
	// keeps its steps contracting.
	aff := func() Family { return NewAffineFamily(rng, 2, 5, 3, steps) }
	heavy := func(lr, mu, damp, wd float32) *Optim {
		return &Optim{Name: OptMomentum, LR: lr, Momentum: mu, Dampening: damp, WeightDecay: wd}
	}
	nesterov := func(lr, mu, damp, wd float32) *Optim {
		return &Optim{Name: OptNesterov, LR: lr, Momentum: mu, Dampening: damp, WeightDecay: wd}
	}
	adam := func(name string, lr, wd float32) *Optim {
		return &Optim{Name: name, LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: wd}
	}
	return []Family{
		OptimFamily(quad(), heavy(0.1, 0.9, 0, 0)),
		OptimFamily(ls(), heavy(0.05, 0.8, 0.3, 0.01)),
		OptimFamily(aff(), heavy(0.5, 0.5, 0.2, 0)),
		OptimFamily(tanh(), heavy(0.05, 0.9, 0, 0.001)),
		OptimFamily(quad(), nesterov(0.1, 0.9, 0, 0)),
		OptimFamily(ls(), nesterov(0.05, 0.7, 0, 0.01)),
		OptimFamily(aff(), nesterov(0.4, 0.5, 0.25, 0.02)),
		OptimFamily(quad(), adam(OptAdam, 0.05, 0)),
		OptimFamily(ls(), adam(OptAdamW, 0.02, 0.01)),
		OptimFamily(tanh(), adam(OptAdam, 0.01, 0.001)),
	}
}
