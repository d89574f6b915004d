package scheduler

import (
	"flag"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
)

var benchSteps = flag.Int("bench-steps", 128, "steps of the Fashion-MNIST benchmark run")

// BenchmarkBackwardFashionMNIST runs the paper's model (mlp:500x5 on
// Fashion-MNIST, batch 8, window 256, losses every 10 steps on 1000+1000
// images) for -bench-steps steps with 1 and 2 workers, through the whole
// scheduler and a real store. It reports backward iterates per second,
// operator applications per second, and the scheduling + storage overhead:
// the share of the workers' wall time (wall × workers) not spent inside
// jobs. With steps ≤ 256 no periodic reset happens, so step n costs n
// applications; the steady-state rate with W = 256 is ops/s ÷ 128.5.
func BenchmarkBackwardFashionMNIST(b *testing.B) {
	for _, workers := range []int{1, 2} {
		b.Run(map[int]string{1: "workers=1", 2: "workers=2"}[workers], func(b *testing.B) {
			var iters, ops, busy, wall float64
			for range b.N {
				store := openStore(b, b.TempDir())
				h := startHarness(b, store, DefaultOptions().WithWorkers(workers))
				h.create(api.RunSpec{Preset: "fmnist-mlp", Name: "bench", Steps: *benchSteps, Window: 256, ResetAt: []int{}})
				// The data set loads on the first use; time the run after it.
				h.wait("bench", ckpt.StateRunning)
				t0 := time.Now()
				h.wait("bench", ckpt.StateDone)
				wall += time.Since(t0).Seconds()
				iters += float64(*benchSteps)
				n := *benchSteps
				ops += float64(n * (n + 1) / 2)
				busy += float64(h.s.met.busy.Load()) / 1e9
				h.stop()
				if err := store.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(iters/wall, "iterates/s")
			b.ReportMetric(ops/wall, "ops/s")
			b.ReportMetric(100*(1-busy/(wall*float64(workers))), "overhead%")
		})
	}
}

// BenchmarkStopLatency measures how long Run takes to return after its
// context is cancelled in the middle of the paper-fig3 run (full strategy:
// jobs of hundreds of operator applications are in flight).
func BenchmarkStopLatency(b *testing.B) {
	var total time.Duration
	for range b.N {
		store := openStore(b, b.TempDir())
		h := startHarness(b, store, DefaultOptions().WithWorkers(2))
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
