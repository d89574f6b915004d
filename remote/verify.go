package remote

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"slices"

	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/scheduler"
)

// shouldCheck says whether the daemon re-executes a result of worker: the
// first of each worker, every one of a quarantined worker, and a share
// VerifyShare of the others chosen by job identity (so that which results
// are checked is a pure function of the run, not of timing).
//
// A result that arrives while the worker's first check runs waits for its
// verdict: results are handled concurrently, and the first check can take
// long (for an external model, the daemon's child may have to start), so
// the results of a worker wrong from the start that arrived meanwhile were
// accepted unchecked, and once its quarantine rechecked them its run
// failed on a stored wrong number (TestFirstCheckPending).
//
// The first result is the first of each worker process (key, checkKey):
// one restarted under the same name is checked again; its quarantine, by
// name, stays.
func (e *Executor) shouldCheck(worker, key string, id scheduler.JobID) bool {
	if slices.Contains(e.cfg.Trusted, worker) {
		return false
	}
	e.mu.Lock()
	if e.mu.quar[worker] {
		e.mu.Unlock()
		return true
	}
	if !e.mu.checked[key] {
		e.mu.checked[key] = true
		if e.mu.firstCheck == nil {
			e.mu.firstCheck = map[string]chan struct{}{}
		}
		e.mu.firstCheck[key] = make(chan struct{}) // closed by checkDone
		e.mu.Unlock()
		return true
	}
	pending := e.mu.firstCheck[key]
	e.mu.Unlock()
	if pending != nil {
		<-pending // every path of check ends in checkDone
		e.mu.Lock()
		quar := e.mu.quar[worker]
		e.mu.Unlock()
		if quar {
			return true
		}
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
// re-executed here is delivered as it is (logged). quarantined reports
// that this check quarantined the worker (the caller then rechecks its
// earlier results).
func (e *Executor) check(ctx context.Context, q *queue, worker, key string, res scheduler.Result) (_ scheduler.Result, quarantined bool) {
	defer e.checkDone(key) // after the quarantine, if any
	local, ok := q.compute(ctx, res.Job)
	if !ok {
		return res, false
	}
	if local.Err != "" || local.Cancelled {
		e.log.Warn("spot check failed", "run", q.x.Name, "step", res.Job.Step, "err", local.Err)
		return res, false
	}
	if sameBits(local.Theta, res.Theta) && sameMetrics(local.Metrics, res.Metrics) {
		e.mu.Lock()
		quar := e.mu.quar[worker]
		e.mu.Unlock()
		if !quar {
			e.verified.Add(1)
		}
		return res, false
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
	return local, first
}

// checkDone releases the results of the worker process key waiting for
// the verdict of its first check (shouldCheck), if this was that check.
func (e *Executor) checkDone(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ch, ok := e.mu.firstCheck[key]; ok {
		close(ch)
		delete(e.mu.firstCheck, key)
	}
}

// checkKey names one worker process: its name and its instance (empty
// from a worker that sends none: then the name alone).
func checkKey(worker, instance string) string {
	if instance == "" {
		return worker
	}
	return worker + "\x00" + instance
}

// compute computes j with the queue's own runner (made on first use); ok
// is false when the run cannot be computed here (logged).
func (q *queue) compute(ctx context.Context, j scheduler.Job) (scheduler.Result, bool) {
	q.checkMu.Lock()
	defer q.checkMu.Unlock()
	if q.local == nil {
		r, err := q.e.comp.NewRunner(ctx, q.x.Config, q.x.Inputs, 0)
		if err != nil {
			q.e.log.Error("spot check impossible: result accepted unverified", "run", q.x.Name, "err", err)
			return scheduler.Result{}, false
		}
		q.local = r
	}
	return q.local.Compute(ctx, j), true
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

// noteUnverified remembers res, accepted from worker without a check, and
// returns true; false if the worker is quarantined (meanwhile: results are
// handled concurrently), when res must be checked instead. The quarantine
// flag and the lists share e.mu, so that recheck, which takes the lists
// after the flag is set, misses none.
func (e *Executor) noteUnverified(q *queue, worker string, res scheduler.Result) bool {
	d := digest(res)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.quar[worker] {
		return false
	}
	if q.unverified == nil {
		q.unverified = map[string][]unverified{}
	}
	l := q.unverified[worker]
	if len(l) >= maxUnverified {
		l = l[1:]
		if q.forgot == nil {
			q.forgot = map[string]bool{}
		}
		q.forgot[worker] = true
	}
	q.unverified[worker] = append(l, unverified{job: res.Job, digest: d})
	return true
}

// recheck re-executes here every result worker delivered unchecked to an
// open loop before it was quarantined. Equal ones are counted
// (Stats.Rechecked); a different one means a stored number came from the
// faulty worker: its run fails at its next job, with the worker and the
// step in the reason (the loop has committed the result; only the
// scheduler writes the store, and a failed run's numbers are not taken
// for right).
func (e *Executor) recheck(ctx context.Context, worker string) {
	type work struct {
		q      *queue
		l      []unverified
		forgot bool
	}
	var todo []work
	e.mu.Lock()
	for _, q := range e.mu.queues {
		if l := q.unverified[worker]; len(l) > 0 || q.forgot[worker] {
			todo = append(todo, work{q, l, q.forgot[worker]})
		}
		delete(q.unverified, worker)
		delete(q.forgot, worker)
	}
	e.mu.Unlock()
	for _, wk := range todo {
		q, l := wk.q, wk.l
		bad := -1
		for _, u := range l {
			local, ok := q.compute(ctx, u.job)
			if !ok {
				q.taint(fmt.Sprintf("worker %s was quarantined and its %d earlier results cannot be re-executed here", worker, len(l)))
				break
			}
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
		} else if wk.forgot {
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
