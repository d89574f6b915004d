package scheduler

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/replay"
)

// Flush policy of the committer: results are written when this many are
// waiting, when the oldest has waited flushInterval, at every anchor, and
// when the loop stops.
const (
	flushCount    = 64
	flushInterval = 250 * time.Millisecond
)

// anchorState is an anchor of the current lineage. start is only held for
// the last anchor (the one jobs run under); older ones are loaded from the
// store when a reset needs them.
type anchorState struct {
	seg, step int
	from      string
	start     []float32
}

// trial is the executor's side of an adaptive reset being decided (the
// policy decides what to dispatch): both the old anchor continued and the
// candidate are computed over the horizon N+1..N+H, and committed in order
// per side.
type trial struct {
	n, h      int
	cand, old anchorState
	buf       [2]map[int]Result
	done      [2]int // last step processed in order per side
	prev      [2][]float32
	res       [2][]ckpt.BackwardResult
	sum       [2]float64
}

// bwdLoop is the backward job stream of one run: it executes the actions
// of the run's replay.Policy (dispatch, move anchor, trial, rollback),
// reorders results and commits them, in one goroutine, so that anchors,
// the frontier and the reorder buffer have a single owner. Where the
// anchor goes is the policy's business only.
type bwdLoop struct {
	r   *run
	s   *Scheduler
	env *runEnv
	cfg *ckpt.RunConfig
	ctx context.Context

	pol     *replay.Policy
	lineage []anchorState // the anchors' start points (the last one's in memory)
	prev    []float32
	prevOK  bool

	// b is the frontier the next flush writes: the last step whose result
	// is stored or pending (the policy's frontier, except while a trial's
	// winner is being committed).
	b         int
	act       replay.Action // the dispatch Next returned, Advanced when sent
	done      bool          // the policy said ActDone
	plan      execPlan
	pc        replay.PolicyConfig
	q         Queue
	in        *runInputs
	gen       uint64             // current generation (epoch<<32 | rollbacks)
	flight    map[JobID]struct{} // dispatched, not yet received
	maxFlight int
	buf       map[int]Result

	pending    []ckpt.BackwardResult
	removals   []ckpt.Reset // applied manual resets to drop from the state at the next flush
	firstPend  time.Time
	memo       *memoState // strategy memo: the loop's own, for recomputations (the workers' are the pool's)
	cursor     *forwardCursor
	wr         *workerRun
	trial      *trial
	trialAct   replay.Action // the ActTrial being decided
	stopped    bool          // failed: stop without further writes
	recomputed int           // operator applications spent outside jobs
}

// backward runs the backward loop of r until the run is done or failed or
// ctx is cancelled.
func (r *run) backward(ctx context.Context, env *runEnv) error {
	s := r.s
	b := &bwdLoop{r: r, s: s, env: env, cfg: &r.cfg, ctx: ctx, buf: map[int]Result{}, flight: map[JobID]struct{}{}}
	b.pc, b.plan = strategyOf(b.cfg)
	b.maxFlight = 2 * s.slots()
	if b.plan.memo {
		b.maxFlight = 1
	}
	// A new epoch at every start, stored before any job is issued: the
	// generations of this loop differ from those of every earlier one.
	if err := r.update(func(st *ckpt.RunState) bool { st.Epoch++; return true }); err != nil {
		return err
	}
	b.gen = r.state().Epoch << 32
	b.in = newRunInputs(s.store, b.cfg.Dim)
	b.q = s.exec.Open(execRun{
		Name: r.name, Epoch: r.state().Epoch, Config: r.cfg, Inputs: b.in,
		env: env, memoBudget: s.opts.MemoBudget, Flight: b.maxFlight,
	})
	s.loops.Add(1)
	defer s.loops.Add(-1)
	b.wr = newWorkerRun(env, b.in, b.cfg, false)
	b.cursor = newForwardCursor(b.in, b.cfg, env.proto.Clone())
	defer b.shutdown()
	if err := b.init(); err != nil {
		return err
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if err := b.commit(); err != nil {
			return err
		}
		if b.stopped {
			return nil
		}
		if len(b.pending) >= flushCount || len(b.pending) > 0 && time.Since(b.firstPend) >= flushInterval {
			if err := b.flush(); err != nil {
				return err
			}
		}
		j, ok, err := b.next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if b.stopped {
			return nil
		}
		if !ok && b.done {
			return b.finish()
		}
		var send chan<- Job
		if ok {
			send = b.q.Jobs()
		}
		var tick <-chan time.Time
		if len(b.pending) > 0 {
			timer.Reset(max(time.Millisecond, flushInterval-time.Since(b.firstPend)))
			tick = timer.C
		}
		select {
		case send <- j:
			b.sent(j)
		case res := <-b.q.Results():
			b.receive(res)
		case <-r.bwdKick:
		case <-tick:
		case <-ctx.Done():
			return nil
		}
	}
}

// newGen starts a new generation: the results of the jobs in flight are
// stale (they are still received, and dropped).
func (b *bwdLoop) newGen() {
	b.gen++
	b.q.Cancel(b.gen)
}

// execPlan is how a strategy's jobs are evaluated.
type execPlan struct {
	slide int  // sliding window W (0: none): start from θ_{n−W}
	memo  bool // with the run's memoized evaluator
}

// strategyOf is the one place where the scheduler tells strategies apart:
// their anchor policy — window and memo have the window's periodic resets
// (memo moves its anchors exactly as window does; only the evaluator
// differs), full and sliding only the manual ones (sliding's window is not
// an anchor) — and how their jobs are evaluated.
func strategyOf(cfg *ckpt.RunConfig) (replay.PolicyConfig, execPlan) {
	pc := replay.PolicyConfig{
		Steps: cfg.Steps, From: replay.Source(cfg.ResetFrom),
		Improve: cfg.ResetPolicy == PolicyImprove, Horizon: cfg.ResetHorizon, BackwardFrom: cfg.BackwardFrom,
	}
	var plan execPlan
	switch cfg.Strategy {
	case StrategyWindow:
		pc.Window = cfg.Window
	case StrategyMemo:
		pc.Window = cfg.Window
		plan.memo = true
	case StrategySliding:
		plan.slide = cfg.Window
	}
	return pc, plan
}

// job is the Job of θ̃_step under the anchor (seg, anchorStep).
func (p execPlan) job(run string, gen uint64, seg, anchorStep, step int) Job {
	j := Job{Run: run, Generation: gen, Segment: seg, AnchorStep: anchorStep, Step: step, StartStep: anchorStep, Memo: p.memo}
	if p.slide > 0 && step-p.slide > anchorStep {
		j.StartStep, j.StartForward = step-p.slide, true
	}
	return j
}

func policyResets(rs []ckpt.Reset) []replay.Reset {
	out := make([]replay.Reset, len(rs))
	for i, r := range rs {
		out[i] = replay.Reset{Step: r.Step, From: replay.Source(r.From)}
	}
	return out
}

func ckptReset(r *replay.Reset) *ckpt.Reset {
	if r == nil {
		return nil
	}
	return &ckpt.Reset{Step: r.Step, From: string(r.From)}
}

// init loads the anchors and the frontier, builds the policy from them and
// recomputes θ̃ at the frontier (needed for the step distance of the next
// iterate and as a reset start).
func (b *bwdLoop) init() error {
	r, store := b.r, b.s.store
	recs, err := store.Anchors(r.name)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return fmt.Errorf("run has no anchor: %w", ckpt.ErrCorrupt)
	}
	slices.SortFunc(recs, func(x, y ckpt.AnchorRec) int { return x.Segment - y.Segment })
	nextSeg := 0
	for _, a := range recs {
		b.push(anchorState{seg: a.Segment, step: a.Step, from: a.From})
		nextSeg = a.Segment + 1
	}
	last := &b.lineage[len(b.lineage)-1]
	last.start = make([]float32, b.cfg.Dim)
	if err := store.AnchorStart(r.name, last.seg, last.start); err != nil {
		return err
	}
	b.in.put(last.seg, last.start)
	st := r.state()
	b.b = st.BackwardStep
	// An anchor written just before a crash, with the state that applied
	// its manual reset lost: the reset is done.
	applied := -1
	for i, p := range st.PendingResets {
		if last.seg > 0 && p.Step == last.step && p.From == last.from {
			applied = i
			break
		}
	}
	// The configured resets, in case the state that scheduled them at
	// creation was lost (no reset can have been applied yet).
	fresh := len(recs) == 1 && b.b == 0
	if applied >= 0 || fresh {
		err := r.update(func(st *ckpt.RunState) bool {
			if applied >= 0 {
				st.PendingResets = slices.Delete(st.PendingResets, applied, applied+1)
				st.BackwardStep = min(st.BackwardStep, last.step)
			}
			if fresh {
				for _, n := range b.cfg.ResetAt {
					rs := ckpt.Reset{Step: n, From: b.cfg.ResetFrom}
					if !slices.Contains(st.PendingResets, rs) {
						st.PendingResets = append(st.PendingResets, rs)
					}
				}
				sortResets(st.PendingResets)
			}
			return true
		})
		if err != nil {
			return err
		}
		b.b = r.state().BackwardStep
	}
	// The first anchor of a run with backward_from written just before a
	// crash, without the state that moved the frontier to it.
	b.b = max(b.b, last.step)
	b.pol = replay.NewPolicy(b.pc, replay.AnchorRef{Segment: last.seg, Step: last.step, From: replay.Source(last.from)}, nextSeg, b.b)
	b.publishAnchor()
	if b.cfg.BackwardFrom > 0 && last.step < b.cfg.BackwardFrom {
		return nil // the first anchor comes when the trainer reaches it
	}
	b.prev = make([]float32, b.cfg.Dim)
	if err := b.iterate(b.prev, b.b); err != nil {
		return err
	}
	b.prevOK = true
	return nil
}

// push appends a to the lineage, dropping the anchors it supersedes (those
// at or after its step: their segments stay stored but no longer produce
// iterates).
func (b *bwdLoop) push(a anchorState) {
	for len(b.lineage) > 0 && b.lineage[len(b.lineage)-1].step >= a.step {
		b.lineage = b.lineage[:len(b.lineage)-1]
	}
	if len(b.lineage) > 0 {
		b.lineage[len(b.lineage)-1].start = nil
		b.in.drop(b.lineage[len(b.lineage)-1].seg)
	}
	b.lineage = append(b.lineage, a)
	b.in.put(a.seg, a.start)
}

func (b *bwdLoop) last() *anchorState { return &b.lineage[len(b.lineage)-1] }

func (b *bwdLoop) publishAnchor() {
	a := b.last()
	b.r.mu.Lock()
	b.r.mu.anchor = api.AnchorInfo{Segment: a.seg, Step: a.step, From: a.from}
	b.r.mu.Unlock()
}

// iterate writes into dst θ̃_n of the current lineage (the anchor with the
// largest step ≤ n), computing it in this goroutine.
func (b *bwdLoop) iterate(dst []float32, n int) error {
	i := len(b.lineage) - 1
	for i > 0 && b.lineage[i].step > n {
		i--
	}
	a := b.lineage[i]
	if n == a.step {
		start, err := b.in.AnchorStart(b.r.name, a.seg)
		if err != nil {
			return err
		}
		copy(dst, start)
		return nil
	}
	j := b.newJob(n, a.seg, a.step, replay.SideNone)
	if j.Memo && b.memo == nil {
		// Budget 0: a one-off recomputation needs no chain levels (the
		// coalescence memo is exact, so its bits are Direct's), and the
		// workers' memos already hold the run's budget.
		b.memo = newMemo(b.env, 0)
	}
	applied, err := computeIterate(b.ctx, j, b.wr, b.memo, b.in, dst)
	b.recomputed += applied
	b.s.met.ops.Add(float64(applied))
	return err
}

func (b *bwdLoop) newJob(n, seg, anchorStep int, side int) Job {
	// Trial jobs measure their losses (the decision compares them), and
	// so do the steps the adaptive policy wants measured.
	eval := side != replay.SideNone || evalDue(b.cfg, n) || b.pc.Measured(n, anchorStep)
	j := b.plan.job(b.r.name, b.gen, seg, anchorStep, n)
	j.Strategy, j.Side, j.Eval = b.cfg.Strategy, side, eval
	return j
}

// job is the Job of a dispatch action.
func (b *bwdLoop) job(a replay.Action) Job { return b.newJob(a.Step, a.Segment, a.AnchorStep, a.Side) }

// next returns the next job to dispatch, if any, after performing the
// anchor changes the policy asks for.
func (b *bwdLoop) next() (Job, bool, error) {
	for {
		st := b.r.state()
		b.pol.Logged(st.ForwardStep)
		b.pol.SetPending(policyResets(st.PendingResets))
		a := b.pol.Next(b.flightLimit())
		b.done = a.Kind == replay.ActDone
		var err error
		switch a.Kind {
		case replay.ActDispatch:
			b.act = a
			return b.job(a), true, nil
		case replay.ActWait, replay.ActDone:
			if a.Hungry {
				b.r.mu.Lock()
				b.r.mu.hungry = true
				b.r.mu.Unlock()
			}
			return Job{}, false, nil
		case replay.ActRollback:
			err = b.rollback(a)
		case replay.ActMove:
			err = b.move(a)
		case replay.ActTrial:
			err = b.startTrial(a)
		}
		if err != nil {
			return Job{}, false, err
		}
	}
}

// rollback discards the work after step a.To (a manual reset there): jobs
// in flight are cancelled and, if a.To is before the frontier, the frontier
// moves back to it (the stored results of later steps stay in their
// segments).
func (b *bwdLoop) rollback(a replay.Action) error {
	b.newGen()
	for _, res := range b.buf {
		b.env.putBuf(res.Theta)
	}
	clear(b.buf)
	b.trial = nil
	if a.To < b.b {
		if err := b.flush(); err != nil {
			return err
		}
		b.b = a.To
		b.prevOK = false
	}
	b.pol.Advance(a)
	return nil
}

// ensurePrev makes b.prev θ̃ at the frontier n of the lineage (after a
// rollback it is not known): the backward start, the previous iterate of
// the next step and the old side of a trial.
func (b *bwdLoop) ensurePrev(n int) error {
	if b.prevOK {
		return nil
	}
	if b.prev == nil {
		b.prev = make([]float32, b.cfg.Dim)
	}
	if err := b.iterate(b.prev, n); err != nil {
		return err
	}
	b.prevOK = true
	return nil
}

// startOf computes the start point of an anchor at n (the frontier).
func (b *bwdLoop) startOf(n int, from replay.Source) ([]float32, error) {
	start := make([]float32, b.cfg.Dim)
	if from == replay.SourceForward {
		if err := b.cursor.Forward(start, n); err != nil {
			return nil, err
		}
		return start, nil
	}
	if err := b.ensurePrev(n); err != nil {
		return nil, err
	}
	copy(start, b.prev)
	return start, nil
}

// move performs an ActMove: the anchor moves to a.Anchor.Step (the
// frontier, nothing in flight).
func (b *bwdLoop) move(a replay.Action) error {
	start, err := b.startOf(a.Anchor.Step, a.Anchor.From)
	if err != nil {
		return err
	}
	if err := b.storeAnchor(a, start); err != nil {
		return err
	}
	b.pol.Advance(a)
	return nil
}

// storeAnchor stores the anchor of a move at its step n (the frontier) and
// makes it current; θ̃_n is its start.
func (b *bwdLoop) storeAnchor(a replay.Action, start []float32) error {
	if err := b.flush(); err != nil {
		return err
	}
	n, from := a.Anchor.Step, string(a.Anchor.From)
	as := anchorState{seg: a.Anchor.Segment, step: n, from: from, start: start}
	if err := b.r.whileFull(b.ctx, func() error {
		return b.s.store.PutAnchor(b.r.name, ckpt.AnchorRec{Segment: as.seg, Step: n, From: from}, start)
	}); err != nil {
		return err
	}
	b.push(as)
	b.s.event(b.r.name, "anchor segment=%d step=%d from=%s reason=%s", as.seg, n, from, a.Reason)
	b.b = n
	if b.prev == nil {
		b.prev = make([]float32, b.cfg.Dim)
	}
	copy(b.prev, start)
	b.prevOK = true
	b.publishAnchor()
	manual := ckptReset(a.Manual)
	return b.r.whileFull(b.ctx, func() error {
		return b.r.update(func(st *ckpt.RunState) bool {
			st.BackwardStep = n
			if manual != nil {
				st.PendingResets = removeReset(st.PendingResets, *manual)
			}
			return true
		})
	})
}

func removeReset(rs []ckpt.Reset, x ckpt.Reset) []ckpt.Reset {
	if i := slices.Index(rs, x); i >= 0 {
		return slices.Delete(slices.Clone(rs), i, i+1)
	}
	return rs
}

func sortResets(rs []ckpt.Reset) {
	slices.SortStableFunc(rs, func(x, y ckpt.Reset) int { return x.Step - y.Step })
}

// sent records a dispatched job.
func (b *bwdLoop) sent(j Job) {
	b.s.met.queue.Inc()
	b.flight[j.ID()] = struct{}{}
	b.pol.Advance(b.act)
}

// receive files a job's result in the reorder buffer. Results are
// accounted by job identity: one that is not in flight (a duplicate, or a
// job of an earlier epoch) is dropped without a trace; one of an earlier
// generation of this loop (dispatched before a rollback) is counted out of
// the flight and dropped.
func (b *bwdLoop) receive(res Result) {
	id := res.Job.ID()
	if _, ok := b.flight[id]; !ok {
		b.env.putBuf(res.Theta)
		return
	}
	delete(b.flight, id)
	b.pol.Received()
	b.s.met.queue.Dec()
	if res.Job.Generation != b.gen || res.Cancelled {
		b.env.putBuf(res.Theta)
		return
	}
	if res.Err != "" {
		// An error of the store or of a shape: fatal for the run.
		b.r.fail(res.Job.Step, fmt.Sprintf("backward step %d: %s", res.Job.Step, res.Err))
		b.stopped = true
		return
	}
	b.r.noteOps(res.Applied, 1)
	if res.Job.Side != replay.SideNone && b.trial != nil {
		b.trial.buf[res.Job.Side-1][res.Job.Step] = res
		return
	}
	b.buf[res.Job.Step] = res
}

// commit moves the results that continue the frontier to the pending
// writes, computing their step distances.
func (b *bwdLoop) commit() error {
	if b.trial != nil {
		return b.commitTrial()
	}
	for {
		n := b.b + 1
		res, ok := b.buf[n]
		if !ok {
			return nil
		}
		delete(b.buf, n)
		if !b.prevOK {
			return fmt.Errorf("backward step %d: no previous iterate (internal error)", n)
		}
		m := res.Metrics
		m.StepDist = b.env.stepDist(res.Theta, b.prev)
		if why := diverged(&m, res.Job.Eval); why != "" {
			return b.diverge(n, res.Job.Segment, why)
		}
		b.add(ckpt.BackwardResult{Segment: res.Job.Segment, Step: n, Metrics: m}, res.Theta)
		b.b = n
		b.pol.Committed(n)
	}
}

// add queues a result for writing and makes theta the previous iterate.
func (b *bwdLoop) add(br ckpt.BackwardResult, theta []float32) {
	if br.Step == b.cfg.Steps {
		br.Theta = slices.Clone(theta) // the last backward iterate is kept
	}
	if len(b.pending) == 0 {
		b.firstPend = time.Now()
	}
	b.pending = append(b.pending, br)
	b.env.putBuf(b.prev)
	b.prev, b.prevOK = theta, true
}

func (b *bwdLoop) diverge(n, seg int, why string) error {
	if err := b.flush(); err != nil {
		return err
	}
	b.r.fail(n, fmt.Sprintf("backward step %d (segment %d): %s", n, seg, why))
	b.stopped = true
	return nil
}

// flush writes the pending results with the state (frontier, applied
// resets) in one store call; a full disk pauses the loop (whileFull) with
// them in memory.
func (b *bwdLoop) flush() error { return b.r.whileFull(b.ctx, b.flushOnce) }

// flushOnce is one attempt of flush.
func (b *bwdLoop) flushOnce() error {
	if len(b.pending) == 0 && len(b.removals) == 0 {
		return nil
	}
	r := b.r
	r.mu.Lock()
	st := cloneState(r.mu.st)
	st.BackwardStep = b.b
	for _, x := range b.removals {
		st.PendingResets = removeReset(st.PendingResets, x)
	}
	err := b.s.store.PutBackward(r.name, b.pending, &st)
	if err == nil {
		st.ForwardStep = r.mu.st.ForwardStep
		r.mu.st = st
		for i := len(b.pending) - 1; i >= 0; i-- {
			if l := b.pending[i].Metrics.Loss; !math.IsNaN(l) {
				r.mu.bwdLoss = ptr(l)
				break
			}
		}
	}
	r.mu.Unlock()
	if err != nil {
		return err
	}
	b.s.met.steps.WithLabelValues("backward").Add(float64(len(b.pending)))
	b.pending = b.pending[:0]
	b.removals = b.removals[:0]
	kick(r.fwdKick)
	r.publishProgress() // events helper: the backward frontier moved
	return nil
}

// finish writes what is pending and marks the run done.
func (b *bwdLoop) finish() error {
	if err := b.flush(); err != nil {
		return err
	}
	return b.r.whileFull(b.ctx, func() error {
		return b.r.updateThen(func(st *ckpt.RunState) bool {
			if st.State != ckpt.StateRunning {
				return false
			}
			st.State, st.Reason = ckpt.StateDone, ""
			return true
		}, func() {
			b.s.event(b.r.name, "done forward=%d backward=%d", b.cfg.Steps, b.b)
		})
	})
}

// shutdown cancels the jobs in flight, collects them, and writes the
// results that continue the frontier.
func (b *bwdLoop) shutdown() {
	b.newGen()
	for len(b.flight) > 0 {
		b.receive(<-b.q.Results())
	}
	b.q.Close()
	if b.stopped {
		return
	}
	b.trial = nil
	if err := b.commit(); err == nil && !b.stopped {
		err = b.flush()
		if err != nil {
			b.s.log.Error("write backward results at stop", "run", b.r.name, "err", err)
		}
	}
}

// startTrial performs an ActTrial: the adaptive comparison of the anchor
// move to n = a.Anchor.Step (the frontier, nothing in flight).
func (b *bwdLoop) startTrial(a replay.Action) error {
	n := a.Anchor.Step
	if err := b.ensurePrev(n); err != nil {
		return err
	}
	start, err := b.startOf(n, a.Anchor.From)
	if err != nil {
		return err
	}
	b.trial = &trial{
		n: n, h: a.Horizon,
		cand: anchorState{seg: a.Anchor.Segment, step: n, from: string(a.Anchor.From), start: start},
		old:  *b.last(),
		buf:  [2]map[int]Result{{}, {}},
		done: [2]int{n, n},
		prev: [2][]float32{slices.Clone(b.prev), slices.Clone(start)},
	}
	b.in.put(a.Anchor.Segment, start)
	b.trialAct = a
	b.pol.Advance(a)
	return nil
}

// flightLimit is how many jobs the loop may have in flight now: maxFlight
// when it is the only backward loop, else its share of the workers (at
// least one). The workers take waiting jobs first come, first served, so
// without the share a run of long jobs (strategy full: up to n applications
// each) would hold every worker, and a run of short jobs beside it would get
// one job through each time a long one ends. Which worker computes a job
// never reaches a stored number, so the share changes only the timing.
func (b *bwdLoop) flightLimit() int {
	n := int(b.s.loops.Load())
	lim := b.maxFlight
	if b.s.opts.Executor != nil && lim > 1 {
		lim = 2 * b.s.slots() // remote workers come and go (memo stays at 1)
	}
	if n <= 1 {
		return lim
	}
	return min(lim, max(1, b.s.slots()/n))
}

// commitTrial processes trial results in order per side and, when both
// sides are complete, decides (replay.TrialKeeps) and commits the winner.
func (b *bwdLoop) commitTrial() error {
	t := b.trial
	for i := range 2 {
		for {
			n := t.done[i] + 1
			res, ok := t.buf[i][n]
			if !ok {
				break
			}
			delete(t.buf[i], n)
			m := res.Metrics
			m.StepDist = b.env.stepDist(res.Theta, t.prev[i])
			b.env.putBuf(t.prev[i])
			t.prev[i] = res.Theta
			t.sum[i] += m.Loss
			br := ckpt.BackwardResult{Segment: res.Job.Segment, Step: n, Metrics: m}
			if n == b.cfg.Steps {
				br.Theta = slices.Clone(res.Theta)
			}
			t.res[i] = append(t.res[i], br)
			t.done[i] = n
		}
	}
	if t.done[0] < t.n+t.h || t.done[1] < t.n+t.h {
		return nil
	}
	b.trial = nil
	oldLoss, newLoss := t.sum[0]/float64(t.h), t.sum[1]/float64(t.h)
	keep := replay.TrialKeeps(newLoss, oldLoss)
	decision := "rejected"
	if keep {
		decision = "kept"
	}
	a := b.trialAct
	b.s.event(b.r.name, "adaptive step=%d reason=%s decision=%s new_loss=%.6g old_loss=%.6g horizon=%d",
		t.n, a.Reason, decision, newLoss, oldLoss, t.h)
	win := 0
	if keep {
		win = 1
		// Stored before the policy hears of it: the flush in storeAnchor
		// writes the frontier at the trial's start.
		if err := b.storeAnchor(a, t.cand.start); err != nil {
			return err
		}
	} else {
		b.in.drop(t.cand.seg)
		if m := ckptReset(a.Manual); m != nil {
			b.removals = append(b.removals, *m)
		}
	}
	b.pol.Decide(keep)
	for _, br := range t.res[win] {
		if why := diverged(&br.Metrics, true); why != "" {
			return b.diverge(br.Step, br.Segment, why)
		}
		if len(b.pending) == 0 {
			b.firstPend = time.Now()
		}
		b.pending = append(b.pending, br)
		b.b = br.Step
	}
	b.env.putBuf(b.prev)
	b.env.putBuf(t.prev[1-win])
	b.prev, b.prevOK = t.prev[win], true
	return b.flush()
}
