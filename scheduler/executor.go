package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/replay-sgd/replay/ckpt"
)

// Executor computes backward jobs; the backward loops are its clients. The
// in-process worker pool (pool) is the first implementation; a remote one
// (workers over NATS) fits the same shape, since a Job and a Result are
// plain values and what a job reads comes through JobInputs.
//
// Concurrency contract: Open is safe for concurrent use. A Queue belongs to
// the backward loop that opened it: only that goroutine sends on Jobs,
// receives from Results and calls Cancel and Close. The executor computes
// jobs on its own goroutines, any number at once, in any order. It may
// deliver a result more than once, or a result of an older generation (of
// this process or an earlier one): the loop accounts results by JobID and
// drops what it does not expect. It never blocks on a closed queue: after
// Close, jobs still running are dropped.
type Executor interface {
	// Open registers a run's backward loop and returns its queue.
	Open(x execRun) Queue
}

// Queue is one backward loop's connection to the executor.
type Queue interface {
	// Jobs accepts a job when the executor can take it (the in-process
	// pool: a send completes when a worker takes the job).
	Jobs() chan<- Job
	// Results delivers the results of the jobs sent.
	Results() <-chan Result
	// Cancel says that results of generations before gen are no longer
	// wanted: jobs of those generations may stop early and come back
	// Cancelled.
	Cancel(gen uint64)
	// Close unregisters the loop; jobs still running are dropped.
	Close()
}

// JobInputs is what a job reads besides its own fields: the start points of
// the run's anchors and its forward checkpoints. Safe for concurrent use.
type JobInputs interface {
	// AnchorStart returns the start point of anchor segment seg of run
	// (read only: the caller must not modify it).
	AnchorStart(run string, seg int) ([]float32, error)
	// NearestCheckpoint writes the forward checkpoint of run with the
	// largest step ≤ k into dst and returns its step.
	NearestCheckpoint(run string, k int, dst []float32) (int, error)
}

// execRun is what an executor is told of a run when its loop opens a queue.
type execRun struct {
	Name   string
	Epoch  uint64 // the loop's epoch: Job.Generation>>32
	Config ckpt.RunConfig
	Inputs JobInputs
	// env is the run's operators and data, for an in-process executor
	// (a remote one rebuilds them from Config).
	env        *runEnv
	memoBudget int64
	// Flight is the most jobs the loop keeps in flight: results of that
	// many are buffered, so that workers do not wait while the loop writes.
	Flight int
}

// runInputs implements JobInputs over the store, with the start points the
// backward loop holds in memory (the current anchor and a trial's
// candidate, which is stored only if it is kept). Starts are never modified
// once put, so they are handed out without copying.
type runInputs struct {
	store *ckpt.Store
	dim   int
	mu    struct {
		sync.Mutex
		starts map[int][]float32
	}
}

var _ JobInputs = (*runInputs)(nil)

func newRunInputs(store *ckpt.Store, dim int) *runInputs {
	in := &runInputs{store: store, dim: dim}
	in.mu.starts = map[int][]float32{}
	return in
}

// AnchorStart implements JobInputs.
func (in *runInputs) AnchorStart(run string, seg int) ([]float32, error) {
	in.mu.Lock()
	v, ok := in.mu.starts[seg]
	in.mu.Unlock()
	if ok {
		return v, nil
	}
	v = make([]float32, in.dim)
	if err := in.store.AnchorStart(run, seg, v); err != nil {
		return nil, fmt.Errorf("anchor start of segment %d: %w", seg, err)
	}
	return v, nil
}

// NearestCheckpoint implements JobInputs.
func (in *runInputs) NearestCheckpoint(run string, k int, dst []float32) (int, error) {
	return in.store.NearestCheckpoint(run, k, dst)
}

func (in *runInputs) put(seg int, start []float32) {
	in.mu.Lock()
	in.mu.starts[seg] = start
	in.mu.Unlock()
}

func (in *runInputs) drop(seg int) {
	in.mu.Lock()
	delete(in.mu.starts, seg)
	in.mu.Unlock()
}

// pool is the in-process executor: Options.Workers goroutines
// (Scheduler.worker) take jobs from one unbuffered channel shared by every
// run and find the job's run by name in the registry.
type pool struct {
	jobs chan Job
	met  *collectors
	mu   struct {
		sync.Mutex
		runs map[string]*poolRun
	}
}

var _ Executor = (*pool)(nil)

func newPool(jobs chan Job, met *collectors) *pool {
	p := &pool{jobs: jobs, met: met}
	p.mu.runs = map[string]*poolRun{}
	return p
}

// Open implements Executor.
func (p *pool) Open(x execRun) Queue {
	q := &poolRun{p: p, x: x, results: make(chan Result, max(1, x.Flight)), closed: make(chan struct{})}
	q.mu.ctx, q.mu.cancel = context.WithCancel(context.Background())
	p.mu.Lock()
	p.mu.runs[x.Name] = q
	p.mu.Unlock()
	return q
}

// lookup returns the queue a job belongs to, or nil when its loop is gone
// (closed, or another epoch).
func (p *pool) lookup(j Job) *poolRun {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.mu.runs[j.Run]
	if q == nil || q.x.Epoch != j.Generation>>32 {
		return nil
	}
	return q
}

// poolRun is a Queue of the pool.
type poolRun struct {
	p       *pool
	x       execRun
	results chan Result
	closed  chan struct{}
	mu      struct {
		sync.Mutex
		gen    uint64
		ctx    context.Context // of generation gen and later
		cancel context.CancelFunc
		memo   [3]*memoState // per trial side; memo jobs of a run come one at a time
	}
}

func (q *poolRun) Jobs() chan<- Job       { return q.p.jobs }
func (q *poolRun) Results() <-chan Result { return q.results }

// Cancel implements Queue.
func (q *poolRun) Cancel(gen uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if gen <= q.mu.gen {
		return
	}
	q.mu.cancel()
	q.mu.gen = gen
	q.mu.ctx, q.mu.cancel = context.WithCancel(context.Background())
}

// Close implements Queue.
func (q *poolRun) Close() {
	q.p.mu.Lock()
	if q.p.mu.runs[q.x.Name] == q {
		delete(q.p.mu.runs, q.x.Name)
	}
	q.p.mu.Unlock()
	q.mu.Lock()
	q.mu.cancel()
	q.mu.Unlock()
	close(q.closed)
}

// jobCtx is the context a job of generation gen runs under (done when the
// generation is cancelled).
func (q *poolRun) jobCtx(gen uint64) context.Context {
	q.mu.Lock()
	defer q.mu.Unlock()
	if gen < q.mu.gen {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx
	}
	return q.mu.ctx
}

// memo returns the run's memoized evaluator of a trial side.
func (q *poolRun) memo(side int) *memoState {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.mu.memo[side] == nil {
		q.mu.memo[side] = newMemo(q.x.env, q.x.memoBudget)
	}
	return q.mu.memo[side]
}

// deliver hands a result to the loop, or drops it if the loop is gone.
func (q *poolRun) deliver(res Result) {
	select {
	case q.results <- res:
	case <-q.closed:
		q.x.env.putBuf(res.Theta)
	}
}

// exec computes a job.
func (p *pool) exec(j Job, q *poolRun, wr *workerRun) Result {
	t0 := time.Now()
	res := Result{Job: j}
	theta := q.x.env.getBuf()
	var memo *memoState
	if j.Memo {
		memo = q.memo(j.Side)
	}
	ctx := q.jobCtx(j.Generation)
	applied, err := computeIterate(ctx, j, wr, memo, q.x.Inputs, theta)
	res.Applied = applied
	p.met.ops.Add(float64(applied))
	switch {
	case err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()):
		res.Cancelled = true
		q.x.env.putBuf(theta)
		return res
	case err != nil:
		res.Err = err.Error()
		q.x.env.putBuf(theta)
		return res
	}
	res.Theta = theta
	res.Metrics = ckpt.Metrics{Step: j.Step, Segment: j.Segment, Anchor: j.StartStep}
	wr.ev.measure(&res.Metrics, theta, j.Eval)
	if err := familyErr(wr.ev.m); err != nil {
		res.Err, res.Theta = err.Error(), nil
		q.x.env.putBuf(theta)
		return res
	}
	d := time.Since(t0)
	p.met.jobSecs.Observe(d.Seconds())
	p.met.busy.Add(int64(d))
	return res
}
