package scheduler

import (
	"math"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/replay"
)

// TestJobResultMsgpack: a Job and a Result are plain values that survive a
// msgpack round trip unchanged (what a remote executor needs), NaN losses
// included.
func TestJobResultMsgpack(t *testing.T) {
	j := Job{Run: "r", Generation: 3<<32 | 2, Segment: 4, AnchorStep: 32, Step: 40, Strategy: StrategySliding,
		Side: replay.SideNew, StartStep: 35, StartForward: true, Memo: true, Eval: true}
	res := Result{Job: j, Theta: []float32{1, -2.5, float32(math.Inf(1))}, Applied: 8, Err: "boom", Cancelled: true,
		Metrics: ckpt.Metrics{Step: 40, Segment: 4, Anchor: 35, Loss: math.NaN(), TestLoss: 0.5, TestAcc: math.NaN(), ParamNorm: 3, StepDist: 0.25}}
	b, err := msgpack.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var got Result
	if err := msgpack.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Job != j || got.Job.ID() != j.ID() {
		t.Errorf("job after a round trip: %+v, want %+v", got.Job, j)
	}
	if !reflect.DeepEqual(got.Theta, res.Theta) || got.Applied != 8 || got.Err != "boom" || !got.Cancelled {
		t.Errorf("result after a round trip: %+v, want %+v", got, res)
	}
	gm, wm := got.Metrics, res.Metrics
	if !math.IsNaN(gm.Loss) || !math.IsNaN(gm.TestAcc) {
		t.Errorf("NaN losses after a round trip: %+v", gm)
	}
	gm.Loss, gm.TestAcc, wm.Loss, wm.TestAcc = 0, 0, 0, 0
	if gm != wm {
		t.Errorf("metrics after a round trip: %+v, want %+v", gm, wm)
	}
}

// newTestLoop is a backward loop with a policy at frontier 0 and no store:
// enough to dispatch jobs and receive results.
func newTestLoop(t *testing.T, epoch uint64) *bwdLoop {
	t.Helper()
	s := &Scheduler{}
	s.met = newCollectors(s)
	cfg := &ckpt.RunConfig{Name: "r", Steps: 20, Window: 5, Strategy: StrategyWindow, ResetFrom: FromBackward, ResetPolicy: PolicyFixed, EvalEvery: 1}
	r := newRun(s, *cfg, ckpt.RunState{State: ckpt.StateRunning})
	env := &runEnv{free: make(chan []float32, 4)}
	pc, plan := strategyOf(cfg)
	b := &bwdLoop{
		r: r, s: s, env: env, cfg: cfg, plan: plan, pc: pc, buf: map[int]Result{}, flight: map[JobID]struct{}{},
		maxFlight: 4, gen: epoch << 32, q: nopQueue{},
	}
	b.pol = replay.NewPolicy(pc, replay.AnchorRef{From: replay.SourceInit}, 1, 0)
	b.pol.Logged(20)
	return b
}

type nopQueue struct{}

func (nopQueue) Jobs() chan<- Job       { return nil }
func (nopQueue) Results() <-chan Result { return nil }
func (nopQueue) Cancel(uint64)          {}
func (nopQueue) Close()                 {}

// dispatch sends the policy's next job (it must be a dispatch).
func (b *bwdLoop) dispatchForTest(t *testing.T) Job {
	t.Helper()
	a := b.pol.Next(b.maxFlight)
	if a.Kind != replay.ActDispatch {
		t.Fatalf("policy: %v, want a dispatch", a)
	}
	b.act = a
	j := b.job(a)
	b.sent(j)
	return j
}

func resultOf(j Job) Result {
	return Result{Job: j, Theta: []float32{float32(j.Step)}, Metrics: ckpt.Metrics{Step: j.Step, Segment: j.Segment, Anchor: j.StartStep}}
}

// TestReceiveByIdentity: results are accounted by job identity. A
// duplicate, a result of an earlier epoch (another process) and one of an
// earlier generation are dropped; none is counted twice, none reaches the
// reorder buffer, and the policy's count of jobs in flight stays right.
func TestReceiveByIdentity(t *testing.T) {
	b := newTestLoop(t, 7)
	j1, j2, j3 := b.dispatchForTest(t), b.dispatchForTest(t), b.dispatchForTest(t)
	if b.pol.InFlight() != 3 || len(b.flight) != 3 {
		t.Fatalf("after 3 dispatches: %d in flight (policy), %d (identities)", b.pol.InFlight(), len(b.flight))
	}
	b.receive(resultOf(j2))
	b.receive(resultOf(j2)) // a duplicate delivery
	if b.pol.InFlight() != 2 || len(b.buf) != 1 {
		t.Fatalf("after a duplicate: %d in flight, %d buffered; want 2 and 1", b.pol.InFlight(), len(b.buf))
	}
	// A result of the same job identity but another epoch (an earlier
	// process of the same run): unknown, dropped.
	old := j3
	old.Generation = 6<<32 | (j3.Generation & 0xffffffff)
	b.receive(resultOf(old))
	if b.pol.InFlight() != 2 || len(b.buf) != 1 {
		t.Fatalf("after a result of another epoch: %d in flight, %d buffered; want 2 and 1", b.pol.InFlight(), len(b.buf))
	}
	// A rollback: j1 and j3 are now of an older generation. Their results
	// come back (counted out of the flight) and are dropped, as is a
	// second copy of one of them.
	b.newGen()
	b.receive(resultOf(j1))
	b.receive(resultOf(j1))
	b.receive(resultOf(j3))
	if b.pol.InFlight() != 0 || len(b.flight) != 0 {
		t.Fatalf("after the stale results: %d in flight (policy), %d (identities); want 0", b.pol.InFlight(), len(b.flight))
	}
	if len(b.buf) != 1 || b.buf[2].Job != j2 {
		t.Fatalf("reorder buffer %v, want only step 2 of the old generation (the rollback clears it)", b.buf)
	}
	// A job of the new generation is received normally.
	b.pol.Advance(replay.Action{Kind: replay.ActRollback, To: 0})
	clear(b.buf)
	j := b.dispatchForTest(t)
	if j.Generation != j1.Generation+1 || j.Step != 1 {
		t.Fatalf("job after the rollback: %+v", j)
	}
	b.receive(resultOf(j))
	b.receive(resultOf(j))
	if b.pol.InFlight() != 0 || len(b.buf) != 1 || b.buf[1].Job != j {
		t.Fatalf("after the new generation's result (twice): %d in flight, buffer %v", b.pol.InFlight(), b.buf)
	}
}

// TestPoolLookup: a worker finds a job's queue by run and epoch; a job of a
// closed loop or of another epoch finds none (its result would be stale).
func TestPoolLookup(t *testing.T) {
	p := newPool(make(chan Job), nil)
	env := &runEnv{free: make(chan []float32, 1)}
	q := p.Open(execRun{Name: "r", Epoch: 3, env: env}).(*poolRun)
	if got := p.lookup(Job{Run: "r", Generation: 3<<32 | 5}); got != q {
		t.Fatalf("lookup of a job of epoch 3: %v", got)
	}
	if got := p.lookup(Job{Run: "r", Generation: 2<<32 | 5}); got != nil {
		t.Fatalf("lookup of a job of epoch 2: %v, want none", got)
	}
	if got := p.lookup(Job{Run: "other", Generation: 3 << 32}); got != nil {
		t.Fatalf("lookup of another run: %v, want none", got)
	}
	// Cancel: a job of an older generation runs under a done context.
	q.Cancel(3<<32 | 6)
	if q.jobCtx(3<<32|5).Err() == nil {
		t.Error("a job of a cancelled generation runs under a live context")
	}
	if q.jobCtx(3<<32|6).Err() != nil {
		t.Error("a job of the current generation runs under a done context")
	}
	q.Close()
	if got := p.lookup(Job{Run: "r", Generation: 3<<32 | 6}); got != nil {
		t.Fatalf("lookup after Close: %v, want none", got)
	}
	// Delivery after Close does not block.
	q.deliver(Result{Theta: []float32{1}})
}

// TestEpochAcrossRestarts: every start of a run's backward loop stores a
// new epoch, so the generations of its jobs never repeat across restarts
// (a result of an earlier process is recognised as stale).
func TestEpochAcrossRestarts(t *testing.T) {
	store := openStore(t, t.TempDir())
	epoch := func() uint64 {
		t.Helper()
		_, st, err := store.Run("e")
		if err != nil {
			t.Fatal(err)
		}
		return st.Epoch
	}
	h := startHarness(t, store, testOptions())
	h.create(api.RunSpec{Preset: "quadratic", Name: "e", Steps: 30, Window: 8})
	h.wait("e", ckpt.StateDone)
	h.stop()
	e1 := epoch()
	if e1 < 1 {
		t.Fatalf("epoch %d after the first start, want ≥ 1", e1)
	}
	h = startHarness(t, store, testOptions())
	if _, err := h.s.Reset("e", api.ResetRequest{At: 10}); err != nil {
		t.Fatal(err)
	}
	h.wait("e", ckpt.StateDone)
	h.stop()
	if e2 := epoch(); e2 <= e1 {
		t.Fatalf("epoch %d after a restart, was %d: generations would repeat", e2, e1)
	}
}
