package scheduler

import (
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/internal/oploop"
	"github.com/replay-sgd/replay/nn"
)

var benchSteps = flag.Int("bench-steps", 256, "steps of the Fashion-MNIST benchmark run")

// BenchmarkBackwardFashionMNIST runs the paper's model (mlp:500x5 on
// Fashion-MNIST, batch 8, window 256, losses every 10 steps on 1000+1000
// images) for -bench-steps steps with 1 and with 2 workers, through the
// whole scheduler and a real store, and in the same run measures the
// ceiling of the 2-worker speed-up: the operator loop (one SGD operator
// after another, as BenchmarkSGDStep in nn) in one child process alone and
// in two child processes at once. A ceiling round (a window with one child
// busy, then one with both) comes before the 1-worker run, between the
// runs and after the 2-worker run, so that the machine's load, which
// drifts, weighs on the ceiling as it weighs on the runs:
//
//	go test -run '^$' -bench BackwardFashionMNIST -benchtime 1x ./scheduler/
//
// It reports operator applications per second of each (w1, w2 through
// the scheduler; p1, p2 the processes), the speed-ups w2/w1 and
// p2/p1 (the ceiling), backward iterates per second, and the scheduling +
// storage overhead: the share of the workers' wall time (wall × workers)
// not spent inside jobs. With steps ≤ 256 no periodic reset happens, so
// step n costs n applications; the steady-state rate with W = 256 is
// ops/s ÷ 128.5.
func BenchmarkBackwardFashionMNIST(b *testing.B) {
	const window = 3 * time.Second
	kids := oploop.Start(b, "SCHED_HELPER=oploop", 2)
	defer kids.Close(b)
	var p1, p2 []float64
	round := func() {
		p1 = append(p1, kids.Run(b, 1, window))
		p2 = append(p2, kids.Run(b, 2, window))
	}
	var w [3]struct{ iters, ops, busy, wall float64 }
	for range b.N {
		round()
		for workers := 1; workers <= 2; workers++ {
			r := &w[workers]
			wall, busy := backwardRun(b, workers, *benchSteps)
			n := *benchSteps
			r.wall += wall
			r.busy += busy
			r.iters += float64(n)
			r.ops += float64(n * (n + 1) / 2)
			round()
		}
	}
	w1, w2 := w[1].ops/w[1].wall, w[2].ops/w[2].wall
	mp1, mp2 := mean(p1), mean(p2)
	b.ReportMetric(w1, "w1-ops/s")
	b.ReportMetric(w2, "w2-ops/s")
	b.ReportMetric(w2/w1, "w2/w1")
	b.ReportMetric(mp1, "p1-ops/s")
	b.ReportMetric(mp2, "p2-ops/s")
	b.ReportMetric(mp2/mp1, "ceiling-p2/p1")
	for k := 1; k <= 2; k++ {
		b.ReportMetric(w[k].iters/w[k].wall, fmt.Sprintf("w%d-iterates/s", k))
		b.ReportMetric(100*(1-w[k].busy/(w[k].wall*float64(k))), fmt.Sprintf("w%d-overhead%%", k))
	}
	b.Logf("%d steps: 2 workers %.2f× 1 worker (%.0f → %.0f ops/s); ceiling in this run, 2 processes of the operator loop: %.2f× 1 (%.0f → %.0f ops/s; rounds p1 %.0f, p2 %.0f)",
		*benchSteps, w2/w1, w1, w2, mp2/mp1, mp1, mp2, p1, p2)
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// backwardRun runs the benchmark's run to the end with the given number of
// workers and returns its wall time (from the data set loaded to done) and
// the workers' busy time, in seconds.
func backwardRun(b *testing.B, workers, steps int) (wall, busy float64) {
	store := openStore(b, b.TempDir())
	defer func() {
		if err := store.Close(); err != nil {
			b.Fatal(err)
		}
	}()
	h := startHarness(b, store, DefaultOptions().WithFamilies(testFamilies...).WithWorkers(workers))
	defer h.stop()
	h.create(api.RunSpec{Preset: "fmnist-mlp", Name: "bench", Steps: steps, Window: 256, ResetAt: []int{}})
	// The data set loads on the first use; time the run after it.
	h.wait("bench", ckpt.StateRunning)
	t0 := time.Now()
	// h.wait gives up after 3 minutes; 256 steps with one worker on a busy
	// machine may take longer.
	for deadline := t0.Add(time.Hour); ; time.Sleep(5 * time.Millisecond) {
		st, err := h.s.Status("bench")
		if err != nil {
			b.Fatal(err)
		}
		if st.State == ckpt.StateDone {
			break
		}
		if st.State == ckpt.StateFailed || time.Now().After(deadline) {
			b.Fatalf("run %s (forward %d, backward %d): %s", st.State, st.ForwardStep, st.BackwardStep, st.Reason)
		}
	}
	wall = time.Since(t0).Seconds()
	return wall, float64(h.s.met.busy.Load()) / 1e9
}

// BenchmarkStopLatency measures how long Run takes to return after its
// context is cancelled in the middle of the paper-fig3 run (full strategy:
// jobs of hundreds of operator applications are in flight).
func BenchmarkStopLatency(b *testing.B) {
	var total time.Duration
	for range b.N {
		store := openStore(b, b.TempDir())
		h := startHarness(b, store, DefaultOptions().WithFamilies(testFamilies...).WithWorkers(2))
		h.create(api.RunSpec{Preset: "paper-fig3", Name: "stop"})
		for {
			st, _ := h.s.Status("stop")
			if st.BackwardStep >= 150 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		t0 := time.Now()
		h.stop()
		total += time.Since(t0)
		if err := store.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "stop-ms")
}

// BenchmarkRawOperators is the in-process counterpart of the ceiling that
// BenchmarkBackwardFashionMNIST measures with processes: the paper's SGD
// operator applied by 1 and 2 goroutines with no scheduler at all (each its
// own clone, each holding an nn.ReserveProc as the workers do), in operator
// applications per second.
func BenchmarkRawOperators(b *testing.B) {
	const steps = 64
	sgd, m, err := oploop.PaperOperator(steps)
	if err != nil {
		b.Fatal(err)
	}
	for _, g := range []int{1, 2} {
		b.Run(map[int]string{1: "goroutines=1", 2: "goroutines=2"}[g], func(b *testing.B) {
			t0 := time.Now()
			for range b.N {
				var wg sync.WaitGroup
				for range g {
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer nn.ReserveProc()() // as the scheduler's workers do
						op := sgd.Clone()
						th := make([]float32, m.Dim())
						if err := m.Init(th, "he", 1); err != nil {
							panic(err)
						}
						for k := 1; k <= steps; k++ {
							op.Apply(k, th)
						}
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(b.N*g*steps)/time.Since(t0).Seconds(), "ops/s")
		})
	}
}
