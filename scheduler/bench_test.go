package scheduler

import (
	"flag"
	"sync"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/nn"
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
				h := startHarness(b, store, DefaultOptions().WithFamilies(testFamilies...).WithWorkers(workers))
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

// BenchmarkRawOperators is the ceiling for BenchmarkBackwardFashionMNIST:
// the paper's SGD operator applied by 1 and 2 goroutines with no scheduler
// at all (each its own clone), in operator applications per second.
func BenchmarkRawOperators(b *testing.B) {
	train, _, err := nn.LoadDataset("fashion-mnist", "", 1)
	if err != nil {
		b.Fatal(err)
	}
	m, err := nn.NewModel("mlp:500x5", train.In, train.Out)
	if err != nil {
		b.Fatal(err)
	}
	const steps = 64
	log := make(nn.BatchLog, steps)
	s := nn.NewSampler(train.N, 8, 1)
	for i := range log {
		log[i] = make([]int32, 8)
		s.Batch(i+1, log[i])
	}
	sgd, err := nn.NewSGD(m, nn.CrossEntropy, train, 0.001, log)
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
