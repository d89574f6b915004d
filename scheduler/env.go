package scheduler

import (
	"fmt"
	"math"

	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/nn"
	"github.com/replay-sgd/replay/replay"
)

// runEnv is what a run needs to compute: model, data, batch log, operators.
// It is built once per start of a run and only read afterwards, except for
// the batch log, whose slot k is written by the trainer before step k is
// published (under run.mu) and read by others only after that.
type runEnv struct {
	model             *nn.Model
	loss              nn.Loss
	train, test       *nn.Dataset
	log               *batchLog
	proto             *nn.SGD // cloned by every goroutine that applies operators
	trainIdx, testIdx []int32
	// free recycles the parameter vectors of job results, so that a run
	// in steady state allocates none (and the heap does not grow with
	// garbage of model-sized vectors between collections).
	free chan []float32
}

// getBuf returns a parameter vector (contents undefined).
func (e *runEnv) getBuf() []float32 {
	select {
	case b := <-e.free:
		return b
	default:
		return make([]float32, e.model.Dim())
	}
}

// putBuf recycles a vector nobody uses any more (nil is ignored).
func (e *runEnv) putBuf(b []float32) {
	if b == nil {
		return
	}
	select {
	case e.free <- b:
	default:
	}
}

// batchLog is the batch log of a run in memory, steps×batch int32 indices
// preallocated from the run's configuration (8 MB for a million steps of
// batch 2): a concurrency-safe nn.Batches without re-deriving permutations.
type batchLog struct {
	b    int
	flat []int32
}

// Batch implements nn.Batches for 1 ≤ k ≤ steps.
func (l *batchLog) Batch(k int) []int32 { return l.flat[(k-1)*l.b : k*l.b : k*l.b] }

var _ nn.Batches = (*batchLog)(nil)

// dataKey identifies a loaded data set: Fashion-MNIST does not depend on the
// seed, the synthetic ones do.
type dataKey struct {
	name, dir string
	seed      uint64
}

type dataPair struct{ train, test *nn.Dataset }

// loadData returns the (shared, read-only) splits of a run's data set.
func (s *Scheduler) loadData(cfg ckpt.RunConfig) (dataPair, error) {
	k := dataKey{name: cfg.Dataset, seed: cfg.Seed}
	if cfg.Dataset == "fashion-mnist" {
		k.seed = 0
		k.dir = cfg.DataPath
		if k.dir == "" {
			k.dir = s.opts.DataDir
		}
	}
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	if p, ok := s.data[k]; ok {
		return p, nil
	}
	train, test, err := nn.LoadDataset(k.name, k.dir, cfg.Seed)
	if err != nil {
		return dataPair{}, fmt.Errorf("load data set %s: %w", cfg.Dataset, err)
	}
	p := dataPair{train, test}
	s.data[k] = p
	return p, nil
}

// newEnv builds a run's environment. The batch log is empty: the caller
// fills the logged steps.
func (s *Scheduler) newEnv(cfg ckpt.RunConfig) (*runEnv, error) {
	d, err := s.loadData(cfg)
	if err != nil {
		return nil, err
	}
	m, err := nn.NewModel(cfg.Model, d.train.In, d.train.Out)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", cfg.Model, err)
	}
	if m.Dim() != cfg.Dim {
		return nil, fmt.Errorf("model %s has %d parameters, the run %d", cfg.Model, m.Dim(), cfg.Dim)
	}
	loss, err := nn.ParseLoss(cfg.Loss)
	if err != nil {
		return nil, err
	}
	if cfg.Batch > d.train.N {
		return nil, fmt.Errorf("batch %d exceeds the %d training samples", cfg.Batch, d.train.N)
	}
	env := &runEnv{
		model: m, loss: loss, train: d.train, test: d.test,
		log:      &batchLog{b: cfg.Batch, flat: make([]int32, cfg.Steps*cfg.Batch)},
		free:     make(chan []float32, s.opts.Workers+1),
		trainIdx: nn.FixedSubset(d.train.N, cfg.EvalSize, cfg.Seed),
		testIdx:  nn.FixedSubset(d.test.N, cfg.EvalSize, cfg.Seed),
	}
	env.proto, err = nn.NewSGD(m, loss, d.train, cfg.LR, env.log)
	if err != nil {
		return nil, err
	}
	return env, nil
}

// evaluators is one goroutine's loss evaluators of a run.
type evaluators struct {
	train, test *nn.Evaluator
}

func (e *runEnv) evaluators() evaluators {
	return evaluators{
		train: nn.NewEvaluator(e.model, e.loss, e.train, e.trainIdx),
		test:  nn.NewEvaluator(e.model, e.loss, e.test, e.testIdx),
	}
}

// measure fills the metrics of theta. Losses are evaluated only when eval
// is set; otherwise they are NaN ("not measured at this step").
func (ev evaluators) measure(m *ckpt.Metrics, theta []float32, eval bool) {
	m.ParamNorm = norm(theta)
	m.Loss, m.TestLoss, m.TestAcc = math.NaN(), math.NaN(), math.NaN()
	if eval {
		m.Loss, _ = ev.train.Eval(theta)
		m.TestLoss, m.TestAcc = ev.test.Eval(theta)
	}
}

// evalDue reports whether the losses of step n are measured: every
// EvalEvery steps and at the last step.
func evalDue(cfg *ckpt.RunConfig, n int) bool {
	return n%cfg.EvalEvery == 0 || n == cfg.Steps
}

// diverged describes why metrics show divergence, or "" when they do not.
// NaN losses of steps that were not measured do not count; a NaN accuracy
// is the regression convention.
func diverged(m *ckpt.Metrics, eval bool) string {
	switch {
	case math.IsNaN(m.ParamNorm) || math.IsInf(m.ParamNorm, 0):
		return "parameters are not finite"
	case eval && (math.IsNaN(m.Loss) || math.IsInf(m.Loss, 0)):
		return fmt.Sprintf("training loss is %v", m.Loss)
	case eval && (math.IsNaN(m.TestLoss) || math.IsInf(m.TestLoss, 0)):
		return fmt.Sprintf("test loss is %v", m.TestLoss)
	}
	return ""
}

// norm is the Euclidean norm, summed in float64 in index order so that it is
// a pure function of the bits of x.
func norm(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s)
}

// dist is the Euclidean distance between a and b, summed as norm is.
func dist(a, b []float32) float64 {
	var s float64
	for i, v := range a {
		d := float64(v) - float64(b[i])
		s += d * d
	}
	return math.Sqrt(s)
}

// forwardCursor is a replay.ForwardSource over the store: the nearest
// checkpoint, then the logged batches. It remembers its last point so that
// consecutive requests (sliding windows, resets) cost one step each. Not
// safe for concurrent use.
type forwardCursor struct {
	store checkpoints
	name  string
	every int
	ops   replay.Operators
	step  int // −1: nothing cached
	theta []float32
}

// checkpoints is what a forwardCursor reads (*ckpt.Store, JobInputs).
type checkpoints interface {
	NearestCheckpoint(run string, k int, dst []float32) (int, error)
}

func newForwardCursor(store checkpoints, cfg *ckpt.RunConfig, ops replay.Operators) *forwardCursor {
	return &forwardCursor{store: store, name: cfg.Name, every: cfg.CheckpointEvery, ops: ops, step: -1, theta: make([]float32, cfg.Dim)}
}

var _ replay.ForwardSource = (*forwardCursor)(nil)

// Forward implements replay.ForwardSource for logged steps k.
func (c *forwardCursor) Forward(dst []float32, k int) error {
	if c.step < 0 || c.step > k || k-c.step > k%c.every {
		got, err := c.store.NearestCheckpoint(c.name, k, c.theta)
		if err != nil {
			c.step = -1
			return fmt.Errorf("forward iterate %d: %w", k, err)
		}
		c.step = got
	}
	for c.step < k {
		c.step++
		c.ops.Apply(c.step, c.theta)
	}
	copy(dst, c.theta)
	return nil
}
