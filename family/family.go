// Package family is the model-family seam: what the scheduler needs of a
// model, whichever family provides it. The scheduler reaches models only
// through these interfaces; nnfamily adapts the built-in Go MLPs (package
// nn); an external process speaking the operator protocol (DESIGN §4) will
// be another family. A daemon registers its families in
// scheduler.Options.Families.
//
// The seam's types live in this leaf package, not in the scheduler, so
// that a family's adapter implements them without importing the scheduler
// (Go matches method signatures by type identity) and the scheduler's own
// tests can run the built-in family without an import cycle.
//
// Invariants every family keeps:
//   - Determinism: Init, the operators and the measures are pure functions
//     of the Spec, the data and their arguments, bit for bit, whatever the
//     goroutine: resumed runs are bitwise identical to uninterrupted ones.
//   - The state layout is fixed by the Spec: parameter tensors first, then
//     the optimizer's state tensors (none for plain SGD, DESIGN §5); they
//     tile the flat state vector 0..Dim in order.
//   - Resolve and Size load no data and allocate nothing of the model's
//     size: a spec of a trillion parameters costs nothing to refuse.
//
// Concurrency contract: a Family and a Model are safe for concurrent use
// (read-only after construction). Operators and Measurer values are not:
// each goroutine takes its own (Model.Operators, Operators.Clone,
// Model.Measurer). Data is read-only and shared by every run of its key.
package family

import "github.com/replay-sgd/replay/replay"

// Spec is what a family reads of a run's configuration.
type Spec struct {
	Model, Init, Loss, Dataset string
	// DataPath is the data set's directory ("" for the family's default).
	DataPath string
	LR       float64
	Batch    int
	Seed     uint64
	// EvalSize is the size of the fixed evaluation subsets (0: the whole
	// split).
	EvalSize int
	// Optim is the optimizer whose steps are the operators T_k (DESIGN §5).
	Optim Optimizer
}

// Optimizer names the optimizer of a run and its settings, with
// torch.optim's definitions (SGD with momentum, dampening, nesterov and
// weight_decay; Adam; AdamW). Name "" and "sgd" are plain SGD (with
// weight decay if WeightDecay > 0). The scheduler resolves the defaults
// before a family sees it, so every field a family reads is explicit.
type Optimizer struct {
	// Name is sgd, momentum, nesterov, adam or adamw.
	Name string
	// Momentum and Dampening are torch.optim.SGD's (momentum, nesterov).
	Momentum, Dampening float64
	// Beta1, Beta2 and Eps are torch.optim.Adam's and AdamW's.
	Beta1, Beta2, Eps float64
	// WeightDecay is every optimizer's (AdamW's decoupled decay).
	WeightDecay float64
}

// Tensor is one tensor of a model's state layout: its name (PyTorch's
// state-dict key for the built-in MLPs) and shape. Its place in the flat
// state vector follows from the order of the layout.
type Tensor struct {
	Name  string
	Shape []int
}

// Elems is the number of elements of t.
func (t Tensor) Elems() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Size is what admission control and validation need of a spec, known
// without loading data or building the model.
type Size struct {
	// Params is the length of the flat state vector (parameters and
	// optimizer state).
	Params int64
	// Train and Test are the sizes of the data set's splits; Outputs the
	// model's output width (the classes of a classification data set).
	Train, Test, Outputs int
	// DataBytes is what the loaded data set and the run's evaluation
	// subsets hold in memory.
	DataBytes int64
	// ScratchBytes is one goroutine's scratch: its operators over one
	// batch and its measurer.
	ScratchBytes int64
	// MemoBytes is what an exact affine memo (replay.AffinePrefix) of the
	// operators holds besides its start vector; 0 when the operators are
	// not affine (the memo strategy then uses the coalescence memo under
	// the scheduler's budget).
	MemoBytes int64
}

// Data is a loaded data set, opaque to the scheduler.
type Data any

// Family is a model family.
type Family interface {
	// Name names the family in logs and errors.
	Name() string
	// Knows reports whether model names a model of this family (by its
	// form only: Resolve validates it).
	Knows(model string) bool
	// Resolve fills the family's defaults of spec (Init, Loss) and checks
	// its model, data set, init, loss and batch, returning every problem
	// (short phrases, the spec's strings clipped) or the spec's Size.
	Resolve(spec *Spec) (Size, []string)
	// DataKey identifies the data a spec loads: runs with equal keys share
	// one load.
	DataKey(spec Spec) string
	// LoadData loads spec's data set. It may block on the file system; the
	// scheduler calls it outside its locks and bounds the wait.
	LoadData(spec Spec) (Data, error)
	// Open builds spec's model over data from LoadData of the same key.
	Open(spec Spec, data Data) (Model, error)
	// Sampler is the batch schedule of a run over n training samples:
	// batches are a pure function of (n, batch, seed), the same for every
	// family (the daemon keeps the batch log, DESIGN §4).
	Sampler(n, batch int, seed uint64) Sampler
}

// ProcReserver is an optional capability of a Family whose operators spend
// nearly all their time in C calls (cgo BLAS). The Go runtime takes the P of
// a goroutine in a C call away whenever no other P is idle, so with one
// worker per core every call of every worker loses its P (nn.ReserveProc
// has the measurements). Each of the scheduler's worker goroutines calls
// ReserveProc once for its lifetime and the returned release when it stops.
// It must change no computed number.
type ProcReserver interface {
	ReserveProc() (release func())
}

// Model is one run's model over its data. Safe for concurrent use.
type Model interface {
	// Dim is the length of the flat state vector.
	Dim() int
	// ThetaDim is the length of the model's own state θ (parameters and,
	// for external models, buffers such as BatchNorm's running statistics):
	// the prefix of the state vector that norms, step distances, measures
	// and the default export use. Dim − ThetaDim is the optimizer's state.
	ThetaDim() int
	// Layout lists the state's tensors: parameters, then optimizer state.
	Layout() []Tensor
	// Init writes the initial state θ_0 of the spec's init scheme and seed.
	Init(dst []float32) error
	// Operators returns the SGD operators T_k over the run's batch log.
	Operators(batches Batches) (Operators, error)
	// Measurer returns a measurer over the fixed evaluation subsets.
	Measurer() Measurer
}

// Batches is a run's batch log: the training indices of step k ≥ 1. Safe
// for concurrent use.
type Batches interface {
	Batch(k int) []int32
}

// Sampler computes a run's batches. Not safe for concurrent use.
type Sampler interface {
	StepsPerEpoch() int
	// Batch writes the batch of step ≥ 1 into dst[:batch].
	Batch(step int, dst []int32)
}

// Operators are a run's operators for one goroutine.
type Operators interface {
	replay.Operators
	// Clone returns independent operators (own scratch) over the same
	// model, data and batches, for another goroutine.
	Clone() Operators
	// Step applies one operator step with an explicit batch (Verify
	// re-executes the stored batch log with it).
	Step(theta []float32, batch []int32)
	// Affine returns the operators' affine capability (the exact memoized
	// prefix), or false when the T_k are not affine in θ.
	Affine() (replay.AffineOperators, bool)
}

// Measurer evaluates a state on the run's fixed subsets. Not safe for
// concurrent use.
type Measurer interface {
	// Measure returns the training loss, the test loss and the test
	// accuracy (NaN for regression) of theta.
	Measure(theta []float32) (trainLoss, testLoss, testAcc float64)
}
