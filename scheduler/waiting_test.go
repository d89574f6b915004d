package scheduler

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
)

// gateExec is a RemoteExecutor that computes jobs (with Runner, as a remote
// worker does) only once gate is closed, and whose Waiting always has a
// reason: the status must ask it only while the run's backward side is
// behind its forward step.
type gateExec struct {
	comp *Computer
	gate chan struct{}
	wg   sync.WaitGroup
}

func (g *gateExec) Slots() int                { return 1 }
func (g *gateExec) Waiting(run string) string { return "held: " + run }

var _ waiter = (*gateExec)(nil)

func (g *gateExec) OpenRemote(x ExecRun) Queue {
	q := &gateQueue{jobs: make(chan Job), results: make(chan Result, 64), closed: make(chan struct{})}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r, err := g.comp.NewRunner(ctx, x.Config, x.Inputs, 0)
		for {
			select {
			case <-q.closed:
				return
			case j := <-q.jobs:
				select {
				case <-g.gate:
				case <-q.closed:
					return
				}
				res := Result{Job: j}
				if err != nil {
					res.Err = err.Error()
				} else {
					res = r.Compute(ctx, j)
				}
				select {
				case q.results <- res:
				case <-q.closed:
					return
				}
			}
		}
	}()
	return q
}

type gateQueue struct {
	jobs    chan Job
	results chan Result
	closed  chan struct{}
}

func (q *gateQueue) Jobs() chan<- Job       { return q.jobs }
func (q *gateQueue) Results() <-chan Result { return q.results }
func (q *gateQueue) Cancel(uint64)          {}
func (q *gateQueue) Close()                 { close(q.closed) }

// TestStatusWaiting: with an executor that tells why jobs wait, a running
// run whose backward frontier is behind its forward step carries the
// reason in its status; once the jobs are computed and the run is done, it
// carries none (the executor is not asked).
func TestStatusWaiting(t *testing.T) {
	g := &gateExec{comp: NewComputer(testOptions()), gate: make(chan struct{})}
	t.Cleanup(g.wg.Wait) // after the scheduler stopped (cleanups run last first): its loops close their queues
	h := startHarness(t, openStore(t, t.TempDir()), testOptions().WithWorkers(0).WithExecutor(g))
	h.create(api.RunSpec{Name: "q", Preset: "quadratic", Steps: 30, Batch: 1})
	st := h.waitUntil("a waiting reason", func(st api.RunStatus) bool { return st.Waiting != "" }, "q")
	if st.Waiting != "held: q" || st.State != ckpt.StateRunning || st.BackwardStep >= st.ForwardStep {
		t.Errorf("status %+v: want running, backward behind forward, waiting %q", st, "held: q")
	}
	close(g.gate)
	if st := h.wait("q", ckpt.StateDone); st.Waiting != "" {
		t.Errorf("done run: waiting %q, want none", st.Waiting)
	}
}

// reasonExec is a gateExec whose waiting reason the test sets.
type reasonExec struct {
	*gateExec
	reason atomic.Pointer[string]
}

func (r *reasonExec) Waiting(string) string { return *r.reason.Load() }

// TestWaitingEvent: a run whose backward jobs wait moves no step, so
// nothing but the waiting reason changes; the scheduler publishes a
// progress event carrying each new reason (for `replayctl status --watch`
// and the web view), and one without when it clears. Before, the reason
// reached a subscriber only with the next step's event, which a stuck run
// never sends.
func TestWaitingEvent(t *testing.T) {
	g := &reasonExec{gateExec: &gateExec{comp: NewComputer(testOptions()), gate: make(chan struct{})}}
	first, second := "no remote worker connected", "no worker can take its jobs"
	g.reason.Store(&first)
	t.Cleanup(g.wg.Wait)
	h := startHarness(t, openStore(t, t.TempDir()), testOptions().WithWorkers(0).WithExecutor(g))
	// Before the scheduler stops (cleanups run last first): its loops
	// wait for their jobs in flight, which this executor computes only
	// once the gate is open.
	t.Cleanup(func() { close(g.gate) })
	h.create(api.RunSpec{Name: "q", Preset: "quadratic", Steps: 30, Batch: 1})
	// The forward side finishes; the backward side waits at its first job.
	h.waitUntil("forward done, backward waiting", func(st api.RunStatus) bool {
		return st.ForwardStep == 30 && st.Waiting == first
	}, "q")
	next, stop, err := h.s.Subscribe("q", "")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// waitFor reads events until one carries want as the reason.
	waitFor := func(want string) {
		t.Helper()
		for {
			evs, ok := next(ctx)
			if !ok {
				t.Fatalf("stream ended before an event with waiting %q", want)
			}
			for _, ev := range evs {
				if ev.Status != nil && ev.Status.Waiting == want && ev.Kind != api.EventSnapshot {
					return
				}
			}
		}
	}
	g.reason.Store(&second)
	waitFor(second)
	none := ""
	g.reason.Store(&none)
	waitFor("")
}
