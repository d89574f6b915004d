package scheduler

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/internal/echo"
	"github.com/replay-sgd/replay/replay"
)

// runEnv is what a run needs to compute: its family's model over the data,
// the batch log, the operators. It is built once per start of a run and
// only read afterwards (the model and the batch log are safe for concurrent
// use).
type runEnv struct {
	fam    family.Family
	model  family.Model
	trainN int // training samples (the sampler's n)
	log    *batchLog
	proto  family.Operators // cloned by every goroutine that applies operators
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

// batchLog is a run's batch log as its operators read it: a
// concurrency-safe family.Batches over the run's sampler. The batches are a
// pure function of the seed (Family.Sampler), the same the trainer stores, so
// the log in memory is never Steps × Batch: it keeps the batches of a few
// whole epochs (slots), each computed once from the sampler when a step of
// it is first asked for, and replaced by clock when a new epoch is needed.
// The stored batch log is the record of the run (export, Verify checks it
// against the sampler); nothing is read back from it to compute.
//
// Reads are lock-free (each slot is an immutable epoch published through an
// atomic pointer; a returned slice stays valid after its epoch is evicted,
// as evicted epochs are never reused); a miss computes the epoch under mu.
type batchLog struct {
	b, perEpoch int
	slots       []atomic.Pointer[epochBatches]

	mu      sync.Mutex
	sampler family.Sampler // used under mu only
	hand    int            // the clock hand over slots, under mu
}

// epochBatches is the batches of one epoch: batch j at idx[j·b : (j+1)·b].
type epochBatches struct {
	epoch int
	idx   []int32
	used  atomic.Bool // clock bit: read since the hand last passed
}

// newBatchLog returns the batch log of a run over sampler (batch b),
// keeping at most slots epochs (≥ 1).
func newBatchLog(sampler family.Sampler, b int, slots int) *batchLog {
	return &batchLog{b: b, perEpoch: sampler.StepsPerEpoch(), slots: make([]atomic.Pointer[epochBatches], max(1, slots)), sampler: sampler}
}

// Batch implements family.Batches for k ≥ 1.
func (l *batchLog) Batch(k int) []int32 {
	if k < 1 {
		panic(fmt.Sprintf("scheduler: batch of step %d", k))
	}
	e, j := (k-1)/l.perEpoch, (k-1)%l.perEpoch
	p := l.lookup(e)
	if p == nil {
		p = l.fill(e)
	}
	return p.idx[j*l.b : (j+1)*l.b : (j+1)*l.b]
}

func (l *batchLog) lookup(e int) *epochBatches {
	for i := range l.slots {
		if p := l.slots[i].Load(); p != nil && p.epoch == e {
			if !p.used.Load() {
				p.used.Store(true)
			}
			return p
		}
	}
	return nil
}

// fill computes epoch e and publishes it in the slot the clock hand
// chooses: the first one not used since the hand last passed it.
func (l *batchLog) fill(e int) *epochBatches {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.lookup(e); p != nil {
		return p // another goroutine filled it meanwhile
	}
	p := &epochBatches{epoch: e, idx: make([]int32, l.perEpoch*l.b)}
	for j := range l.perEpoch {
		l.sampler.Batch(e*l.perEpoch+j+1, p.idx[j*l.b:])
	}
	p.used.Store(true)
	for {
		i := l.hand
		l.hand = (l.hand + 1) % len(l.slots)
		if old := l.slots[i].Load(); old == nil || !old.used.Swap(false) {
			l.slots[i].Store(p)
			return p
		}
	}
}

var _ family.Batches = (*batchLog)(nil)

// dataKey identifies a loaded data set: the family's name and its DataKey.
type dataKey struct{ family, key string }

// dataLoad is one load of a data set: done is closed when p and err are set.
// A failed load is forgotten (a later one tries again); a loaded data set
// stays for the scheduler's life.
type dataLoad struct {
	key  dataKey // in Scheduler.data
	done chan struct{}
	p    family.Data
	err  error

	hashOnce sync.Once // the content hash of p, computed on first need
	hash     string
	hashErr  error
}

// dataHash is the content hash of the loaded data (dataHash), computed
// once per load.
func (l *dataLoad) dataHash(f family.Family, spec family.Spec) (string, error) {
	l.hashOnce.Do(func() { l.hash, l.hashErr = dataHash(f, spec, l.p) })
	return l.hash, l.hashErr
}

// loadData returns the (shared, read-only) splits of a run's data set. A
// data set is loaded once per key, outside any lock that others need: the
// first request starts the load, every request for the same key waits for
// it until its own ctx or Options.DataTimeout ends, and requests for other
// data sets do not wait at all. A load stuck in the file system (a hung
// mount) keeps only its own key waiting (the built-in family opens regular
// files only, so a FIFO is an error, not a hang).
func (s *Scheduler) loadData(ctx context.Context, f family.Family, cfg ckpt.RunConfig) (family.Data, error) {
	l, err := s.load(ctx, f, cfg)
	if err != nil {
		return nil, err
	}
	return l.p, nil
}

// load is loadData's load itself, done.
func (s *Scheduler) load(ctx context.Context, f family.Family, cfg ckpt.RunConfig) (*dataLoad, error) {
	spec := familySpec(cfg)
	if spec.DataPath == "" {
		spec.DataPath = s.opts.DataDir
	}
	k := dataKey{family: f.Name(), key: f.DataKey(spec)}
	s.dataMu.Lock()
	l, ok := s.data[k]
	if !ok {
		l = &dataLoad{key: k, done: make(chan struct{})}
		s.data[k] = l
		go func() {
			l.p, l.err = f.LoadData(spec)
			if l.err != nil {
				s.dataMu.Lock()
				if s.data[k] == l {
					delete(s.data, k)
				}
				s.dataMu.Unlock()
			}
			close(l.done)
		}()
	}
	s.dataMu.Unlock()
	timeout := s.opts.dataTimeout()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-l.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("load data set %s: %w", cfg.Dataset, ctx.Err())
	case <-t.C:
		return nil, fmt.Errorf("load data set %s from %s: not loaded after %v", cfg.Dataset, echo.Clip(spec.DataPath), timeout)
	}
	if l.err != nil {
		return nil, fmt.Errorf("load data set %s: %w", cfg.Dataset, l.err)
	}
	return l, nil
}

// checkData refuses to compute a run on a data set other than the one it
// was created with: RunConfig.DataHash against the hash of the data as
// loaded now. The run's stored batches are sample indices, so on changed
// files (a new version of the data set, an edited model file of an
// external model) it would go on without an error and extend its
// trajectories with numbers of another problem. A run without a recorded
// hash (created before there was one, or of a family without
// family.DataHasher) is not checked. On a mismatch the load is forgotten,
// so that a later start reads the files again (restored, they are taken);
// whoever holds the old load keeps it.
func (s *Scheduler) checkData(f family.Family, cfg ckpt.RunConfig, l *dataLoad) error {
	if cfg.DataHash == "" {
		return nil
	}
	spec := familySpec(cfg)
	got, err := l.dataHash(f, spec)
	if err != nil || got == "" || got == cfg.DataHash {
		return err
	}
	s.dataMu.Lock()
	if s.data[l.key] == l {
		delete(s.data, l.key)
	}
	s.dataMu.Unlock()
	where := spec.DataPath
	if where == "" {
		where = s.opts.DataDir
	}
	if where == "" {
		where = "its default location"
	}
	return fmt.Errorf("%w: the data set %s (%s) hashes to %s here, the run was created on %s: restore the files it was created with and resume it, or start a new run on these",
		ErrDataChanged, echo.Clip(cfg.Dataset), echo.Clip(where), got, cfg.DataHash)
}

// newEnv builds the environment a run computes in. It checks the run
// against the admission limits first, so that no run over them allocates
// anything.
func (s *Scheduler) newEnv(ctx context.Context, cfg ckpt.RunConfig) (*runEnv, error) {
	if _, err := admit(cfg, s.opts); err != nil {
		return nil, err
	}
	return s.buildEnv(ctx, cfg)
}

// buildEnv builds a run's environment without the admission check: for
// queries, which hold one model's worth of it, not the run's.
func (s *Scheduler) buildEnv(ctx context.Context, cfg ckpt.RunConfig) (*runEnv, error) {
	// The stored configuration is checked against its family's size before
	// anything is loaded (a corrupt or foreign record allocates nothing).
	f, size, err := s.opts.sizeOf(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Dim <= 0 || int64(cfg.Dim) != size.Params {
		return nil, fmt.Errorf("run %q has %d parameters, its model %s %d: %w", echo.Clip(cfg.Name), cfg.Dim, echo.Clip(cfg.Model), size.Params, ErrInvalid)
	}
	l, err := s.load(ctx, f, cfg)
	if err != nil {
		return nil, err
	}
	if err := s.checkData(f, cfg, l); err != nil {
		return nil, err
	}
	m, err := f.Open(familySpec(cfg), l.p)
	if err != nil {
		return nil, err
	}
	if m.Dim() != cfg.Dim {
		return nil, fmt.Errorf("model %s has %d parameters, the run %d", echo.Clip(cfg.Model), m.Dim(), cfg.Dim)
	}
	if td := m.ThetaDim(); td < 1 || td > m.Dim() {
		return nil, fmt.Errorf("model %s: θ of %d in a state of %d", echo.Clip(cfg.Model), td, m.Dim())
	}
	env := &runEnv{
		fam: f, model: m, trainN: size.Train,
		log:  newBatchLog(f.Sampler(size.Train, cfg.Batch, cfg.Seed), cfg.Batch, batchLogSlots(s.opts)),
		free: make(chan []float32, s.opts.Workers+1),
	}
	env.proto, err = m.Operators(env.log)
	if err != nil {
		return nil, err
	}
	return env, nil
}

// setEnv publishes the environment of the run's computation (nil: none).
func (r *run) setEnv(e *runEnv) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.env = e
}

// evaluators is one goroutine's measurer of a run.
type evaluators struct {
	m family.Measurer
	// thetaDim is the length of θ, the prefix of the state that norms and
	// measures use (DESIGN §5: the optimizer's state is not measured).
	thetaDim int
}

func (e *runEnv) evaluators() evaluators {
	return evaluators{m: e.model.Measurer(), thetaDim: e.model.ThetaDim()}
}

// measure fills the metrics of the state s: the norm and the losses of its
// θ. Losses are evaluated only when eval is set; otherwise they are NaN
// ("not measured at this step"). A non-finite optimizer state (Adam's
// second moment overflowing) shows in θ at the next step at the latest.
func (ev evaluators) measure(m *ckpt.Metrics, s []float32, eval bool) {
	theta := s[:ev.thetaDim]
	m.ParamNorm = norm(theta)
	m.Loss, m.TestLoss, m.TestAcc = math.NaN(), math.NaN(), math.NaN()
	if eval {
		m.Loss, m.TestLoss, m.TestAcc = ev.m.Measure(theta)
	}
}

// stepDist is the distance between the θ of two states (the step
// distance of the metrics: θ only, DESIGN §5).
func (e *runEnv) stepDist(a, b []float32) float64 {
	td := e.model.ThetaDim()
	return dist(a[:td], b[:td])
}

// evalDue reports whether the losses of step n are measured: every
// EvalEvery steps and at the last step; only at the last step when
// EvalEvery is 0 (evaluation off, but a final figure).
func evalDue(cfg *ckpt.RunConfig, n int) bool {
	return n == cfg.Steps || cfg.EvalEvery > 0 && n%cfg.EvalEvery == 0
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
	if err := familyErr(c.ops); err != nil {
		c.step = -1
		return fmt.Errorf("forward iterate %d: %w", k, err)
	}
	copy(dst, c.theta)
	return nil
}
