package nn

import (
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/replay-sgd/replay/replay"
)

var _ replay.Operators = (*Optim)(nil)

// optimCases are the optimizers under test, with non-default settings
// where a default would hide a term (dampening, weight decay).
var optimCases = []OptimConfig{
	{Name: OptimSGD, WeightDecay: 0.01},
	{Name: OptimMomentum, Momentum: 0.9},
	{Name: OptimMomentum, Momentum: 0.8, Dampening: 0.3, WeightDecay: 0.05},
	{Name: OptimNesterov, Momentum: 0.9, WeightDecay: 0.01},
	{Name: OptimAdam, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8},
	{Name: OptimAdam, Beta1: 0.8, Beta2: 0.99, Eps: 1e-6, WeightDecay: 0.1},
	{Name: OptimAdamW, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01},
}

func caseName(c OptimConfig) string {
	return c.Name
}

// refStep is an independent float64 implementation of one torch.optim step
// (the brief's formulas, written from torch 1.13's _single_tensor_sgd and
// _single_tensor_adam(w)) on s with gradient g. Besides the new state it
// returns, for every element, the same expressions evaluated on absolute
// values ("mag"): the magnitude that bounds each rounding error of a float32
// evaluation (standard forward error analysis: an expression with K
// roundings differs from its exact value by at most γ_K = Ku/(1−Ku) times
// the expression evaluated on absolute values).
func refStep(c OptimConfig, lr float64, s []float64, g []float32, d int) (out, mag []float64) {
	out, mag = slices.Clone(s), make([]float64, len(s))
	theta := out[:d]
	t := 0.0
	if c.buffers() > 0 {
		t = s[len(s)-1]
	}
	switch c.Name {
	case OptimAdam, OptimAdamW:
		t++
		m, v := out[d:2*d], out[2*d:3*d]
		bc1, bc2 := 1-math.Pow(c.Beta1, t), 1-math.Pow(c.Beta2, t)
		for i := range d {
			p, pm := theta[i], math.Abs(theta[i])
			gi, gm := float64(g[i]), math.Abs(float64(g[i]))
			if c.Name == OptimAdamW {
				p *= 1 - lr*c.WeightDecay
				pm = math.Abs(p)
			} else {
				gi += c.WeightDecay * p
				gm += c.WeightDecay * pm
			}
			mm := c.Beta1*math.Abs(m[i]) + (1-c.Beta1)*gm
			m[i] = c.Beta1*m[i] + (1-c.Beta1)*gi
			v[i] = c.Beta2*v[i] + (1-c.Beta2)*gi*gi
			denom := math.Sqrt(v[i])/math.Sqrt(bc2) + c.Eps
			upd := lr / bc1 * mm / denom
			theta[i] = p - lr/bc1*m[i]/denom
			mag[i], mag[d+i], mag[2*d+i] = pm+upd, mm, v[i]
		}
		out[len(out)-1] = t
	default:
		var buf []float64
		if c.buffers() > 0 {
			buf = out[d : 2*d]
		}
		for i := range d {
			gi := float64(g[i]) + c.WeightDecay*theta[i]
			gm := math.Abs(float64(g[i])) + c.WeightDecay*math.Abs(theta[i])
			if buf != nil && c.Momentum != 0 {
				bm := gm
				if t == 0 {
					buf[i] = gi
				} else {
					bm = c.Momentum*math.Abs(buf[i]) + (1-c.Dampening)*gm
					buf[i] = c.Momentum*buf[i] + (1-c.Dampening)*gi
				}
				mag[d+i] = bm
				if c.Name == OptimNesterov {
					gi += c.Momentum * buf[i]
					gm += c.Momentum * bm
				} else {
					gi, gm = buf[i], bm
				}
			}
			mag[i] = math.Abs(theta[i]) + lr*gm
			theta[i] -= lr * gi
		}
		if c.buffers() > 0 {
			out[len(out)-1] = t + 1
		}
	}
	return out, mag
}

// optimFixture is a small classifier with a random state: θ from He init,
// buffers random (second moments positive), t as given.
func optimFixture(t *testing.T, c OptimConfig, seed uint64, steps float32) (*Optim, []float32, BatchLog) {
	t.Helper()
	d := synthetic(64, 6, 4, true, seed)
	m := mustModel(t, "mlp:9x2", 6, 4)
	log := randomLog(d.N, 5, 40, seed)
	o, err := NewOptim(m, CrossEntropy, d, 0.05, c, log)
	if err != nil {
		t.Fatal(err)
	}
	s := make([]float32, o.Dim())
	copy(s, initTheta(t, m, "", seed))
	r := newRNG(seed, 7, 0)
	for i := m.Dim(); i < len(s)-1; i++ {
		s[i] = float32(0.1 * r.normal())
		if c.buffers() == 2 && i >= 2*m.Dim() {
			s[i] = float32(0.01 * r.uniform(0, 1))
		}
	}
	if c.buffers() > 0 {
		s[len(s)-1] = steps
	}
	return o, s, log
}

// TestOptimAgainstFloat64 compares one float32 step (gradient and update)
// with the float64 reference fed the same gradient, element by element,
// within the forward-error bound γ_K·mag. K counts the float32 roundings on
// the longest chain of an element's update (Adam: 7 scalar conversions,
// 3 for m, 4 for v, sqrt, the division by √bc2, + eps, the product with the
// step size, the division, the final addition: 20), doubled for margin
// against the counting; the reference's own float64 error is 2^-29 times
// smaller and ignored. From t = 0 and from t = 3 (buffers present).
func TestOptimAgainstFloat64(t *testing.T) {
	const u = 1.0 / (1 << 24)
	const K = 40
	gamma := K * u / (1 - K*u)
	for ci, c := range optimCases {
		for _, t0 := range []float32{0, 3} {
			seed := uint64(100 + ci)
			o, s, log := optimFixture(t, c, seed, t0)
			d := o.ThetaDim()
			g := make([]float32, d)
			o.SGD().Gradient(g, s[:d], log[0])
			s64 := make([]float64, len(s))
			for i, v := range s {
				s64[i] = float64(v)
			}
			want, mag := refStep(c, o.SGD().LR(), s64, g, d)
			o.Step(s, log[0])
			bad := 0
			for i, v := range s {
				if diff := math.Abs(float64(v) - want[i]); !(diff <= gamma*mag[i]) {
					if bad < 3 {
						t.Errorf("%s t=%v: s[%d] = %v, float64 reference %v (diff %.3g > bound %.3g)", caseName(c), t0, i, v, want[i], diff, gamma*mag[i])
					}
					bad++
				}
			}
			if c.buffers() > 0 && float64(s[len(s)-1]) != want[len(want)-1] {
				t.Errorf("%s t=%v: step count %v, want %v", caseName(c), t0, s[len(s)-1], want[len(want)-1])
			}
		}
	}
}

// TestOptimStepCount checks that t counts the steps and that the first
// momentum step sets the buffer to the gradient, without dampening (torch's
// "buffer is None").
func TestOptimStepCount(t *testing.T) {
	for ci, c := range optimCases {
		if c.buffers() == 0 {
			continue
		}
		o, s, _ := optimFixture(t, c, uint64(200+ci), 0)
		for k := 1; k <= 5; k++ {
			o.Apply(k, s)
			if s[len(s)-1] != float32(k) {
				t.Fatalf("%s: after %d steps t = %v", caseName(c), k, s[len(s)-1])
			}
		}
	}
	c := OptimConfig{Name: OptimMomentum, Momentum: 0.9, Dampening: 0.5}
	o, s, log := optimFixture(t, c, 7, 0)
	d := o.ThetaDim()
	g := make([]float32, d)
	o.SGD().Gradient(g, s[:d], log[0])
	o.Step(s, log[0])
	if !slices.Equal(s[d:2*d], g) {
		t.Errorf("first momentum step: buffer is not the gradient")
	}
}

// TestOptimBiasCorrectionFromState applies the same T_k to the same θ and
// buffers with t = 0 and t = 5: Adam's bias correction (and momentum's
// first-step rule) must make them differ, and each must be what the
// reference gives for its own t, whatever k.
func TestOptimBiasCorrectionFromState(t *testing.T) {
	for _, c := range []OptimConfig{optimCases[4], optimCases[6], optimCases[1]} {
		o, s0, _ := optimFixture(t, c, 31, 0)
		s5 := slices.Clone(s0)
		s5[len(s5)-1] = 5
		o.Apply(3, s0)
		o.Apply(3, s5)
		d := o.ThetaDim()
		if slices.Equal(s0[:d], s5[:d]) {
			t.Errorf("%s: θ after T_3 from t=0 and t=5 are equal: the step count is ignored", c.Name)
		}
		// And k does not enter: T_3 from t = 5 equals T_j with the same
		// batch from t = 5.
		o2, s, log := optimFixture(t, c, 31, 5)
		o2.Step(s, log[2])
		if !slices.Equal(s, s5) {
			t.Errorf("%s: Step with batch 3 differs from Apply(3)", c.Name)
		}
	}
}

// TestOptimPure applies the same (k, s) from clones on several goroutines
// and from the original: every result must be bitwise the sequential one.
func TestOptimPure(t *testing.T) {
	for ci, c := range optimCases {
		o, s0, _ := optimFixture(t, c, uint64(300+ci), 2)
		want := slices.Clone(s0)
		for k := 1; k <= 10; k++ {
			o.Apply(k, want)
		}
		got := make([][]float32, 4)
		var wg sync.WaitGroup
		for w := range got {
			wg.Go(func() {
				oc := o.Clone()
				s := slices.Clone(s0)
				for k := 1; k <= 10; k++ {
					oc.Apply(k, s)
				}
				got[w] = s
			})
		}
		wg.Wait()
		for w := range got {
			if !slices.Equal(got[w], want) {
				t.Errorf("%s: goroutine %d differs from the sequential chain", caseName(c), w)
			}
		}
	}
}

// TestOptimPlainIsSGD checks that plain SGD through Optim is SGD's step
// bitwise (the existing golden and bitwise tests rely on it) and that its
// state is θ alone.
func TestOptimPlainIsSGD(t *testing.T) {
	o, s, _ := optimFixture(t, OptimConfig{Name: OptimSGD}, 11, 0)
	if o.Dim() != o.ThetaDim() {
		t.Fatalf("plain SGD state %d, θ %d", o.Dim(), o.ThetaDim())
	}
	want := slices.Clone(s)
	for k := 1; k <= 10; k++ {
		o.Apply(k, s)
		o.SGD().Apply(k, want)
	}
	if !slices.Equal(s, want) {
		t.Error("plain Optim differs from SGD")
	}
	if o.IsAffine() != o.SGD().IsAffine() {
		t.Error("plain Optim's IsAffine differs from SGD's")
	}
}

// TestOptimStateTensors checks the layout rule of docs/protocol.md.
func TestOptimStateTensors(t *testing.T) {
	m := mustModel(t, "mlp:3", 2, 2) // 0.weight [3 2], 0.bias [3], 2.weight [2 3], 2.bias [2]: 17
	params := m.Tensors()
	ts := OptimConfig{Name: OptimAdam}.StateTensors(params)
	want := []string{
		"optim.state.0.exp_avg", "optim.state.1.exp_avg", "optim.state.2.exp_avg", "optim.state.3.exp_avg",
		"optim.state.0.exp_avg_sq", "optim.state.1.exp_avg_sq", "optim.state.2.exp_avg_sq", "optim.state.3.exp_avg_sq",
		"optim.step",
	}
	off := m.Dim()
	for i, tt := range ts {
		if tt.Name != want[i] || tt.Offset != off {
			t.Errorf("tensor %d: %s at %d, want %s at %d", i, tt.Name, tt.Offset, want[i], off)
		}
		if i < 8 && !slices.Equal(tt.Shape, params[i%4].Shape) {
			t.Errorf("%s: shape %v, want %v", tt.Name, tt.Shape, params[i%4].Shape)
		}
		off += tt.Size()
	}
	if off != m.Dim()+int((OptimConfig{Name: OptimAdam}).StateLen(int64(m.Dim()))) || off != 3*17+1 {
		t.Errorf("tensors end at %d, want %d", off, 3*17+1)
	}
	mt := OptimConfig{Name: OptimNesterov}.StateTensors(params)
	if len(mt) != 5 || mt[0].Name != "optim.state.0.momentum_buffer" || mt[4].Name != "optim.step" || len(mt[4].Shape) != 0 {
		t.Errorf("nesterov tensors %v", mt)
	}
	if (OptimConfig{Name: OptimSGD, WeightDecay: 1}).StateTensors(params) != nil {
		t.Error("sgd has optimizer state tensors")
	}
}

func TestOptimValidate(t *testing.T) {
	bad := []OptimConfig{
		{Name: "rmsprop"},
		{Name: OptimMomentum, Momentum: -1},
		{Name: OptimNesterov, Momentum: 0},
		{Name: OptimNesterov, Momentum: 0.9, Dampening: 0.1},
		{Name: OptimAdam, Beta1: 1, Beta2: 0.9},
		{Name: OptimAdam, Beta1: 0.9, Beta2: -0.1},
		{Name: OptimAdamW, Beta1: 0.9, Beta2: 0.9, Eps: -1},
		{Name: OptimSGD, WeightDecay: math.NaN()},
	}
	for _, c := range bad {
		if c.Validate() == nil {
			t.Errorf("%+v: valid", c)
		}
	}
	for _, c := range optimCases {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

// TestOptimFusedIsUnfused: StepLoss fuses the update into the backward
// pass layer by layer; its bits must be those of Gradient then Update, on
// a model of several layers, for every optimizer, and for the scalar and
// linear models (one layer, the scalar's weight at offset 0).
func TestOptimFusedIsUnfused(t *testing.T) {
	for ci, c := range append(optimCases, OptimConfig{Name: OptimMomentum, Momentum: 0}) {
		for _, t0 := range []float32{0, 4} {
			o, s, log := optimFixture(t, c, uint64(400+ci), t0)
			want := slices.Clone(s)
			g := make([]float32, o.ThetaDim())
			for k := range 5 {
				lw := o.SGD().Gradient(g, want[:o.ThetaDim()], log[k])
				o.Update(want, g)
				if l := o.StepLoss(s, log[k]); l != lw || !slices.Equal(s, want) {
					t.Fatalf("%s t0=%v step %d: fused step differs from Gradient+Update", caseName(c), t0, k+1)
				}
			}
		}
	}
	for _, spec := range []string{"scalar", "linear"} {
		d := synthetic(20, 3, 1, false, 5)
		m := mustModel(t, spec, 3, 1)
		o, err := NewOptim(m, MSE, d, 0.1, optimCases[4], nil)
		if err != nil {
			t.Fatal(err)
		}
		s := make([]float32, o.Dim())
		copy(s, initTheta(t, m, "", 5))
		want := slices.Clone(s)
		g := make([]float32, o.ThetaDim())
		o.SGD().Gradient(g, want[:o.ThetaDim()], []int32{1, 2, 3})
		o.Update(want, g)
		o.Step(s, []int32{1, 2, 3})
		if !slices.Equal(s, want) {
			t.Errorf("%s: fused step differs", spec)
		}
	}
}
