package scheduler

import (
	"context"
	"errors"
	"fmt"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/internal/echo"
)

// Trajectory kinds.
const (
	KindForward  = "forward"
	KindBackward = "backward"
	KindBoth     = "both"
)

// trajectoryChunk is how many steps are read from the store at a time, so
// that a long trajectory streams in bounded memory.
const trajectoryChunk = 1024

// Trajectory calls fn with the points of steps from..to (to ≤ 0: the
// latest) whose step is a multiple of every (≤ 0: 1), in step order; with
// kind both, the forward point of a step comes before its backward point.
// Losses and accuracy are NaN at steps where they were not measured (see
// eval_every) and the accuracy is NaN for regression. Backward points are
// those of the latest segment at each step.
func (s *Scheduler) Trajectory(ctx context.Context, name, kind string, from, to, every int, fn func(api.Point) error) error {
	r, err := s.get(name)
	if err != nil {
		return err
	}
	if kind == "" {
		kind = KindBoth
	}
	if kind != KindForward && kind != KindBackward && kind != KindBoth {
		return fmt.Errorf("trajectory kind %q: want forward, backward or both: %w", kind, ErrInvalid)
	}
	if from < 0 || to < 0 || every < 0 {
		return fmt.Errorf("trajectory from=%d to=%d every=%d: must not be negative: %w", from, to, every, ErrInvalid)
	}
	if every == 0 {
		every = 1
	}
	from = max(from, 1)
	st := r.state()
	if to == 0 || to > st.ForwardStep {
		to = st.ForwardStep
	}
	keep := func(m ckpt.Metrics) bool { return m.Step%every == 0 }
	for lo := from; lo <= to; lo += trajectoryChunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(to, lo+trajectoryChunk-1)
		var fwd, bwd []ckpt.Metrics
		if kind != KindBackward {
			if err := s.store.ForwardMetrics(name, lo, hi, func(m ckpt.Metrics) error {
				if keep(m) {
					fwd = append(fwd, m)
				}
				return nil
			}); err != nil {
				return storeErr(name, err)
			}
		}
		if kind != KindForward {
			if err := s.store.BackwardMetrics(name, lo, hi, func(m ckpt.Metrics) error {
				if keep(m) {
					bwd = append(bwd, m)
				}
				return nil
			}); err != nil {
				return storeErr(name, err)
			}
		}
		i, j := 0, 0
		for i < len(fwd) || j < len(bwd) {
			var p api.Point
			if j >= len(bwd) || i < len(fwd) && fwd[i].Step <= bwd[j].Step {
				p = point(KindForward, fwd[i])
				p.Anchor, p.Segment = 0, 0
				i++
			} else {
				p = point(KindBackward, bwd[j])
				j++
			}
			if err := fn(p); err != nil {
				return err
			}
		}
	}
	return nil
}

func point(kind string, m ckpt.Metrics) api.Point {
	return api.Point{
		Kind: kind, Step: m.Step, Loss: m.Loss, TestLoss: m.TestLoss, TestAcc: m.TestAcc,
		ParamNorm: m.ParamNorm, StepDist: m.StepDist, Anchor: m.Anchor, Segment: m.Segment,
	}
}

func storeErr(name string, err error) error {
	if errors.Is(err, ckpt.ErrRunNotFound) {
		return fmt.Errorf("run %q: %w", name, ErrNotFound)
	}
	return withAPI(fmt.Errorf("run %q: %w", name, err))
}

// Params returns the state layout and the whole state (θ, then the
// optimizer's state) of the forward or backward iterate at step: forward
// from the nearest checkpoint and the batch log; backward stored if kept,
// else recomputed under the anchor that produced the stored result (cost at
// most the window for window runs, the step for full and memo runs). A
// step not computed yet is ErrNotFound.
func (s *Scheduler) Params(ctx context.Context, name, kind string, step int) ([]family.Tensor, []float32, error) {
	layout, state, _, err := s.params(ctx, name, kind, step)
	return layout, state, err
}

// params is Params with the length of θ, the state's prefix.
func (s *Scheduler) params(ctx context.Context, name, kind string, step int) ([]family.Tensor, []float32, int, error) {
	layout, state, env, err := s.paramsOf(ctx, name, kind, step)
	if err != nil {
		return nil, nil, 0, err
	}
	return layout, state, env.model.ThetaDim(), nil
}

func (s *Scheduler) paramsOf(ctx context.Context, name, kind string, step int) ([]family.Tensor, []float32, *runEnv, error) {
	r, err := s.get(name)
	if err != nil {
		return nil, nil, nil, err
	}
	if kind == "" {
		kind = KindForward
	}
	if kind != KindForward && kind != KindBackward {
		return nil, nil, nil, fmt.Errorf("params kind %q: want forward or backward: %w", kind, ErrInvalid)
	}
	st := r.state()
	if step < 0 || step > r.cfg.Steps {
		return nil, nil, nil, fmt.Errorf("step %d: run %q has steps 0..%d: %w", step, name, r.cfg.Steps, ErrInvalid)
	}
	if kind == KindForward && step > st.ForwardStep {
		return nil, nil, nil, fmt.Errorf("forward step %d of %q not trained yet (at %d): %w", step, name, st.ForwardStep, ErrNotFound)
	}
	env, err := s.queryEnv(ctx, r)
	if err != nil {
		return nil, nil, nil, err
	}
	theta := make([]float32, r.cfg.Dim)
	if kind == KindForward {
		if step%r.cfg.CheckpointEvery == 0 || step == 0 {
			if err := s.store.Checkpoint(name, step, theta); err == nil {
				return env.model.Layout(), theta, env, nil
			}
		}
		release, err := s.acquireQuery()
		if err != nil {
			return nil, nil, nil, err
		}
		defer release()
		c := newForwardCursor(s.store, &r.cfg, env.proto.Clone())
		if err := c.Forward(theta, step); err != nil {
			return nil, nil, nil, storeErr(name, err)
		}
		return env.model.Layout(), theta, env, nil
	}
	if step > st.BackwardStep || step < r.cfg.BackwardFrom {
		return nil, nil, nil, fmt.Errorf("backward step %d of %q not computed (frontier %d, backward_from %d): %w",
			step, name, st.BackwardStep, r.cfg.BackwardFrom, ErrNotFound)
	}
	seg := 0
	found := false
	if step > 0 {
		if err := s.store.BackwardMetrics(name, step, step, func(m ckpt.Metrics) error {
			seg, found = m.Segment, true
			return nil
		}); err != nil {
			return nil, nil, nil, storeErr(name, err)
		}
	}
	if !found {
		// Step 0, or the anchor step of backward_from: the start itself.
		as, err := s.store.Anchors(name)
		if err != nil {
			return nil, nil, nil, storeErr(name, err)
		}
		for _, a := range as {
			if a.Step == step && a.Segment >= seg {
				seg, found = a.Segment, true
			}
		}
		if !found {
			return nil, nil, nil, fmt.Errorf("backward step %d of %q: no result: %w", step, name, ErrNotFound)
		}
	}
	if ok, err := s.store.BackwardTheta(name, seg, step, theta); err != nil {
		return nil, nil, nil, storeErr(name, err)
	} else if ok {
		return env.model.Layout(), theta, env, nil
	}
	var anchorAt int
	as, err := s.store.Anchors(name)
	if err != nil {
		return nil, nil, nil, storeErr(name, err)
	}
	for _, a := range as {
		if a.Segment == seg {
			anchorAt = a.Step
		}
	}
	release, err := s.acquireQuery()
	if err != nil {
		return nil, nil, nil, err
	}
	defer release()
	if err := s.recompute(ctx, r, env, seg, anchorAt, step, theta); err != nil {
		if ctx.Err() != nil {
			return nil, nil, nil, ctx.Err()
		}
		return nil, nil, nil, err
	}
	return env.model.Layout(), theta, env, nil
}

// queryEnv is the environment a query computes in: the run's own while it
// computes (nothing is built or loaded per request), else a new one (the
// data set is cached and the batch log is lazy, so this costs the model's
// construction only).
func (s *Scheduler) queryEnv(ctx context.Context, r *run) (*runEnv, error) {
	if r.broken {
		return nil, fmt.Errorf("run %q cannot be loaded: %w", echo.Clip(r.name), ErrConflict)
	}
	r.mu.Lock()
	env := r.mu.env
	r.mu.Unlock()
	if env != nil {
		return env, nil
	}
	return s.buildEnv(ctx, r.cfg)
}

// acquireQuery takes a query slot for a recomputation, or fails at once
// with ErrBusy when all Options.QuerySlots are taken: a query waits for no
// other, and never takes more than the slots' cores from training. The
// returned func gives the slot back.
func (s *Scheduler) acquireQuery() (release func(), err error) {
	select {
	case s.query <- struct{}{}:
	default:
		return nil, fmt.Errorf("all %d slots for recomputations are busy, try again: %w", cap(s.query), ErrBusy)
	}
	n := s.queryActive.Add(1)
	if h := s.queryHook; h != nil {
		h(int(n))
	}
	return func() {
		s.queryActive.Add(-1)
		<-s.query
	}, nil
}

// Batches returns the batch log as a rows×cols matrix of int64, step 1
// first (rows = the logged forward steps, cols = the batch size).
func (s *Scheduler) Batches(name string) (rows, cols int, idx []int64, err error) {
	r, err := s.get(name)
	if err != nil {
		return 0, 0, nil, err
	}
	f := r.state().ForwardStep
	idx = make([]int64, 0, f*r.cfg.Batch)
	for lo := 1; lo <= f; lo += 4096 {
		b, err := s.store.Batches(name, lo, min(f, lo+4095))
		if err != nil {
			return 0, 0, nil, storeErr(name, err)
		}
		for _, row := range b {
			for _, v := range row {
				idx = append(idx, int64(v))
			}
		}
	}
	return f, r.cfg.Batch, idx, nil
}

// Verify checks a run's stored records: checksums, the batch log against
// the sampler, and every checkpoint against a replay of the logged batches
// from the previous one.
func (s *Scheduler) Verify(ctx context.Context, name string) (api.VerifyReport, error) {
	rep, err := s.verify(ctx, name, false)
	return rep, withAPI(err)
}

// Repair recomputes the run's missing scheduled checkpoints bitwise from
// the batch log (ckpt.Store.RepairCheckpoints), then verifies the run; the
// report lists the steps it stored in Repaired.
func (s *Scheduler) Repair(ctx context.Context, name string) (api.VerifyReport, error) {
	rep, err := s.verify(ctx, name, true)
	return rep, withAPI(err)
}

// batchReplayer is an optional capability of a family's Operators that
// re-executes forward steps from+1 … from+len(batches) in one call
// (ckpt.Replayer's contract).
type batchReplayer interface {
	ReplayBatches(ctx context.Context, theta []float32, from int, batches [][]int32) error
}

func (s *Scheduler) verify(ctx context.Context, name string, repair bool) (api.VerifyReport, error) {
	r, err := s.get(name)
	if err != nil {
		return api.VerifyReport{}, err
	}
	env, err := s.queryEnv(ctx, r)
	if err != nil {
		return api.VerifyReport{}, err
	}
	// Verify re-executes every checkpoint interval: one query slot.
	release, err := s.acquireQuery()
	if err != nil {
		return api.VerifyReport{}, err
	}
	defer release()
	sgd := env.proto.Clone()
	replay := func(theta []float32, from int, batches [][]int32) (err error) {
		// An external model replays an interval in one round trip, with
		// its step numbers (its T_k may depend on k: dropout).
		if rb, ok := sgd.(batchReplayer); ok {
			return rb.ReplayBatches(ctx, theta, from, batches)
		}
		defer func() {
			if err == nil {
				err = familyErr(sgd)
			}
		}()
		for _, b := range batches {
			if err := ctx.Err(); err != nil {
				return err
			}
			sgd.Step(theta, b)
		}
		return nil
	}
	var repaired []int
	if repair {
		if repaired, err = s.store.RepairCheckpoints(name, replay); err != nil {
			return api.VerifyReport{}, storeErr(name, err)
		}
	}
	rep, err := s.store.Verify(name, replay)
	if err != nil {
		return api.VerifyReport{}, storeErr(name, err)
	}
	out := api.VerifyReport{Run: name, Checkpoints: rep.Checkpoints, Steps: rep.Steps, Problems: rep.Problems, Repaired: repaired}
	// The batch log must be the sampler's: a pure function of the seed.
	if f := r.state().ForwardStep; f > 0 {
		sampler := env.fam.Sampler(env.trainN, r.cfg.Batch, r.cfg.Seed)
		want := make([]int32, r.cfg.Batch)
		for lo := 1; lo <= f; lo += 4096 {
			b, err := s.store.Batches(name, lo, min(f, lo+4095))
			if err != nil {
				return api.VerifyReport{}, storeErr(name, err)
			}
			for i, row := range b {
				sampler.Batch(lo+i, want)
				if len(row) != len(want) || !equalInt32(row, want) {
					out.Problems = append(out.Problems, fmt.Sprintf("batch of step %d differs from the sampler's", lo+i))
					break
				}
			}
		}
	}
	out.OK = len(out.Problems) == 0
	return out, nil
}

func equalInt32(a, b []int32) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
