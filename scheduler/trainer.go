package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/replay-sgd/replay/ckpt"
)

// forwardChunk is how many forward steps are logged per store transaction
// at most (checkpoints, the last step and waits for the backward loop flush
// earlier).
const forwardChunk = 64

// spacePoll is how often a trainer paused by a full disk (ckpt.SpaceError)
// tries its write again: the condition it waits for is the file system's.
const spacePoll = time.Second

// whileFull calls write until the store does not refuse it for want of
// space (a ckpt.SpaceError: nothing was written), trying again every
// spacePoll, and gives up with the refusal when ctx is done. The trainer and
// the backward loop both pause this way on a full disk, keeping what they
// have to write in memory, so the run stays bitwise what it would have been;
// the status shows the store's reason meanwhile.
func whileFull(ctx context.Context, write func() error) error {
	for {
		err := write()
		var se *ckpt.SpaceError
		if !errors.As(err, &se) {
			return err
		}
		t := time.NewTimer(spacePoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// train is the forward trainer: it resumes from the logged forward step
// (nearest checkpoint, then the batch log) and trains to the run's end,
// paced so that the next step never runs more than MaxLag steps ahead of the
// backward frontier.
func (r *run) train(ctx context.Context, env *runEnv) error {
	cfg := &r.cfg
	f := r.state().ForwardStep
	if f >= cfg.Steps {
		return nil
	}
	sgd := env.proto.Clone()
	theta := make([]float32, cfg.Dim)
	k, err := r.s.store.NearestCheckpoint(r.name, f, theta)
	if err != nil {
		return fmt.Errorf("resume at step %d: %w", f, err)
	}
	for j := k + 1; j <= f; j++ {
		sgd.Apply(j, theta)
	}
	if err := familyErr(sgd); err != nil {
		return fmt.Errorf("resume at step %d: %w", f, err)
	}
	prev := make([]float32, cfg.Dim)
	copy(prev, theta)
	ev := env.evaluators()
	var chunk []ckpt.ForwardStep
	var lastLoss = math.NaN()

	var commit func() error
	// A full disk pauses the trainer, not the run: the chunk waits in
	// memory (bitwise the same steps) until the store has room again.
	flush := func() error { return whileFull(ctx, commit) }
	commit = func() error {
		if len(chunk) == 0 {
			return nil
		}
		last := chunk[len(chunk)-1].Step
		r.mu.Lock()
		st := cloneState(r.mu.st)
		st.ForwardStep = last
		err := r.s.store.AppendForward(r.name, chunk, st)
		if err == nil {
			r.mu.hungry = false
			r.mu.st.ForwardStep = last
			if !math.IsNaN(lastLoss) {
				r.mu.fwdLoss = ptr(lastLoss)
			}
		}
		r.mu.Unlock()
		if err != nil {
			return err
		}
		r.s.met.steps.WithLabelValues("forward").Add(float64(len(chunk)))
		chunk = chunk[:0]
		kick(r.bwdKick)
		r.publishProgress()
		return nil
	}

	for n := f + 1; n <= cfg.Steps; n++ {
		for n-r.frontierFloor() > r.s.opts.MaxLag {
			if err := flush(); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return nil
			case <-r.fwdKick:
			}
		}
		if ctx.Err() != nil {
			return flush()
		}
		// The batch comes from env.log (the run's sampler), as for every
		// other application of T_n.
		sgd.Apply(n, theta)
		r.s.met.ops.Add(1)
		eval := evalDue(cfg, n)
		m := ckpt.Metrics{Step: n}
		ev.measure(&m, theta, eval)
		if err := familyErr(sgd, ev.m); err != nil {
			// Before the divergence check: a failed evaluation's NaNs
			// are not a divergence.
			if ferr := flush(); ferr != nil {
				return ferr
			}
			return fmt.Errorf("forward step %d: %w", n, err)
		}
		m.StepDist = env.stepDist(theta, prev)
		if why := diverged(&m, eval); why != "" {
			if err := flush(); err != nil {
				return err
			}
			r.fail(n, "forward step "+fmt.Sprint(n)+": "+why)
			return nil
		}
		if eval {
			lastLoss = m.Loss
		}
		chunk = append(chunk, ckpt.ForwardStep{Step: n, Batch: env.log.Batch(n), Metrics: m, HasMetrics: true})
		copy(prev, theta)
		ckptDue := n%cfg.CheckpointEvery == 0 || n == cfg.Steps
		if ckptDue {
			// The checkpoint goes in the same transaction as the state
			// that counts step n (flushed just below, before theta
			// changes): committed apart, a crash between the two would
			// resume after n and lose checkpoint n for good.
			chunk[len(chunk)-1].Checkpoint = theta
		}
		// The backward loop has run out of logged steps (at the start,
		// after a reset): log this one now rather than at the chunk's end.
		if ckptDue || len(chunk) >= forwardChunk || r.hungry() {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}
