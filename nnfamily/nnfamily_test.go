package nnfamily

import (
	"math"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/nn"
	"github.com/replay-sgd/replay/replay"
)

// specs covers every data set of the family and each kind of model.
var specs = []family.Spec{
	{Model: "mlp:5x2", Dataset: "regression-sin", LR: 0.01, Batch: 10, Seed: 3},
	{Model: "linear", Dataset: "regression-x2", LR: 0.01, Batch: 7, Seed: 4, EvalSize: 20},
	{Model: "scalar", Dataset: "quadratic", LR: 0.1, Batch: 1, Seed: 5},
	{Model: "mlp:4", Dataset: "regression-abs", Loss: "mse", Init: nn.InitTorch, LR: 0.01, Batch: 3, Seed: 6},
	{Model: "mlp:3", Dataset: "fashion-mnist", LR: 0.001, Batch: 8, Seed: 1, EvalSize: 50},
}

func open(t *testing.T, s family.Spec) (family.Spec, family.Size, family.Model, data) {
	t.Helper()
	f := New()
	size, problems := f.Resolve(&s)
	if len(problems) > 0 {
		t.Fatalf("Resolve(%+v): %v", s, problems)
	}
	d, err := f.LoadData(s)
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.Open(s, d)
	if err != nil {
		t.Fatal(err)
	}
	return s, size, m, d.(data)
}

// The size Resolve counts without data is the opened model's and data
// set's, and the layout tiles the state as nn lays out its parameters.
func TestSizeMatchesOpened(t *testing.T) {
	for _, s := range specs {
		s, size, m, d := open(t, s)
		if size.Params != int64(m.Dim()) || size.Train != d.train.N || size.Test != d.test.N || size.Outputs != d.train.Out {
			t.Errorf("%s on %s: size %+v, opened dim %d, splits %d/%d, outputs %d", s.Model, s.Dataset, size, m.Dim(), d.train.N, d.test.N, d.train.Out)
		}
		off := 0
		for i, x := range m.Layout() {
			if want := m.(*Model).NN().Tensors()[i]; want.Offset != off || want.Name != x.Name {
				t.Errorf("%s tensor %d: %s at %d, nn has %s at %d", s.Model, i, x.Name, off, want.Name, want.Offset)
			}
			off += x.Elems()
		}
		if off != m.Dim() {
			t.Errorf("%s: layout covers %d of %d", s.Model, off, m.Dim())
		}
		if affine := size.MemoBytes > 0; affine != (s.Model == "linear" || s.Model == "scalar") {
			t.Errorf("%s with %s: MemoBytes %d", s.Model, s.Loss, size.MemoBytes)
		}
	}
}

// The adapter adds no arithmetic: init, operators (and their clones) and
// measures are nn's, bit for bit.
func TestBitwiseNN(t *testing.T) {
	for _, s := range specs {
		s, _, m, d := open(t, s)
		nm := m.(*Model).NN()
		got, want := make([]float32, m.Dim()), make([]float32, m.Dim())
		if err := m.Init(got); err != nil {
			t.Fatal(err)
		}
		if err := nm.Init(want, s.Init, s.Seed); err != nil {
			t.Fatal(err)
		}
		sampler := nn.NewSampler(d.train.N, s.Batch, s.Seed)
		log := make(nn.BatchLog, 6)
		for k := range log {
			log[k] = make([]int32, s.Batch)
			sampler.Batch(k+1, log[k])
		}
		ops, err := m.Operators(log)
		if err != nil {
			t.Fatal(err)
		}
		loss, _ := nn.ParseLoss(s.Loss)
		sgd, err := nn.NewSGD(nm, loss, d.train, s.LR, log)
		if err != nil {
			t.Fatal(err)
		}
		clone := ops.Clone()
		for k := 1; k <= 6; k++ {
			if k%2 == 0 {
				ops.Apply(k, got)
			} else {
				clone.Apply(k, got)
			}
			sgd.Apply(k, want)
		}
		same(t, s.Model, got, want)
		if _, affine := ops.Affine(); affine != sgd.IsAffine() {
			t.Errorf("%s: Affine %v, nn %v", s.Model, affine, sgd.IsAffine())
		}
		tl, vl, va := m.Measurer().Measure(got)
		wl, _ := nn.NewEvaluator(nm, loss, d.train, nn.FixedSubset(d.train.N, s.EvalSize, s.Seed)).Eval(want)
		wv, wa := nn.NewEvaluator(nm, loss, d.test, nn.FixedSubset(d.test.N, s.EvalSize, s.Seed)).Eval(want)
		for i, p := range [][2]float64{{tl, wl}, {vl, wv}, {va, wa}} {
			if math.Float64bits(p[0]) != math.Float64bits(p[1]) {
				t.Errorf("%s measure %d = %v, nn %v", s.Model, i, p[0], p[1])
			}
		}
	}
}

func same(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: θ[%d] = %v, nn %v", what, i, got[i], want[i])
		}
	}
}

// Resolve fills nn's defaults, and refuses what nn cannot build, naming it,
// without loading anything.
func TestResolve(t *testing.T) {
	f := New()
	s := family.Spec{Model: "linear", Dataset: "regression-sin"}
	if _, p := f.Resolve(&s); len(p) > 0 || s.Init != nn.InitHe || s.Loss != "mse" {
		t.Errorf("defaults: %+v %v", s, p)
	}
	for _, tc := range []struct {
		spec family.Spec
		want string
	}{
		{family.Spec{Model: "mlp:3", Dataset: "mnist"}, `dataset "mnist"`},
		{family.Spec{Model: "mlp:3", Dataset: "quadratic", DataPath: "/x"}, "data_path applies to fashion-mnist only"},
		{family.Spec{Model: "mlp:3", Dataset: "regression-sin", Init: "xavier"}, `init "xavier"`},
		{family.Spec{Model: "mlp:3", Dataset: "regression-sin", Loss: "cross-entropy"}, "needs a classification data set"},
		{family.Spec{Model: "mlp:3", Dataset: "regression-sin", Loss: "hinge"}, `loss "hinge"`},
		{family.Spec{Model: "mlp:100000x100000", Dataset: "fashion-mnist"}, "mlp:100000x100000"},
		{family.Spec{Model: "mlp:" + strings.Repeat("9", 10000), Dataset: "fashion-mnist"}, "10004 bytes"},
		{family.Spec{Model: "mlp:3", Dataset: "regression-sin", Init: strings.Repeat("x", 10000)}, "bytes)"},
	} {
		_, p := f.Resolve(&tc.spec)
		if j := strings.Join(p, "; "); !strings.Contains(j, tc.want) || len(j) > 400 {
			t.Errorf("Resolve(%.60v): %.200q, want a short line containing %q", tc.spec, j, tc.want)
		}
	}
	if !f.Knows("mlp:3") || !f.Knows("linear") || !f.Knows("scalar") || f.Knows("toy:1") || f.Knows("") {
		t.Error("Knows")
	}
}

// Runs that load the same data share a key; the seed matters only to the
// synthetic data sets, the directory only to Fashion-MNIST.
func TestDataKey(t *testing.T) {
	f := New()
	k := func(ds, dir string, seed uint64) string {
		return f.DataKey(family.Spec{Dataset: ds, DataPath: dir, Seed: seed})
	}
	if k("fashion-mnist", "/a", 1) != k("fashion-mnist", "/a", 2) || k("fashion-mnist", "/a", 1) == k("fashion-mnist", "/b", 1) {
		t.Error("fashion-mnist key")
	}
	if k("quadratic", "", 1) == k("quadratic", "", 2) || k("quadratic", "", 1) == k("regression-sin", "", 1) {
		t.Error("synthetic key")
	}
}

// TestOptimizerState checks the state of each optimizer: Size.Params and
// Dim count θ, buffers and t; the layout follows θ with the optimizer's
// tensors by the layout rule; Init writes θ_0 then zeros; only plain SGD
// on an affine model has the affine memo (and MemoBytes).
func TestOptimizerState(t *testing.T) {
	for _, c := range []struct {
		opt   family.Optimizer
		state int // elements after θ, for θ of d
		names []string
	}{
		{family.Optimizer{Name: "sgd"}, 0, nil},
		{family.Optimizer{Name: "sgd", WeightDecay: 0.1}, 0, nil},
		{family.Optimizer{Name: "momentum", Momentum: 0.9}, 1, []string{"optim.state.0.momentum_buffer", "optim.state.1.momentum_buffer", "optim.step"}},
		{family.Optimizer{Name: "adamw", Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}, 2,
			[]string{"optim.state.0.exp_avg", "optim.state.1.exp_avg", "optim.state.0.exp_avg_sq", "optim.state.1.exp_avg_sq", "optim.step"}},
	} {
		s := family.Spec{Model: "linear", Dataset: "regression-x2", LR: 0.01, Batch: 7, Seed: 4, Optim: c.opt}
		_, size, m, _ := open(t, s)
		d := m.ThetaDim()
		want := d + c.state*d
		if c.state > 0 {
			want++
		}
		if m.Dim() != want || size.Params != int64(want) || d != 2 {
			t.Errorf("%+v: Dim %d, Size.Params %d, θ %d; want %d", c.opt, m.Dim(), size.Params, d, want)
		}
		layout := m.Layout()
		var names []string
		n := 0
		for i, tt := range layout {
			if i >= 2 {
				names = append(names, tt.Name)
			}
			n += tt.Elems()
		}
		if n != m.Dim() || strings.Join(names, ",") != strings.Join(c.names, ",") {
			t.Errorf("%+v: layout %v covers %d of %d", c.opt, layout, n, m.Dim())
		}
		st := make([]float32, m.Dim())
		for i := range st {
			st[i] = 7
		}
		if err := m.Init(st); err != nil {
			t.Fatal(err)
		}
		theta := make([]float32, d)
		if err := m.(*Model).NN().Init(theta, s.Init, s.Seed); err != nil {
			t.Fatal(err)
		}
		for i, v := range st {
			if i < d && v != theta[i] || i >= d && v != 0 {
				t.Errorf("%+v: Init: s[%d] = %v", c.opt, i, v)
			}
		}
		ops, err := m.Operators(nn.BatchLog{{0, 1, 2, 3, 4, 5, 6}})
		if err != nil {
			t.Fatal(err)
		}
		_, affine := ops.Affine()
		plain := c.opt.Name == "sgd" && c.opt.WeightDecay == 0
		// Heavy ball and Nesterov on the linear model have the exact
		// momentum memo (replay.MomentumPrefix) instead.
		heavy := c.opt.Name == "momentum" || c.opt.Name == "nesterov"
		mom, momAffine := ops.(interface {
			MomentumAffine() (replay.MomentumAffineOperators, bool)
		}).MomentumAffine()
		if affine != plain || momAffine != heavy || (size.MemoBytes > 0) != (plain || heavy) {
			t.Errorf("%+v: affine %v, momentum affine %v, MemoBytes %d", c.opt, affine, momAffine, size.MemoBytes)
		}
		if momAffine {
			rows, cols := mom.AffineShape()
			if want := replay.MomentumPrefixBytes(rows, cols); size.MemoBytes != want {
				t.Errorf("%+v: MemoBytes %d, the momentum prefix holds %d", c.opt, size.MemoBytes, want)
			}
		}
		ops.Apply(1, st)
		if c.state > 0 && st[len(st)-1] != 1 {
			t.Errorf("%+v: step count after one step %v", c.opt, st[len(st)-1])
		}
	}
}
