package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/replay"
)

// run is one run of the scheduler: its configuration, its state (the
// in-memory copy of the stored ckpt.RunState, which is written to the store
// under mu so that the trainer and the backward loop never overwrite each
// other's progress) and the goroutines computing it.
type run struct {
	s    *Scheduler
	name string
	cfg  ckpt.RunConfig

	// fwdKick wakes the trainer (the frontier moved); bwdKick wakes the
	// backward loop (forward steps logged, a reset requested).
	fwdKick, bwdKick chan struct{}
	// broken: the run's records could not be read; cfg holds the name
	// only and the run never starts (Resume reads it again).
	broken bool

	mu struct {
		sync.Mutex
		st       ckpt.RunState
		anchor   api.AnchorInfo
		fwdLoss  *float64
		bwdLoss  *float64
		cancel   context.CancelFunc // stops the goroutines; nil when idle
		closed   bool               // being deleted: never start again
		hungry   bool               // the backward loop waits for forward steps
		done     chan struct{}      // closed when they have stopped
		rate     float64            // operator applications per second (EWMA)
		rateAt   time.Time
		opsSince int64
		opsPerN  float64 // mean applications per backward step
		env      *runEnv // while computing: shared with queries (Params)
		// full is the last refusal (a full disk) of the run's loops that
		// wait in whileFull (trainer.go), the waiters; retry is closed
		// (and replaced) to make them try again at once (Resume), which
		// counts wakeGen; changed is closed (and replaced) whenever a
		// waiter tried.
		full    *ckpt.SpaceError
		waiters map[*spaceWaiter]struct{}
		retry   chan struct{}
		wakeGen uint64
		changed chan struct{}
	}
}

func newRun(s *Scheduler, cfg ckpt.RunConfig, st ckpt.RunState) *run {
	r := &run{s: s, name: cfg.Name, cfg: cfg, fwdKick: make(chan struct{}, 1), bwdKick: make(chan struct{}, 1)}
	r.mu.st = st
	r.mu.retry, r.mu.changed = make(chan struct{}), make(chan struct{})
	r.mu.waiters = map[*spaceWaiter]struct{}{}
	return r
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// state returns a copy of the run's state.
func (r *run) state() ckpt.RunState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return cloneState(r.mu.st)
}

func cloneState(st ckpt.RunState) ckpt.RunState {
	st.PendingResets = slices.Clone(st.PendingResets)
	return st
}

// hungry reports whether the backward loop waits for forward steps.
func (r *run) hungry() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.hungry
}

// frontierFloor is the step the trainer's lag is measured from.
func (r *run) frontierFloor() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return max(r.mu.st.BackwardStep, r.cfg.BackwardFrom)
}

// start launches the trainer and the backward loop under ctx. It does
// nothing if they are running or the run is being deleted.
func (r *run) start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.cancel != nil || r.mu.closed || r.broken {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	r.mu.cancel, r.mu.done = cancel, done
	r.s.wg.Add(1)
	go func() {
		defer r.s.wg.Done()
		r.work(ctx)
		cancel()
		r.mu.Lock()
		r.mu.cancel, r.mu.done = nil, nil
		r.mu.Unlock()
		close(done)
		// A resume or reset that came while the goroutines were ending
		// found them still registered: start again if the state says so.
		r.s.startIfRunning(r)
	}()
}

// stop cancels the run's goroutines and waits for them; they commit what
// is done first.
func (r *run) stop() {
	r.mu.Lock()
	cancel, done := r.mu.cancel, r.mu.done
	r.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// work builds the environment and runs the trainer and the backward loop
// until the run is done, failed or ctx is cancelled.
func (r *run) work(ctx context.Context) {
	env, err := r.s.newEnv(ctx, r.cfg)
	if err != nil {
		// Step 0 marks a failure to start, which Resume may undo.
		if ctx.Err() == nil {
			r.fail(0, fmt.Sprintf("cannot start: %v", err))
		}
		return
	}
	r.setEnv(env)
	defer r.setEnv(nil)
	// Where a (re)start picks up: what an operator reads after a crash,
	// and what a test compares with the steps committed from here on.
	st := r.state()
	r.s.log.Info("computing run", "run", r.name, "forward_step", st.ForwardStep, "backward_step", st.BackwardStep)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := r.train(ctx, env); err != nil && ctx.Err() == nil {
			r.s.log.Error("forward trainer", "run", r.name, "err", err)
			r.fail(failedStep(err, r.state().ForwardStep+1), fmt.Sprintf("forward: %v", err))
			cancel()
		}
	}()
	if err := r.backward(ctx, env); err != nil && ctx.Err() == nil {
		r.s.log.Error("backward loop", "run", r.name, "err", err)
		r.fail(failedStep(err, r.state().BackwardStep+1), fmt.Sprintf("backward: %v", err))
	}
	cancel()
	wg.Wait()
}

// failedStep is the FailedStep of a run that failed at step with err: 0
// (a failure that is not the run's own, which Resume revives from what
// the store holds) when the store failed the write (ckpt.ErrWrite: EIO,
// a read-only file system, a failed sync).
func failedStep(err error, step int) int {
	if errors.Is(err, ckpt.ErrWrite) {
		return 0
	}
	return step
}

// update changes the run's state under mu and stores it. If fn returns
// false nothing is written.
func (r *run) update(fn func(st *ckpt.RunState) bool) error { return r.updateThen(fn, nil) }

// updateThen is update that also calls after (if not nil) once the state
// is stored, still under mu, so that an event about the new state is
// written before anyone can observe the state.
func (r *run) updateThen(fn func(st *ckpt.RunState) bool, after func()) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := cloneState(r.mu.st)
	if !fn(&st) {
		return nil
	}
	if err := r.s.store.PutState(r.name, st); err != nil {
		return err
	}
	st.ForwardStep = r.mu.st.ForwardStep
	r.mu.st = st
	if after != nil {
		after()
	}
	return nil
}

// fail marks the run failed at step with reason (once; a failed run stays
// failed) and stops its goroutines.
func (r *run) fail(step int, reason string) {
	err := r.updateThen(func(st *ckpt.RunState) bool {
		if st.State == ckpt.StateFailed {
			return false
		}
		st.State, st.Reason, st.FailedStep = ckpt.StateFailed, reason, step
		return true
	}, func() {
		r.s.event(r.name, "failed step=%d reason=%q", step, reason)
		r.s.log.Warn("run failed", "run", r.name, "step", step, "reason", reason)
	})
	r.mu.Lock()
	if err != nil && r.mu.st.State != ckpt.StateFailed {
		// The store cannot take the state either (the disk that failed
		// the run's write): the run is failed in memory, so that status
		// says so; after a restart the stored state resumes it.
		r.s.log.Error("store failed state", "run", r.name, "err", err)
		r.mu.st.State, r.mu.st.FailedStep = ckpt.StateFailed, step
		r.mu.st.Reason = fmt.Sprintf("%s (the failed state is not stored: %v)", reason, err)
		r.s.event(r.name, "failed step=%d reason=%q", step, r.mu.st.Reason)
	}
	cancel := r.mu.cancel
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// status is the run's api.RunStatus. Waiting is asked of the executor
// only while the run is running and its backward frontier is behind its
// forward step (then its jobs are queued), outside r.mu.
func (r *run) status() api.RunStatus {
	rs := r.baseStatus()
	if w, ok := r.s.opts.Executor.(waiter); ok && rs.State == ckpt.StateRunning && rs.BackwardStep < rs.ForwardStep {
		rs.Waiting = w.Waiting(r.name)
	}
	return rs
}

// baseStatus is status without Waiting.
func (r *run) baseStatus() api.RunStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.mu.st
	rs := api.RunStatus{
		Name: r.name, State: st.State, Reason: st.Reason, Spec: specOf(r.cfg, ""),
		Steps: r.cfg.Steps, ForwardStep: st.ForwardStep, BackwardStep: st.BackwardStep,
		Anchor: r.mu.anchor, Window: r.cfg.Window, Strategy: r.cfg.Strategy,
		ForwardLoss: r.mu.fwdLoss, BackwardLoss: r.mu.bwdLoss,
		Bitwise: r.cfg.Fingerprint != api.FingerprintAny,
	}
	if r.mu.full != nil && st.State == ckpt.StateRunning {
		// A loop waits for space (whileFull): paused, though the stored
		// state stays running so that a restart goes on by itself.
		rs.State, rs.Reason = ckpt.StatePaused, r.mu.full.Error()
	}
	for _, p := range st.PendingResets {
		rs.PendingReset = append(rs.PendingReset, p.Step)
	}
	if rs.State == ckpt.StateRunning && r.mu.cancel != nil {
		rs.OpsPerSec = r.mu.rate
		if r.mu.rate > 0 {
			if ops := remainingOps(r.cfg, st, r.mu.anchor.Step, r.mu.opsPerN); ops > 0 {
				rs.ETASeconds = ops / r.mu.rate
			}
		}
	}
	return rs
}

// noteOps records applications for the throughput figure of the status.
func (r *run) noteOps(applied int, steps int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.mu.rateAt.IsZero() {
		r.mu.rateAt = now
	}
	r.mu.opsSince += int64(applied)
	if steps > 0 {
		per := float64(applied) / float64(steps)
		if r.mu.opsPerN == 0 {
			r.mu.opsPerN = per
		} else {
			r.mu.opsPerN = 0.95*r.mu.opsPerN + 0.05*per
		}
	}
	if dt := now.Sub(r.mu.rateAt).Seconds(); dt >= 1 {
		cur := float64(r.mu.opsSince) / dt
		if r.mu.rate == 0 {
			r.mu.rate = cur
		} else {
			r.mu.rate = 0.7*r.mu.rate + 0.3*cur
		}
		r.mu.rateAt, r.mu.opsSince = now, 0
	}
}

func ptr(v float64) *float64 { return &v }

// remainingOps estimates the operator applications the run's backward
// iterates still need, from the frontier to the last step, over the jobs
// the run's anchor policy projects (replay.Policy.Project: the same rule
// that moves the anchors, trials assumed kept, their old side counted).
// A job n under anchor a costs n − a for window and full, n − max(a, n−W)
// for sliding, and the observed mean perN for memo, whose cost depends on
// the data. A mean would be wrong for the others: the cost of full grows
// with n, so a trajectory's remaining cost is quadratic.
func remainingOps(cfg ckpt.RunConfig, st ckpt.RunState, anchor int, perN float64) float64 {
	pc, plan := strategyOf(&cfg)
	pol := replay.NewPolicy(pc, replay.AnchorRef{Step: anchor}, 0, st.BackwardStep)
	pol.SetPending(policyResets(st.PendingResets))
	var ops float64
	pol.Project(func(n, a int) {
		switch {
		case plan.memo:
			ops += perN
		default:
			ops += float64(n - plan.job("", 0, 0, a, n).StartStep)
		}
	})
	return ops
}
