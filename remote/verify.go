package remote

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"

	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/scheduler"
)

// shouldCheck says whether the daemon re-executes a result of worker: the
// first of each worker, every one of a quarantined worker, and a share
// VerifyShare of the others chosen by job identity (so that which results
// are checked is a pure function of the run, not of timing).
func (e *Executor) shouldCheck(worker string, id scheduler.JobID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.quar[worker] || !e.mu.checked[worker] {
		e.mu.checked[worker] = true
		return true
	}
	if e.cfg.VerifyShare <= 0 {
		return false
	}
	h := fnv.New64a()
	h.Write([]byte(id.Run))
	var b [32]byte
	binary.LittleEndian.PutUint64(b[0:], id.Generation)
	binary.LittleEndian.PutUint64(b[8:], uint64(id.Segment))
	binary.LittleEndian.PutUint64(b[16:], uint64(id.Step))
	binary.LittleEndian.PutUint64(b[24:], uint64(id.Side))
	h.Write(b[:])
	return float64(h.Sum64()%1_000_000) < e.cfg.VerifyShare*1_000_000
}

// check re-executes res's job locally (the pool's code, the daemon's
// inputs) and returns the result to deliver: res when bitwise equal, else
// the local one, and the worker is quarantined. A result that cannot be
// re-executed here is delivered as it is (logged).
func (e *Executor) check(ctx context.Context, q *queue, worker string, res scheduler.Result) scheduler.Result {
	if q.local == nil {
		r, err := e.comp.NewRunner(ctx, q.x.Config, q.x.Inputs, 0)
		if err != nil {
			e.log.Error("spot check impossible: result accepted unverified", "run", q.x.Name, "err", err)
			return res
		}
		q.local = r
	}
	local := q.local.Compute(ctx, res.Job)
	if local.Err != "" || local.Cancelled {
		e.log.Warn("spot check failed", "run", q.x.Name, "step", res.Job.Step, "err", local.Err)
		return res
	}
	if sameBits(local.Theta, res.Theta) && sameMetrics(local.Metrics, res.Metrics) {
		e.mu.Lock()
		quar := e.mu.quar[worker]
		e.mu.Unlock()
		if !quar {
			e.verified.Add(1)
		}
		return res
	}
	e.mismatches.Add(1)
	e.mu.Lock()
	first := !e.mu.quar[worker]
	e.mu.quar[worker] = true
	if w, ok := e.mu.workers[worker]; ok {
		w.Quarantined = true
		e.mu.workers[worker] = w
	}
	e.mu.Unlock()
	if first {
		e.log.Error("worker quarantined: a result differs from the daemon's re-execution; its results are recomputed here",
			"worker", worker, "run", q.x.Name, "step", res.Job.Step)
		e.recheck(ctx, worker)
	}
	return local
}

// unverified is a result handed to a loop without a spot check: its job
// and a digest of its numbers (not the vector: a run may have many).
type unverified struct {
	job    scheduler.Job
	digest [32]byte
}

// maxUnverified bounds the results remembered per worker and run; older
// ones are forgotten (and logged as such if the worker is quarantined).
const maxUnverified = 1 << 18

// noteUnverified remembers res, accepted from worker without a check.
func (q *queue) noteUnverified(worker string, res scheduler.Result) {
	if q.unverified == nil {
		q.unverified = map[string][]unverified{}
	}
	l := q.unverified[worker]
	if len(l) >= maxUnverified {
		l = l[1:]
		q.forgot = true
	}
	q.unverified[worker] = append(l, unverified{job: res.Job, digest: digest(res)})
}

// recheck re-executes here every result worker delivered unchecked to an
// open loop before it was quarantined. Equal ones are counted
// (Stats.Rechecked); a different one means a stored number came from the
// faulty worker: its run fails at its next job, with the worker and the
// step in the reason (the loop has committed the result; only the
// scheduler writes the store, and a failed run's numbers are not taken
// for right).
func (e *Executor) recheck(ctx context.Context, worker string) {
	e.mu.Lock()
	queues := make([]*queue, 0, len(e.mu.queues))
	for _, q := range e.mu.queues {
		queues = append(queues, q)
	}
	e.mu.Unlock()
	for _, q := range queues {
		l := q.unverified[worker]
		delete(q.unverified, worker)
		if len(l) == 0 {
			continue
		}
		if q.local == nil {
			r, err := e.comp.NewRunner(ctx, q.x.Config, q.x.Inputs, 0)
			if err != nil {
				q.taint(fmt.Sprintf("worker %s was quarantined and its %d earlier results cannot be re-executed here: %v", worker, len(l), err))
				continue
			}
			q.local = r
		}
		bad := -1
		for _, u := range l {
			local := q.local.Compute(ctx, u.job)
			if local.Err != "" || local.Cancelled || digest(local) != u.digest {
				e.tainted.Add(1)
				if bad < 0 || u.job.Step < bad {
					bad = u.job.Step
				}
				continue
			}
			e.rechecked.Add(1)
		}
		e.log.Info("earlier results of a quarantined worker re-executed", "worker", worker, "run", q.x.Name, "results", len(l), "wrong_from_step", bad)
		if bad >= 0 {
			q.taint(fmt.Sprintf("remote worker %s, quarantined by a spot check, had delivered a wrong result at step %d that is stored: the run's numbers from there on are not trustworthy (create it again)", worker, bad))
		} else if q.forgot {
			q.taint(fmt.Sprintf("remote worker %s was quarantined, and more of its earlier results than can be re-executed were stored", worker))
		}
	}
}

// taint fails the run at its next job (at once if a job is in flight).
func (q *queue) taint(reason string) {
	q.e.log.Error("run fails: a stored result came from a faulty worker", "run", q.x.Name, "reason", reason)
	q.mu.Lock()
	q.tainted = reason
	var j scheduler.Job
	found := false
	for _, p := range q.pending {
		if !found || p.Generation > j.Generation {
			j, found = p, true
		}
	}
	q.mu.Unlock()
	if found && q.first(j.ID()) {
		q.deliver(scheduler.Result{Job: j, Err: reason})
	}
}

// digest is a result's numbers: θ̃'s bits and the measures.
func digest(res scheduler.Result) [32]byte {
	h := sha256.New()
	h.Write(encodeVec(res.Theta))
	m := res.Metrics
	var b [8]byte
	for _, x := range []float64{m.Loss, m.TestLoss, m.TestAcc, m.ParamNorm, m.StepDist} {
		binary.LittleEndian.PutUint64(b[:], math.Float64bits(x))
		h.Write(b[:])
	}
	for _, n := range []int{m.Step, m.Anchor, m.Segment, res.Applied} {
		binary.LittleEndian.PutUint64(b[:], uint64(n))
		h.Write(b[:])
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func sameMetrics(a, b ckpt.Metrics) bool {
	f := func(x, y float64) bool { return math.Float64bits(x) == math.Float64bits(y) }
	return a.Step == b.Step && a.Anchor == b.Anchor && a.Segment == b.Segment &&
		f(a.Loss, b.Loss) && f(a.TestLoss, b.TestLoss) && f(a.TestAcc, b.TestAcc) && f(a.ParamNorm, b.ParamNorm) && f(a.StepDist, b.StepDist)
}
