package scheduler

import (
	"context"
	"fmt"

	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/replay"
)

// Job is one backward iterate to compute: θ̃_Step of run Run under the
// anchor (AnchorStep, start of Segment), a plain value (no pointers, no
// channels: it serialises with msgpack, so it can be handed to a remote
// worker). A worker needs besides it only the run's configuration and what
// JobInputs gives: the anchor start and, for a sliding window, a forward
// checkpoint.
type Job struct {
	Run string
	// Generation is the issuing backward loop's: its epoch (unique across
	// restarts, stored in ckpt.RunState.Epoch) in the high 32 bits, the
	// number of rollbacks in this epoch below. A result of another
	// generation is stale.
	Generation uint64
	Segment    int
	AnchorStep int
	Step       int
	Strategy   string
	// Side is the adaptive trial side (replay.SideOld, SideNew) or
	// replay.SideNone.
	Side int
	// StartStep and StartForward say where the chain starts: the anchor's
	// start (StartStep = AnchorStep) or, for a sliding window, the forward
	// iterate θ_StartStep (StartStep = Step − W > AnchorStep).
	StartStep    int
	StartForward bool
	// Memo evaluates with the run's memoized evaluator of Side (strategy
	// memo); jobs with Memo come one at a time per side.
	Memo bool
	// Eval asks for the losses (an evaluation step, or an adaptive trial);
	// the parameter norm is always measured.
	Eval bool
}

// JobID is a job's identity: results are accounted by it, never by
// counters, so a duplicate or a stale result is recognised.
type JobID struct {
	Run                 string
	Generation          uint64
	Segment, Step, Side int
}

// ID returns j's identity.
func (j Job) ID() JobID {
	return JobID{Run: j.Run, Generation: j.Generation, Segment: j.Segment, Step: j.Step, Side: j.Side}
}

// Result is the outcome of a Job, a plain value too.
type Result struct {
	Job Job
	// Theta is θ̃_Step (nil when cancelled or failed).
	Theta []float32
	// Metrics has the norm and, if Job.Eval, the losses (StepDist is the
	// committer's).
	Metrics ckpt.Metrics
	Applied int
	// Err is why the job failed (a store or shape error: fatal for the
	// run); empty on success.
	Err       string
	Cancelled bool
}

// memoState is a memoized evaluator of a memo run: replay.AffinePrefix when
// the operators are affine, else replay.Coalescing. Its user owns it (the
// pool hands it to one memo job at a time).
type memoState struct {
	eval replay.Evaluator
	ops  family.Operators // eval's (for familyErr)
}

// momentumAffine is the optional capability of a family's operators whose
// steps are heavy-ball momentum or Nesterov on an affine model: memo then
// composes them exactly (replay.MomentumPrefix) instead of coalescing.
type momentumAffine interface {
	MomentumAffine() (replay.MomentumAffineOperators, bool)
}

// exactMemo reports whether newMemo composes ops' maps (the affine or the
// momentum prefix, equal to direct application only to rounding) rather
// than coalescing (bitwise direct application).
func exactMemo(ops family.Operators) bool {
	if m, ok := ops.(momentumAffine); ok {
		if _, ok := m.MomentumAffine(); ok {
			return true
		}
	}
	_, ok := ops.Affine()
	return ok
}

func newMemo(env *runEnv, budget int64) *memoState {
	ops := env.proto.Clone()
	if m, ok := ops.(momentumAffine); ok {
		if mom, ok := m.MomentumAffine(); ok {
			return &memoState{eval: replay.NewMomentumPrefix(mom), ops: ops}
		}
	}
	if aff, ok := ops.Affine(); ok {
		return &memoState{eval: replay.NewAffinePrefix(aff), ops: ops}
	}
	return &memoState{eval: replay.NewCoalescing(ops, budget, 1), ops: ops}
}

// workerRun is a worker's scratch space for one run.
type workerRun struct {
	ops    family.Operators // direct's (for familyErr)
	direct *replay.Direct
	ev     evaluators
	cursor *forwardCursor
	fwd    []float32 // sliding-window start
}

func newWorkerRun(env *runEnv, in JobInputs, cfg *ckpt.RunConfig, measure bool) *workerRun {
	ops := env.proto.Clone()
	wr := &workerRun{ops: ops, direct: replay.NewDirect(ops)}
	if measure {
		wr.ev = env.evaluators()
	}
	wr.cursor = newForwardCursor(in, cfg, env.proto.Clone())
	return wr
}

// worker runs jobs until quit is closed.
func (s *Scheduler) worker(quit <-chan struct{}) {
	defer s.reserveWorkerProc()()
	scratch := map[*runEnv]*workerRun{}
	for {
		select {
		case <-quit:
			return
		case j := <-s.jobs:
			q := s.pool.lookup(j)
			if q == nil {
				continue // its loop is gone: nobody wants the result
			}
			if len(scratch) > 8 {
				clear(scratch) // runs come and go; never hold more than a few
			}
			wr := scratch[q.x.env] // one env per start of a run
			if wr == nil {
				wr = newWorkerRun(q.x.env, q.x.Inputs, &q.x.Config, true)
				scratch[q.x.env] = wr
			}
			q.deliver(s.pool.exec(j, q, wr))
		}
	}
}

// computeIterate writes θ̃_{j.Step} into theta: with memo if j.Memo, else
// directly from the job's start. It is shared by the workers, the backward
// loop's own recomputations (anchor starts, resume) and Params. A cancelled
// ctx returns its error (wrapped).
func computeIterate(ctx context.Context, j Job, wr *workerRun, memo *memoState, in JobInputs, theta []float32) (int, error) {
	var a replay.Anchor
	if j.StartForward {
		if wr.fwd == nil {
			wr.fwd = make([]float32, len(theta))
		}
		if err := wr.cursor.Forward(wr.fwd, j.StartStep); err != nil {
			return 0, err
		}
		a = replay.Anchor{Step: j.StartStep, Start: wr.fwd}
	} else {
		start, err := in.AnchorStart(j.Run, j.Segment)
		if err != nil {
			return 0, err
		}
		a = replay.Anchor{Step: j.AnchorStep, Start: start}
	}
	ev, ops := replay.Evaluator(wr.direct), wr.ops
	if j.Memo {
		ev, ops = memo.eval, memo.ops
	}
	n, err := ev.Eval(ctx, theta, a, j.Step)
	if err == nil {
		err = familyErr(ops)
	}
	if err != nil {
		return n, fmt.Errorf("backward step %d: %w", j.Step, err)
	}
	return n, nil
}

// recompute writes into theta the backward iterate θ̃_step of r under the
// anchor (seg, anchorStep), as the job that produced the stored result did,
// in the calling goroutine (Params). Memo runs of affine operators use the
// affine or momentum prefix (the stored numbers are its, to rounding); the coalescence
// memo is exact, so Direct gives its bits.
func (s *Scheduler) recompute(ctx context.Context, r *run, env *runEnv, seg, anchorStep, step int, theta []float32) error {
	in := newRunInputs(s.store, r.cfg.Dim)
	_, plan := strategyOf(&r.cfg)
	j := plan.job(r.name, 0, seg, anchorStep, step)
	j.Strategy = r.cfg.Strategy
	var memo *memoState
	if j.Memo && exactMemo(env.proto) {
		memo = newMemo(env, 0)
	} else {
		j.Memo = false
	}
	wr := newWorkerRun(env, in, &r.cfg, false)
	_, err := computeIterate(ctx, j, wr, memo, in, theta)
	return err
}
