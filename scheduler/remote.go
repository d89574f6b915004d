package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/family"
)

// This file is the seam for executors outside the package (remote/: jobs
// on NATS JetStream) and for the processes that compute their jobs
// (`replayd worker`): they compute with the very code of the in-process
// pool (computeIterate, the same measures), so a remote result is bitwise
// the one the pool would have given on the same machine kind.

// ExecRun is what a remote executor is told of a run when its backward loop
// opens a queue (execRun without the in-process environment).
type ExecRun struct {
	Name   string
	Epoch  uint64
	Config ckpt.RunConfig
	Inputs JobInputs
	Flight int
}

// RemoteExecutor is an Executor implemented outside the package, under the
// same concurrency contract as Executor.
type RemoteExecutor interface {
	OpenRemote(x ExecRun) Queue
	// Slots is how many jobs the executor's workers can compute at once
	// now (≥ 0); the loops' pacing follows it.
	Slots() int
}

// waiter is what the status asks of Options.Executor, if it can tell (a
// type assertion: remote.Executor does): why run's backward jobs wait for
// a remote worker, "" when none is missing. Safe for concurrent use;
// called with no lock of the scheduler's held.
type waiter interface{ Waiting(run string) string }

// waitingEvery is how often watchWaiting asks the executor.
const waitingEvery = time.Second

// watchWaiting publishes a progress event of each running run whose
// waiting reason (RunStatus.Waiting) differs from the one its subscribers
// were last told, until quit is closed: a run that waits for a remote
// worker moves no step, so no other event would carry the reason to
// `replayctl status --watch` or the web view, nor tell them when a worker
// came. It compares with the broker's last published status, not with
// what it saw itself: a step's event may have carried a reason this loop
// never saw.
func (s *Scheduler) watchWaiting(quit <-chan struct{}) {
	t := time.NewTicker(waitingEvery)
	defer t.Stop()
	b := s.eventBroker()
	for {
		select {
		case <-quit:
			return
		case <-t.C:
		}
		s.mu.Lock()
		runs := make([]*run, 0, len(s.mu.runs))
		for _, r := range s.mu.runs {
			runs = append(runs, r)
		}
		s.mu.Unlock()
		for _, r := range runs {
			if r.state().State != ckpt.StateRunning {
				continue
			}
			if why := r.status().Waiting; why != b.lastWaiting(r.name) {
				r.publishProgress() // coalesced with one pending: that one computes the status later
			}
		}
	}
}

// remoteAdapter makes a RemoteExecutor an Executor.
type remoteAdapter struct{ r RemoteExecutor }

func (a remoteAdapter) Open(x execRun) Queue {
	return a.r.OpenRemote(ExecRun{Name: x.Name, Epoch: x.Epoch, Config: x.Config, Inputs: x.Inputs, Flight: x.Flight})
}

// WithExecutor sets Options.Executor.
func (o Options) WithExecutor(e RemoteExecutor) Options { o.Executor = e; return o }

// slots is how many jobs can run at once over all runs: the in-process
// pool's workers, or with an executor its workers' slots (at least one,
// so that a loop always keeps a job queued for the first remote worker to
// come).
func (s *Scheduler) slots() int {
	if s.opts.Executor != nil {
		return max(1, s.opts.Executor.Slots())
	}
	return max(1, s.opts.Workers)
}

// poolSize is how many in-process pool workers Run starts: none with an
// executor, which computes every job.
func (s *Scheduler) poolSize() int {
	if s.opts.Executor != nil {
		return 0
	}
	return s.opts.Workers
}

// Computer computes jobs outside a Scheduler: a remote worker's side of
// the seam. It loads data sets once each (like a Scheduler) and is safe
// for concurrent use; the Runners it returns are not.
type Computer struct{ s *Scheduler }

// NewComputer returns a Computer reading data sets with opts (DataDir,
// DataTimeout, Logger).
func NewComputer(opts Options) *Computer {
	s := &Scheduler{opts: opts, log: opts.Logger, data: map[dataKey]*dataLoad{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return &Computer{s: s}
}

// DataHash is the content hash of cfg's data set as loaded here (from
// cfg.DataPath, else the Computer's DataDir), or "" when its family has no
// family.DataHasher: what a worker compares with the run's
// RunConfig.DataHash before it takes the run's jobs.
func (c *Computer) DataHash(ctx context.Context, cfg ckpt.RunConfig) (string, error) {
	f, _, err := c.s.opts.sizeOf(cfg)
	if err != nil {
		return "", err
	}
	l, err := c.s.load(ctx, f, cfg)
	if err != nil {
		return "", err
	}
	return l.dataHash(f, familySpec(cfg))
}

// dataHash is f's hash of the loaded data d, "" when f cannot hash (the
// run's workers then take its jobs unchecked).
func dataHash(f family.Family, spec family.Spec, d family.Data) (string, error) {
	h, ok := f.(family.DataHasher)
	if !ok {
		return "", nil
	}
	sum, err := h.DataHash(spec, d)
	if err != nil {
		return "", fmt.Errorf("hash data set %s: %w", spec.Dataset, err)
	}
	return sum, nil
}

// Runner computes the jobs of one run configuration, one at a time, with
// its own scratch space and memo (as one in-process worker does).
type Runner struct {
	env    *runEnv
	wr     *workerRun
	in     JobInputs
	memo   [3]*memoState // per trial side, made on first use
	budget int64
}

// NewRunner builds the environment of cfg (model, data, operators); in
// gives the anchor starts and forward checkpoints its jobs read.
func (c *Computer) NewRunner(ctx context.Context, cfg ckpt.RunConfig, in JobInputs, memoBudget int64) (*Runner, error) {
	env, err := c.s.buildEnv(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &Runner{env: env, in: in, wr: newWorkerRun(env, in, &cfg, true), budget: memoBudget}, nil
}

// Compute computes j as the in-process pool does (pool.exec): Theta, the
// measures, Applied; Cancelled when ctx ends first; Err on failure.
func (r *Runner) Compute(ctx context.Context, j Job) Result {
	res := Result{Job: j}
	theta := make([]float32, r.env.model.Dim())
	var memo *memoState
	if j.Memo {
		if r.memo[j.Side] == nil {
			r.memo[j.Side] = newMemo(r.env, r.budget)
		}
		memo = r.memo[j.Side]
	}
	applied, err := computeIterate(ctx, j, r.wr, memo, r.in, theta)
	res.Applied = applied
	switch {
	case err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()):
		res.Cancelled = true
		return res
	case err != nil:
		res.Err = err.Error()
		return res
	}
	res.Theta = theta
	res.Metrics = ckpt.Metrics{Step: j.Step, Segment: j.Segment, Anchor: j.StartStep}
	r.wr.ev.measure(&res.Metrics, theta, j.Eval)
	if err := familyErr(r.wr.ev.m); err != nil {
		res.Err, res.Theta = err.Error(), nil
	}
	return res
}
