// Package nnfamily is the built-in model family: package nn's MLPs, linear
// and scalar models, losses, data sets and optimizers (nn.Optim: SGD,
// momentum, Nesterov, Adam, AdamW on the state (θ, buffers, t)), behind the scheduler's
// model-family seam (package family). replayd registers it in
// scheduler.Options.Families; the scheduler never calls nn itself.
//
// It is its own package rather than a file of nn so that nn stays a plain
// numerical library that knows nothing of the seam, and so that the seam's
// knowledge of nn's data sets, sizes and scratch (the admission estimate)
// sits in one place beside the adapter that creates them.
//
// Invariants: every number is what nn computes (the adapter adds no
// arithmetic), so runs are bitwise those of nn; Resolve and the size
// estimate load no data and allocate nothing of the model's size.
// Concurrency: Family and its Models are read-only and safe for concurrent
// use; Operators and Measurers belong to one goroutine each.
package nnfamily

import (
	"fmt"
	"slices"
	"strings"

	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/internal/echo"
	"github.com/replay-sgd/replay/nn"
	"github.com/replay-sgd/replay/replay"
)

// Family is the built-in family. The zero value is ready.
type Family struct{}

// New returns the built-in family.
func New() Family { return Family{} }

var (
	_ family.Family       = Family{}
	_ family.ProcReserver = Family{}
)

// ReserveProc implements family.ProcReserver with nn.ReserveProc (an
// extra P per worker with the OpenBLAS backend, nothing with pure Go).
func (Family) ReserveProc() (release func()) { return nn.ReserveProc() }

// Datasets lists the data sets of the family, in the order errors name them.
var Datasets = []string{"fashion-mnist", "regression-sin", "regression-x2", "regression-abs", "quadratic"}

// dataSizes are the sizes of a data set's splits and what the loaded data
// set holds in memory (nn.Dataset: Fashion-MNIST's pixels as bytes, float32
// elsewhere, one-hot targets and labels).
type dataSizes struct {
	in, out, train, test int
	bytes                int64
}

func dataSizesOf(name string) (dataSizes, bool) {
	var d dataSizes
	switch name {
	case "fashion-mnist":
		d = dataSizes{in: 784, out: 10, train: 60000, test: 10000}
		n := int64(d.train + d.test)
		d.bytes = n*int64(d.in) + 4*n*int64(d.out) + 4*n
		return d, true
	case "regression-sin", "regression-x2", "regression-abs":
		d = dataSizes{in: 1, out: 1, train: nn.RegressionN, test: nn.RegressionN}
	case "quadratic":
		d = dataSizes{in: 0, out: 1, train: nn.QuadraticN, test: nn.QuadraticN}
	default:
		return d, false
	}
	n := int64(d.train + d.test)
	d.bytes = 4 * n * int64(d.in+d.out)
	return d, true
}

// evalChunk is nn's evaluation chunk: an evaluator's scratch holds at most
// this many samples.
const evalChunk = 256

// Name implements family.Family.
func (Family) Name() string { return "nn" }

// Knows implements family.Family: linear, scalar and mlp:<widths>.
func (Family) Knows(model string) bool {
	return model == "linear" || model == "scalar" || strings.HasPrefix(model, "mlp:")
}

// Resolve implements family.Family.
func (Family) Resolve(s *family.Spec) (family.Size, []string) {
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	d, okData := dataSizesOf(s.Dataset)
	if s.Dataset != "" && !okData {
		bad("dataset %q: want fashion-mnist, regression-sin, regression-x2, regression-abs or quadratic", echo.Clip(s.Dataset))
	}
	if s.DataPath != "" && s.Dataset != "fashion-mnist" {
		bad("data_path applies to fashion-mnist only")
	}
	// The size is counted from the spec, without building the model.
	var sz nn.SpecSize
	if s.Model != "" && okData {
		var err error
		if sz, err = nn.SizeOf(s.Model, d.in, d.out); err != nil {
			bad("%v", err)
		}
	}
	if s.Init == "" {
		s.Init = nn.InitHe
	}
	if !slices.Contains([]string{nn.InitHe, nn.InitLeCun, nn.InitGlorot, nn.InitTorch}, s.Init) {
		bad("init %q: want he, lecun, glorot or torch", echo.Clip(s.Init))
	}
	if s.Loss == "" && s.Model != "" && s.Dataset != "" {
		s.Loss = nn.DefaultLoss(s.Model, s.Dataset)
	}
	if s.Loss != "" {
		if _, err := nn.ParseLoss(s.Loss); err != nil {
			bad("loss %q: want cross-entropy, mse or quadratic", echo.Clip(s.Loss))
		} else if s.Loss == "cross-entropy" && okData && d.out < 2 {
			bad("loss cross-entropy needs a classification data set, %s has one output", s.Dataset)
		}
	}
	if len(problems) > 0 || !okData {
		return family.Size{}, problems
	}
	oc := optimConfig(s.Optim)
	if err := oc.Validate(); err != nil {
		return family.Size{}, []string{strings.TrimSuffix(err.Error(), ": "+nn.ErrSpec.Error())}
	}
	evalTrain, evalTest := evalSamples(s.EvalSize, d.train), evalSamples(s.EvalSize, d.test)
	// Scratch of one goroutine: an SGD engine over a batch and two
	// evaluators over ≤ evalChunk samples, each a few activations wide.
	width := int64(d.in) + 2*sz.Units
	size := family.Size{
		// The whole state: θ, then the optimizer's buffers and step count.
		Params: sz.Params + oc.StateLen(sz.Params), Train: d.train, Test: d.test, Outputs: d.out,
		DataBytes:    d.bytes + 4*(evalTrain+evalTest),
		ScratchBytes: 4 * width * (int64(max(s.Batch, 0)) + min(evalChunk, evalTrain) + min(evalChunk, evalTest)),
	}
	if !oc.Plain() {
		// nn.Optim materialises the gradient (plain SGD writes it into θ).
		size.ScratchBytes += 4 * sz.Params
	}
	if rows, cols, affine := affineShape(s.Model, s.Loss, d); affine && oc.Plain() {
		// replay.AffinePrefix: x, v, res (rows×cols) and a (cols×cols),
		// float64.
		size.MemoBytes = 8 * (3*rows*cols + cols*cols)
	} else if affine && (oc.Name == nn.OptimMomentum || oc.Name == nn.OptimNesterov) {
		size.MemoBytes = replay.MomentumPrefixBytes(int(rows), int(cols))
	}
	return size, nil
}

// optimConfig is nn's form of the family's optimizer ("" is sgd).
func optimConfig(o family.Optimizer) nn.OptimConfig {
	return nn.OptimConfig{
		Name: o.Name, Momentum: o.Momentum, Dampening: o.Dampening,
		Beta1: o.Beta1, Beta2: o.Beta2, Eps: o.Eps, WeightDecay: o.WeightDecay,
	}
}

// affineShape is nn.SGD.AffineShape from the spec: whether the operators
// are affine and the matrix view of θ.
func affineShape(model, loss string, d dataSizes) (rows, cols int64, affine bool) {
	if loss != "mse" && loss != "quadratic" {
		return 0, 0, false
	}
	switch model {
	case "scalar":
		return 1, 1, true
	case "linear":
		return int64(d.out), int64(d.in) + 1, true
	}
	return 0, 0, false
}

// evalSamples is the size of nn.FixedSubset(n, size, ·).
func evalSamples(size, n int) int64 {
	if size <= 0 || size >= n {
		return int64(n)
	}
	return int64(size)
}

// DataKey implements family.Family: Fashion-MNIST does not depend on the
// seed but on its directory, the synthetic data sets on the seed only.
func (Family) DataKey(s family.Spec) string {
	if s.Dataset == "fashion-mnist" {
		return fmt.Sprintf("%s\x00%s", s.Dataset, s.DataPath)
	}
	return fmt.Sprintf("%s\x00%d", s.Dataset, s.Seed)
}

// data is a loaded data set: its two splits.
type data struct{ train, test *nn.Dataset }

// LoadData implements family.Family (nn opens regular files only, so a
// FIFO is an error, not a hang).
func (Family) LoadData(s family.Spec) (family.Data, error) {
	train, test, err := nn.LoadDataset(s.Dataset, s.DataPath, s.Seed)
	if err != nil {
		return nil, err
	}
	return data{train, test}, nil
}

// Model is a built-in model over its data.
type Model struct {
	m                 *nn.Model
	optim             nn.OptimConfig
	loss              nn.Loss
	spec              family.Spec
	train, test       *nn.Dataset
	trainIdx, testIdx []int32
}

var _ family.Model = (*Model)(nil)

// Open implements family.Family.
func (Family) Open(s family.Spec, d family.Data) (family.Model, error) {
	dd, ok := d.(data)
	if !ok {
		return nil, fmt.Errorf("nnfamily: data of type %T", d)
	}
	m, err := nn.NewModel(s.Model, dd.train.In, dd.train.Out)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", echo.Clip(s.Model), err)
	}
	loss, err := nn.ParseLoss(s.Loss)
	if err != nil {
		return nil, err
	}
	if s.Batch < 1 || s.Batch > dd.train.N {
		return nil, fmt.Errorf("batch %d not in [1, %d training samples]", s.Batch, dd.train.N)
	}
	oc := optimConfig(s.Optim)
	if err := oc.Validate(); err != nil {
		return nil, err
	}
	return &Model{
		m: m, optim: oc, loss: loss, spec: s, train: dd.train, test: dd.test,
		trainIdx: nn.FixedSubset(dd.train.N, s.EvalSize, s.Seed),
		testIdx:  nn.FixedSubset(dd.test.N, s.EvalSize, s.Seed),
	}, nil
}

// NN is the underlying nn model (for tests and tools that need nn itself).
func (m *Model) NN() *nn.Model { return m.m }

// Dim implements family.Model: θ, then the optimizer's state.
func (m *Model) Dim() int { return m.m.Dim() + int(m.optim.StateLen(int64(m.m.Dim()))) }

// ThetaDim implements family.Model: the model's parameters.
func (m *Model) ThetaDim() int { return m.m.Dim() }

// Layout implements family.Model: nn's named tensors (PyTorch's state-dict
// keys), then the optimizer's (nn.OptimConfig.StateTensors: the layout rule
// of docs/protocol.md; none for sgd).
func (m *Model) Layout() []family.Tensor {
	ts := m.m.Tensors()
	ts = append(ts, m.optim.StateTensors(ts)...)
	out := make([]family.Tensor, len(ts))
	for i, t := range ts {
		out[i] = family.Tensor{Name: t.Name, Shape: t.Shape}
	}
	return out
}

// Init implements family.Model: θ_0, then zero buffers and t = 0.
func (m *Model) Init(dst []float32) error {
	if len(dst) != m.Dim() {
		return fmt.Errorf("nnfamily: Init: state of %d, want %d", len(dst), m.Dim())
	}
	clear(dst[m.m.Dim():])
	return m.m.Init(dst[:m.m.Dim()], m.spec.Init, m.spec.Seed)
}

// Operators implements family.Model: nn.Optim, the optimizer's steps at
// the spec's learning rate (plain SGD: nn.SGD's step, bitwise).
func (m *Model) Operators(b family.Batches) (family.Operators, error) {
	o, err := nn.NewOptim(m.m, m.loss, m.train, m.spec.LR, m.optim, b)
	if err != nil {
		return nil, err
	}
	return ops{o}, nil
}

// Measurer implements family.Model: the losses on the fixed subsets.
func (m *Model) Measurer() family.Measurer {
	return measurer{
		train: nn.NewEvaluator(m.m, m.loss, m.train, m.trainIdx),
		test:  nn.NewEvaluator(m.m, m.loss, m.test, m.testIdx),
	}
}

// ops adapts nn.Optim (whose Clone returns *nn.Optim) to
// family.Operators.
type ops struct{ *nn.Optim }

func (o ops) Clone() family.Operators { return ops{o.Optim.Clone()} }

// Affine is the exact affine memo for plain SGD on an affine model only
// (its state is θ alone, so nn.SGD's affine form is the operator's); the
// other optimizers use the coalescence memo.
func (o ops) Affine() (replay.AffineOperators, bool) {
	if o.Optim.IsAffine() {
		return o.Optim.SGD(), true
	}
	return nil, false
}

// MomentumAffine is the exact memo for heavy-ball momentum and Nesterov
// on an affine model (least squares, the scalar quadratic): affine in
// (θ, buf), composed by replay.MomentumPrefix; false otherwise (and for
// settings replay refuses, such as dampening 1), where memo uses the
// coalescence memo.
func (o ops) MomentumAffine() (replay.MomentumAffineOperators, bool) {
	c := o.Optim.Config()
	if (c.Name != nn.OptimMomentum && c.Name != nn.OptimNesterov) || !o.Optim.SGD().IsAffine() {
		return nil, false
	}
	return replay.AsMomentumAffine(momentumOps(o))
}

// momentumOps is nn.Optim seen as replay.MomentumAffineOperators: the
// gradient's low-rank data is nn.SGD's affine step at the same rate (nn
// does not import replay, so the adapter lives here).
type momentumOps struct{ *nn.Optim }

func (o momentumOps) AffineShape() (rows, cols int)       { return o.SGD().AffineShape() }
func (o momentumOps) Pack(dst []float64, theta []float32) { o.SGD().Pack(dst, theta) }
func (o momentumOps) Unpack(dst []float32, m []float64)   { o.SGD().Unpack(dst, m) }
func (o momentumOps) MomentumStep(k int) (u []float64, b int, c float64, off []float64) {
	return o.SGD().AffineStep(k)
}
func (o momentumOps) MomentumSettings() replay.MomentumSettings {
	c := o.Config()
	return replay.MomentumSettings{
		LR: o.SGD().LR(), Momentum: c.Momentum, Dampening: c.Dampening,
		WeightDecay: c.WeightDecay, Nesterov: c.Name == nn.OptimNesterov,
	}
}

type measurer struct{ train, test *nn.Evaluator }

func (e measurer) Measure(theta []float32) (trainLoss, testLoss, testAcc float64) {
	trainLoss, _ = e.train.Eval(theta)
	testLoss, testAcc = e.test.Eval(theta)
	return trainLoss, testLoss, testAcc
}

// Sampler implements family.Family: nn's sampler, the daemon's batch
// schedule.
func (Family) Sampler(n, batch int, seed uint64) family.Sampler {
	return nn.NewSampler(n, batch, seed)
}
