package remote

import (
	"context"
	"encoding/binary"
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
	}
	return local
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
