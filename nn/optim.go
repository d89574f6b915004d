package nn

import (
	"fmt"
	"math"
)

// Optimizer names, torch.optim's: SGD (with weight decay), SGD with heavy-ball
// momentum, SGD with Nesterov momentum, Adam and AdamW.
const (
	OptimSGD      = "sgd"
	OptimMomentum = "momentum"
	OptimNesterov = "nesterov"
	OptimAdam     = "adam"
	OptimAdamW    = "adamw"
)

// MaxOptimSteps is the largest step count t the state can hold exactly: t is
// stored as a float32 integer (docs/protocol.md, "The optimizer state").
const MaxOptimSteps = 1 << 24

// OptimConfig is an optimizer and its settings, with torch.optim's meaning
// (1.13). Name "" is sgd. Every field is explicit: the defaults are the
// caller's (the scheduler resolves them).
type OptimConfig struct {
	Name                string
	Momentum, Dampening float64
	Beta1, Beta2, Eps   float64
	WeightDecay         float64
}

// Validate checks c as torch.optim's constructors do.
func (c OptimConfig) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("optimizer %s: %s: %w", c.Name, fmt.Sprintf(format, a...), ErrSpec)
	}
	if !(c.WeightDecay >= 0) || math.IsInf(c.WeightDecay, 0) {
		return bad("weight_decay %v must be ≥ 0", c.WeightDecay)
	}
	switch c.Name {
	case "", OptimSGD:
	case OptimMomentum, OptimNesterov:
		if !(c.Momentum >= 0) || math.IsInf(c.Momentum, 0) {
			return bad("momentum %v must be ≥ 0", c.Momentum)
		}
		if !(c.Dampening >= 0) || math.IsInf(c.Dampening, 0) {
			return bad("dampening %v must be ≥ 0", c.Dampening)
		}
		if c.Name == OptimNesterov && (c.Momentum <= 0 || c.Dampening != 0) {
			return bad("nesterov needs momentum > 0 and dampening 0")
		}
	case OptimAdam, OptimAdamW:
		if !(c.Beta1 >= 0 && c.Beta1 < 1) {
			return bad("beta1 %v must be in [0, 1)", c.Beta1)
		}
		if !(c.Beta2 >= 0 && c.Beta2 < 1) {
			return bad("beta2 %v must be in [0, 1)", c.Beta2)
		}
		if !(c.Eps >= 0) || math.IsInf(c.Eps, 0) {
			return bad("eps %v must be ≥ 0", c.Eps)
		}
	default:
		return fmt.Errorf("optimizer %q (want sgd, momentum, nesterov, adam or adamw): %w", c.Name, ErrSpec)
	}
	return nil
}

// Plain reports whether c is plain SGD without weight decay, whose state is
// θ alone and whose step is SGD's (bitwise).
func (c OptimConfig) Plain() bool {
	return (c.Name == "" || c.Name == OptimSGD) && c.WeightDecay == 0
}

// buffers is the number of θ-sized buffers of the optimizer state.
func (c OptimConfig) buffers() int {
	switch c.Name {
	case OptimMomentum, OptimNesterov:
		return 1
	case OptimAdam, OptimAdamW:
		return 2
	}
	return 0
}

// StateLen is the length of the optimizer state after θ of length d:
// its buffers, each of length d, then the step count t (one element), or
// nothing for sgd.
func (c OptimConfig) StateLen(d int64) int64 {
	nb := int64(c.buffers())
	if nb == 0 {
		return 0
	}
	return nb*d + 1
}

// StateTensors names the optimizer state after the tensors of θ (params,
// which tile [0, d)), by the layout rule of docs/protocol.md: the names
// torch.optim's state_dict gives them, <i> the index of the parameter
// tensor; "optim.step" has shape [] (a scalar).
func (c OptimConfig) StateTensors(params []Tensor) []Tensor {
	nb := c.buffers()
	if nb == 0 {
		return nil
	}
	d := 0
	for _, p := range params {
		d += p.Size()
	}
	names := []string{"momentum_buffer"}
	if nb == 2 {
		names = []string{"exp_avg", "exp_avg_sq"}
	}
	out := make([]Tensor, 0, nb*len(params)+1)
	for b, name := range names {
		for i, p := range params {
			out = append(out, Tensor{Name: fmt.Sprintf("optim.state.%d.%s", i, name), Shape: p.Shape, Offset: (b+1)*d + p.Offset})
		}
	}
	return append(out, Tensor{Name: "optim.step", Shape: []int{}, Offset: (nb + 1) * d})
}

// Optim is the family of optimizer operators of a run on the flat state
// s = (θ, buffers, t) (see StateTensors for the layout): T_k(s) is one step
// of torch.optim with batch b_k from s, the gradient that of SGD's batch
// loss. It is a pure function of (k, s): the momentum buffer's "absent"
// (t = 0) and Adam's bias correction come from s's t, never from k.
//
// Arithmetic: the scalars (1 − β, lr/(1 − β1^t), √(1 − β2^t), 1 − lr·wd)
// are computed in float64 as Python computes them, then rounded to float32
// as torch's float32 kernels take them; every elementwise operation is one
// float32 operation, rounded (explicit conversions keep Go from fusing a
// multiply and an add, so the bits do not depend on GOAMD64). torch's
// vectorised kernels may fuse some of them (FMA), so a torch step and ours
// agree to float32 rounding, not bitwise. Plain SGD without weight decay is
// exactly SGD's step (bitwise): its state is θ alone.
//
// Like SGD, an Optim owns scratch space and is not safe for concurrent use;
// Clone gives each goroutine its own.
type Optim struct {
	sgd  *SGD
	cfg  OptimConfig
	d    int
	grad []float32 // ∇L, allocated on first use (not for plain SGD)
}

// NewOptim returns the operators of model m trained with loss on data by
// the optimizer cfg at learning rate lr. batches may be nil if only Step is
// used.
func NewOptim(m *Model, loss Loss, data *Dataset, lr float64, cfg OptimConfig, batches Batches) (*Optim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sgd, err := NewSGD(m, loss, data, lr, batches)
	if err != nil {
		return nil, err
	}
	return &Optim{sgd: sgd, cfg: cfg, d: m.Dim()}, nil
}

// Clone returns operators over the same model, data, settings and batches
// with their own scratch space.
func (o *Optim) Clone() *Optim {
	return &Optim{sgd: o.sgd.Clone(), cfg: o.cfg, d: o.d}
}

// Dim is the length of the state vector.
func (o *Optim) Dim() int { return o.d + int(o.cfg.StateLen(int64(o.d))) }

// ThetaDim is the length of θ, the prefix of the state.
func (o *Optim) ThetaDim() int { return o.d }

// Config returns the optimizer's settings.
func (o *Optim) Config() OptimConfig { return o.cfg }

// SGD returns the SGD operators underneath (the gradient and, for plain
// SGD, the step itself).
func (o *Optim) SGD() *SGD { return o.sgd }

// Apply replaces s by T_k(s), using batches.Batch(k).
func (o *Optim) Apply(k int, s []float32) {
	o.StepLoss(s, o.sgd.batches.Batch(k))
}

// Step replaces s by one optimizer step with batch.
func (o *Optim) Step(s []float32, batch []int32) {
	o.StepLoss(s, batch)
}

// StepLoss is Step that returns the batch loss at θ before the step.
//
// The update is fused into the backward pass: each layer's elements are
// updated as soon as its gradient is complete (the elementwise update of
// an element depends on that element alone, and backpropagation reads no
// layer's parameters after its own gradient), so the bits are those of
// Gradient followed by Update while the layer is still in cache.
func (o *Optim) StepLoss(s []float32, batch []int32) float64 {
	o.checkState("Optim.Step", s)
	if o.cfg.Plain() {
		return o.sgd.StepLoss(s, batch)
	}
	if o.grad == nil {
		o.grad = make([]float32, o.d)
	}
	theta := s[:o.d]
	checkBatch(batch, o.sgd.eng.data)
	e := o.sgd.eng
	loss := e.outputGrad(e.forward(theta, batch), batch)
	st := o.begin(s)
	e.backwardEach(theta, o.grad, batch, 1, 0, func(lo, hi int) { o.updateRange(&st, s, o.grad, lo, hi) })
	o.end(&st, s)
	return loss
}

func (o *Optim) checkState(who string, s []float32) {
	if len(s) != o.Dim() {
		panic(fmt.Sprintf("nn: %s: len(state) = %d, want %d (θ %d, optimizer %s)", who, len(s), o.Dim(), o.d, o.cfg.Name))
	}
}

// Update applies the optimizer's update to s given the gradient g of the
// loss at θ = s[:ThetaDim] (len ThetaDim, must not alias s): torch.optim's
// step() after backward(). StepLoss computes the same, fused.
func (o *Optim) Update(s, g []float32) {
	o.checkState("Optim.Update", s)
	if len(g) != o.d {
		panic(fmt.Sprintf("nn: Optim.Update: len(grad) = %d, want %d", len(g), o.d))
	}
	st := o.begin(s)
	o.updateRange(&st, s, g, 0, o.d)
	o.end(&st, s)
}

// optimStep is one step's scalars, computed once from the state's t: in
// float64 as Python computes them, then rounded to float32 as torch's
// float32 kernels take them.
type optimStep struct {
	t                   float64 // the step count after the step
	lr, wd, mu, damp    float32
	decay, first        bool
	stepSize, bc2Sqrt   float32
	b1, c1, b2, c2, eps float32
	shrink              float32
}

func (o *Optim) begin(s []float32) optimStep {
	c := o.cfg
	lr := o.sgd.lr
	st := optimStep{wd: float32(c.WeightDecay), decay: c.WeightDecay != 0}
	if c.buffers() > 0 {
		st.t = float64(s[len(s)-1]) + 1
	}
	switch c.Name {
	case OptimAdam, OptimAdamW:
		bc1 := 1 - math.Pow(c.Beta1, st.t)
		bc2 := 1 - math.Pow(c.Beta2, st.t)
		st.stepSize = float32(-(lr / bc1))
		st.bc2Sqrt = float32(math.Sqrt(bc2))
		st.b1, st.c1 = float32(c.Beta1), float32(1-c.Beta1)
		st.b2, st.c2 = float32(c.Beta2), float32(1-c.Beta2)
		st.eps = float32(c.Eps)
		st.shrink = float32(1 - lr*c.WeightDecay)
	default:
		st.lr = float32(-lr)
		st.mu = float32(c.Momentum)
		st.damp = float32(1 - c.Dampening)
		st.first = st.t == 1
	}
	return st
}

// end stores the step count.
func (o *Optim) end(st *optimStep, s []float32) {
	if o.cfg.buffers() > 0 {
		s[len(s)-1] = float32(st.t)
	}
}

// updateRange updates the elements [lo, hi) of θ and of each buffer from
// the gradient g (indexed as θ).
func (o *Optim) updateRange(st *optimStep, s, g []float32, lo, hi int) {
	d := o.d
	g = g[lo:hi]
	switch o.cfg.Name {
	case OptimAdam, OptimAdamW:
		o.adam(st, s[lo:hi], s[d+lo:d+hi], s[2*d+lo:2*d+hi], g)
	case OptimMomentum, OptimNesterov:
		if o.cfg.Momentum != 0 {
			o.momentum(st, s[lo:hi], s[d+lo:d+hi], g)
			return
		}
		fallthrough
	default:
		o.sgdStep(st, s[lo:hi], g)
	}
}

// sgdStep, momentum and adam are torch.optim's single-tensor steps (1.13,
// _single_tensor_sgd and _single_tensor_adam(w)) on one range:
//
//	SGD:  d_p = grad + wd·param
//	      if momentum ≠ 0: buf = d_p if buf is None else momentum·buf + (1 − dampening)·d_p
//	                       d_p = d_p + momentum·buf if nesterov else buf
//	      param += −lr·d_p
//
// with "buf is None" ⇔ t = 0 in our state, and
//
//	Adam: step_t += 1
//	      AdamW: param *= 1 − lr·wd;  Adam: grad = grad + wd·param
//	      exp_avg = β1·exp_avg + (1 − β1)·grad
//	      exp_avg_sq = β2·exp_avg_sq + (1 − β2)·grad·grad
//	      step_size = lr / (1 − β1^t)
//	      denom = sqrt(exp_avg_sq) / sqrt(1 − β2^t) + eps
//	      param += −step_size · exp_avg / denom
func (o *Optim) sgdStep(st *optimStep, theta, g []float32) {
	theta = theta[:len(g)] // (lets the compiler drop the bounds checks)
	for i, gi := range g {
		if st.decay {
			gi += float32(st.wd * theta[i])
		}
		theta[i] += float32(st.lr * gi)
	}
}

func (o *Optim) momentum(st *optimStep, theta, buf, g []float32) {
	theta, buf = theta[:len(g)], buf[:len(g)]
	nesterov := o.cfg.Name == OptimNesterov
	for i, gi := range g {
		if st.decay {
			gi += float32(st.wd * theta[i])
		}
		b := gi
		if !st.first {
			b = float32(buf[i]*st.mu) + float32(st.damp*gi)
		}
		buf[i] = b
		if nesterov {
			gi += float32(st.mu * b)
		} else {
			gi = b
		}
		theta[i] += float32(st.lr * gi)
	}
}

func (o *Optim) adam(st *optimStep, theta, m, v, g []float32) {
	theta, m, v = theta[:len(g)], m[:len(g)], v[:len(g)]
	adamw := o.cfg.Name == OptimAdamW
	decayGrad := !adamw && st.decay
	for i, gi := range g {
		p := theta[i]
		if adamw {
			p = float32(p * st.shrink)
		}
		if decayGrad {
			gi += float32(st.wd * p)
		}
		mi := float32(m[i]*st.b1) + float32(st.c1*gi)
		vi := float32(v[i]*st.b2) + float32(float32(st.c2*gi)*gi)
		m[i], v[i] = mi, vi
		denom := float32(float32(math.Sqrt(float64(vi)))/st.bc2Sqrt) + st.eps
		theta[i] = p + float32(float32(st.stepSize*mi)/denom)
	}
}

// IsAffine reports whether every T_k is affine in the state with the
// affine form SGD.AffineStep gives: plain SGD without weight decay on an
// affine model (SGD.IsAffine). Heavy-ball momentum on least squares is
// affine in (θ, m) too, but not in that form; the other optimizers use the
// coalescence memo.
func (o *Optim) IsAffine() bool { return o.cfg.Plain() && o.sgd.IsAffine() }
