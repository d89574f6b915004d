package scheduler

import (
	"context"
	"errors"
	"time"

	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/replay"
)

// Job is one backward iterate to compute: θ̃_Step of run Run under the
// anchor (AnchorStep, start of Segment) with the run's strategy. Its
// exported fields are all a worker needs besides the run's configuration
// and the anchor start, both in the store, so a job could be handed to a
// remote worker; the unexported ones are the in-process plumbing (the run's
// environment, the start vector in memory, the reply channel).
type Job struct {
	Run        string
	Step       int
	Segment    int
	AnchorStep int
	Strategy   string
	// Eval asks for the losses (an evaluation step, or an adaptive trial).
	Eval bool

	r     *run
	env   *runEnv
	ctx   context.Context // cancelled when the result is no longer wanted
	start []float32       // the anchor start, read only
	side  int             // adaptive trial side (sideOld, sideNew), 0 otherwise
	gen   int             // the backward loop's generation that issued it
	memo  *memoState      // strategy memo: the run's sequential evaluator
	out   chan<- *result
}

// result is the outcome of a Job.
type result struct {
	job       Job
	theta     []float32 // nil when cancelled or failed
	m         ckpt.Metrics
	applied   int
	err       error
	cancelled bool
}

// memoState is the one memoized evaluator of a memo run. Only one job of the
// run uses it at a time (the backward loop dispatches memo jobs one by one),
// so the goroutine of that job owns it.
type memoState struct {
	ops    *cancelOps
	affine bool
	eval   replay.Evaluator
	seg, n int // the memo holds iterate n of segment seg (n = −1: nothing)
}

// memoChunk is how far an affine prefix is extended per call when it must
// catch up (after a restart): the context is checked between calls.
const memoChunk = 64

func newMemo(env *runEnv, budget int64) *memoState {
	sgd := env.proto.Clone()
	m := &memoState{ops: &cancelOps{ops: sgd, ctx: context.Background()}, seg: -1, n: -1}
	if sgd.IsAffine() {
		m.affine = true
		m.eval = replay.NewAffinePrefix(sgd)
	} else {
		m.eval = replay.NewCoalescing(m.ops, budget, 1)
	}
	return m
}

// workerRun is a worker's scratch space for one run.
type workerRun struct {
	ops    *cancelOps
	direct *replay.Direct
	ev     evaluators
	cursor *forwardCursor
	fwd    []float32 // sliding-window start
}

// worker runs jobs until quit is closed.
func (s *Scheduler) worker(quit <-chan struct{}) {
	defer reserveWorkerProc()()
	scratch := map[*runEnv]*workerRun{}
	for {
		select {
		case <-quit:
			return
		case j := <-s.jobs:
			if len(scratch) > 8 {
				clear(scratch) // runs come and go; never hold more than a few
			}
			wr := scratch[j.env]
			if wr == nil {
				sgd := j.env.proto.Clone()
				ops := &cancelOps{ops: sgd, ctx: context.Background()}
				wr = &workerRun{ops: ops, direct: replay.NewDirect(ops), ev: j.env.evaluators()}
				scratch[j.env] = wr
			}
			j.out <- s.exec(j, wr)
		}
	}
}

// exec computes a job.
func (s *Scheduler) exec(j Job, wr *workerRun) *result {
	t0 := time.Now()
	res := &result{job: j}
	theta := j.env.getBuf()
	applied, err := computeIterate(j, wr, theta, s.store)
	res.applied = applied
	s.met.ops.Add(float64(applied))
	switch {
	case errors.Is(err, errCancelled):
		res.cancelled = true
		j.env.putBuf(theta)
		return res
	case err != nil:
		res.err = err
		j.env.putBuf(theta)
		return res
	}
	res.theta = theta
	res.m = ckpt.Metrics{Step: j.Step, Segment: j.Segment, Anchor: j.AnchorStep}
	if j.Strategy == StrategySliding {
		res.m.Anchor = max(j.AnchorStep, j.Step-j.r.cfg.Window)
	}
	wr.ev.measure(&res.m, theta, j.Eval)
	d := time.Since(t0)
	s.met.jobSecs.Observe(d.Seconds())
	s.met.busy.Add(int64(d))
	return res
}

// computeIterate writes θ̃_{j.Step} into theta. It is shared by the workers
// and by the backward loop's own recomputations (anchor starts, resume).
func computeIterate(j Job, wr *workerRun, theta []float32, store *ckpt.Store) (int, error) {
	a := replay.Anchor{Step: j.AnchorStep, Start: j.start}
	switch j.Strategy {
	case StrategyMemo:
		return memoIterate(j, theta)
	case StrategySliding:
		if w := j.r.cfg.Window; j.Step-w > j.AnchorStep {
			if wr.cursor == nil {
				wr.cursor = newForwardCursor(store, &j.r.cfg, j.env.proto.Clone())
				wr.fwd = make([]float32, j.r.cfg.Dim)
			}
			if err := wr.cursor.Forward(wr.fwd, j.Step-w); err != nil {
				return 0, err
			}
			a = replay.Anchor{Step: j.Step - w, Start: wr.fwd}
		}
	}
	wr.ops.reset(j.ctx)
	n, err := wr.direct.Eval(theta, a, j.Step)
	if wr.ops.cancelled {
		return wr.ops.calls, errCancelled
	}
	return n, err
}

// memoIterate evaluates a memo job with the run's memoized evaluator.
func memoIterate(j Job, theta []float32) (int, error) {
	m := j.memo
	a := replay.Anchor{Step: j.AnchorStep, Start: j.start}
	if m.seg != j.Segment || m.n > j.Step || m.n < j.AnchorStep {
		m.seg, m.n = j.Segment, j.AnchorStep
	}
	total := 0
	if m.affine {
		// Catch up in chunks so that a stop request is honoured; the
		// composition sequence (and so every bit) is the same as one call.
		for next := m.n + memoChunk; next < j.Step; next += memoChunk {
			if j.ctx.Err() != nil {
				return total, errCancelled
			}
			n, err := m.eval.Eval(theta, a, next)
			total += n
			if err != nil {
				return total, err
			}
			m.n = next
		}
		n, err := m.eval.Eval(theta, a, j.Step)
		m.n = j.Step
		return total + n, err
	}
	m.ops.reset(j.ctx)
	n, err := m.eval.Eval(theta, a, j.Step)
	if calls := m.ops.calls; m.ops.cancelled {
		// The chain levels kept during this call are garbage: start over
		// (the coalescence memo is exact, so results do not change).
		*m = *newMemo(j.env, j.r.s.opts.MemoBudget)
		return calls, errCancelled
	}
	m.n = j.Step
	return n, err
}
