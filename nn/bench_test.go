package nn

import (
	"sync"
	"syscall"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas"
)

// The paper's operator: mlp:500x5 on Fashion-MNIST, batch 8, float32, one
// core. Run with the default backend (OpenBLAS under cgo):
//
//	go test -cpu 1 -run '^$' -bench 'SGDStep|RawGEMM' -benchtime 2000x ./nn/
//
// and the pure-Go figure with CGO_ENABLED=0 (or -tags noopenblas).
// BenchmarkSGDStepOverRaw gives the step/GEMM ratio on a busy machine.

func benchSGD(b *testing.B) (*SGD, []float32, BatchLog) {
	train, _ := fashionMNIST(b)
	m := mustModel(b, "mlp:500x5", 784, 10)
	theta := initTheta(b, m, "", 1)
	log := randomLog(train.N, 8, 1000, 1)
	sgd, err := NewSGD(m, CrossEntropy, train, 0.001, log)
	if err != nil {
		b.Fatal(err)
	}
	return sgd, theta, log
}

// BenchmarkSGDStep is one in-place SGD step T_k(θ) (Apply).
func BenchmarkSGDStep(b *testing.B) {
	sgd, theta, log := benchSGD(b)
	b.Logf("BLAS %s", BLASBackend())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		sgd.Apply(i%len(log)+1, theta)
	}
}

// BenchmarkRawGEMM makes only the GEMM calls one step needs (forward,
// deltas, rank-8 weight updates), on the same buffers: the floor the step's
// time is compared with.
func BenchmarkRawGEMM(b *testing.B) {
	sgd, theta, log := benchSGD(b)
	sgd.Step(theta, log[0]) // size the scratch space
	b.ResetTimer()
	for b.Loop() {
		rawGEMMs(sgd.eng, theta, 8)
	}
}

// rawGEMMs makes the GEMM calls of one step of batch nb with e's buffers.
func rawGEMMs(e *engine, theta []float32, nb int) {
	for l, ly := range e.m.layers {
		e.impl.Sgemm(blas.NoTrans, blas.Trans, nb, ly.out, ly.in,
			1, e.acts[l], ly.in, theta[ly.w:ly.b], ly.in, 1, e.acts[l+1], ly.out)
	}
	for l := len(e.m.layers) - 1; l >= 0; l-- {
		ly := e.m.layers[l]
		if l > 0 {
			e.impl.Sgemm(blas.NoTrans, blas.NoTrans, nb, ly.in, ly.out,
				1, e.deltas[l], ly.out, theta[ly.w:ly.b], ly.in, 0, e.deltas[l-1], ly.in)
		}
		// alpha 0 would let BLAS skip the work: use a tiny one.
		e.impl.Sgemm(blas.Trans, blas.NoTrans, ly.out, ly.in, nb,
			-1e-30, e.deltas[l], ly.out, e.acts[l], ly.in, 1, theta[ly.w:ly.b], ly.in)
	}
}

// BenchmarkSGDStepOverRaw alternates one step and one set of raw GEMMs
// (with a separate scratch space) and reports their mean times and ratio:
// interleaving exposes both to the same machine load, so the ratio is
// meaningful even when the absolute figures are not (the design's target is
// a ratio ≤ 1.15).
func BenchmarkSGDStepOverRaw(b *testing.B) {
	sgd, theta, log := benchSGD(b)
	raw := sgd.Clone()
	rawTheta := append([]float32(nil), theta...)
	raw.Step(rawTheta, log[0])
	var step, gemm time.Duration
	n := 0
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		sgd.Apply(i%len(log)+1, theta)
		t1 := time.Now()
		rawGEMMs(raw.eng, rawTheta, 8)
		gemm += time.Since(t1)
		step += t1.Sub(t0)
		n++
	}
	b.ReportMetric(float64(step.Nanoseconds())/float64(n), "step-ns/op")
	b.ReportMetric(float64(gemm.Nanoseconds())/float64(n), "gemm-ns/op")
	b.ReportMetric(float64(step)/float64(gemm), "step/gemm")
}

// noGEMM is a BLAS whose Sgemm does nothing: with it a step costs only the
// work around the GEMMs (gather, bias, ReLU, mask, column sums, loss).
type noGEMM struct{ pureGo }

func (noGEMM) Sgemm(blas.Transpose, blas.Transpose, int, int, int, float32, []float32, int, []float32, int, float32, []float32, int) {
}

// BenchmarkSGDStepNoGEMM measures a step's overhead beyond its GEMMs, a
// figure far less sensitive to a busy machine than the difference of the
// two benchmarks above.
func BenchmarkSGDStepNoGEMM(b *testing.B) {
	train, _ := fashionMNIST(b)
	m := mustModel(b, "mlp:500x5", 784, 10)
	theta := initTheta(b, m, "", 1)
	log := randomLog(train.N, 8, 1000, 1)
	sgd, err := newSGD(m, CrossEntropy, train, 0.001, log, noGEMM{})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		sgd.Apply(i%len(log)+1, theta)
	}
}

// BenchmarkSGDStepParallel runs the step of BenchmarkSGDStep on 1 and on 2
// goroutines at once, each with its own clone and parameter vector, as the
// daemon runs one backward job per core. Each goroutine makes b.N steps;
// ops/s is the total throughput, so its ratio between g=2 and g=1 is the
// scaling over two cores:
//
//	go test -run '^$' -bench 'SGDStepParallel' -benchtime 400x -count 4 ./nn/
//
// In g=2 each goroutine holds a ReserveProc, as the scheduler's workers do;
// g=2-noreserve does not, and shows what that costs with OpenBLAS when the
// two goroutines are as many as GOMAXPROCS: the runtime takes their Ps away
// on nearly every GEMM (see ReserveProc). vcsw/op counts the process's
// voluntary context switches per step, a figure the machine's load barely
// moves: on the 2-vCPU machine about 4 with the reservation and 11 without
// (Haswell kernels), 7 and 20 with OpenBLAS's Prescott kernels.
//
// Earlier experiments (before the reservation, so their absolute figures
// are suspect) found that walking the backward pass in blocks of weight
// rows (reading W once there instead of twice) gained nothing, and that
// OpenBLAS's kernel set matters: with OPENBLAS_CORETYPE=SkylakeX (AVX-512)
// the step runs about a fifth faster than with Haswell (AVX2).
func BenchmarkSGDStepParallel(b *testing.B) {
	sgd, theta, log := benchSGD(b)
	for _, c := range []struct {
		name    string
		g       int
		reserve bool
	}{{"g=1", 1, true}, {"g=2", 2, true}, {"g=2-noreserve", 2, false}} {
		b.Run(c.name, func(b *testing.B) {
			ops := make([]*SGD, c.g)
			ths := make([][]float32, c.g)
			for i := range c.g {
				ops[i] = sgd.Clone()
				ths[i] = append([]float32(nil), theta...)
				ops[i].Apply(1, ths[i]) // size the scratch space
			}
			b.ReportAllocs()
			var ru0, ru1 syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			b.ResetTimer()
			var wg sync.WaitGroup
			for i := range c.g {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if c.reserve {
						defer ReserveProc()()
					}
					for k := range b.N {
						ops[i].Apply(k%len(log)+1, ths[i])
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			n := float64(c.g * b.N)
			b.ReportMetric(n/b.Elapsed().Seconds(), "ops/s")
			b.ReportMetric(float64(ru1.Nvcsw-ru0.Nvcsw)/n, "vcsw/op")
		})
	}
}

// BenchmarkOptimizerStep is one optimizer operator T_k(s) of the paper's
// MLP (mlp:500x5, batch 8) for plain SGD, heavy-ball momentum and Adam: the
// cost of the optimizer state against SGD's fused step (the gradient is
// materialised, then one elementwise pass over θ and its buffers).
//
//	go test -cpu 1 -run '^$' -bench OptimizerStep -benchtime 200x -count 3 ./nn/
func BenchmarkOptimizerStep(b *testing.B) {
	for _, c := range []OptimConfig{
		{Name: OptimSGD},
		{Name: OptimMomentum, Momentum: 0.9},
		{Name: OptimAdam, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8},
	} {
		b.Run(c.Name, func(b *testing.B) {
			train, _ := fashionMNIST(b)
			m := mustModel(b, "mlp:500x5", 784, 10)
			log := randomLog(train.N, 8, 1000, 1)
			o, err := NewOptim(m, CrossEntropy, train, 0.001, c, log)
			if err != nil {
				b.Fatal(err)
			}
			s := make([]float32, o.Dim())
			copy(s, initTheta(b, m, "", 1))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				o.Apply(i%len(log)+1, s)
			}
		})
	}
}

// BenchmarkOptimizerStepOverSGD interleaves a momentum step, an Adam step
// and a plain SGD step of the paper's MLP and reports their ratios: on a
// busy machine the ratios stay meaningful when the absolute figures do
// not.
//
//	go test -cpu 1 -run '^$' -bench OptimizerStepOverSGD -benchtime 200x ./nn/
func BenchmarkOptimizerStepOverSGD(b *testing.B) {
	train, _ := fashionMNIST(b)
	m := mustModel(b, "mlp:500x5", 784, 10)
	log := randomLog(train.N, 8, 1000, 1)
	cfgs := []OptimConfig{
		{Name: OptimSGD},
		{Name: OptimMomentum, Momentum: 0.9},
		{Name: OptimAdam, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8},
	}
	ops := make([]*Optim, len(cfgs))
	states := make([][]float32, len(cfgs))
	for i, c := range cfgs {
		o, err := NewOptim(m, CrossEntropy, train, 0.001, c, log)
		if err != nil {
			b.Fatal(err)
		}
		ops[i], states[i] = o, make([]float32, o.Dim())
		copy(states[i], initTheta(b, m, "", 1))
		o.Apply(1, states[i]) // allocate the gradient outside the loop
	}
	took := make([]time.Duration, len(cfgs))
	for i := 0; b.Loop(); i++ {
		for j, o := range ops {
			t0 := time.Now()
			o.Apply(i%len(log)+1, states[j])
			took[j] += time.Since(t0)
		}
	}
	b.ReportMetric(float64(took[1])/float64(took[0]), "momentum/sgd")
	b.ReportMetric(float64(took[2])/float64(took[0]), "adam/sgd")
}
