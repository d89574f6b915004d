package replay_test

// Integration with nn: the strategies over real operators (nn.SGD), on the
// paper's scalar quadratic and on least squares on Fashion-MNIST.

import (
	"context"
	"flag"
	"math"
	"testing"
	"time"

	"github.com/replay-sgd/replay/nn"
	"github.com/replay-sgd/replay/replay"
	"github.com/replay-sgd/replay/replay/replaytest"
)

var fmnistSteps = flag.Int("replay.fmnist-steps", 2000, "steps of the Fashion-MNIST linear benchmark trajectory")

// nnRun is one run of nn operators: SGD over a fixed batch log, and θ0.
type nnRun struct {
	sgd    *nn.SGD
	theta0 []float32
}

func newNNRun(tb testing.TB, dataset, model, loss string, lr float64, batch, steps int, seed uint64) nnRun {
	tb.Helper()
	train, _, err := nn.LoadDataset(dataset, "", seed)
	if err != nil {
		tb.Fatalf("load %s: %v", dataset, err)
	}
	m, err := nn.NewModel(model, train.In, train.Out)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := nn.ParseLoss(loss)
	if err != nil {
		tb.Fatal(err)
	}
	sampler := nn.NewSampler(train.N, batch, seed)
	log := make(nn.BatchLog, steps)
	for k := range log {
		log[k] = make([]int32, batch)
		sampler.Batch(k+1, log[k])
	}
	sgd, err := nn.NewSGD(m, l, train, lr, log)
	if err != nil {
		tb.Fatal(err)
	}
	theta0 := make([]float32, m.Dim())
	if err := m.Init(theta0, nn.InitHe, seed); err != nil {
		tb.Fatal(err)
	}
	return nnRun{sgd: sgd, theta0: theta0}
}

// TestNNScalarClosedForm: nn's scalar model with the quadratic loss (the
// quadratic preset: a = 1, batch 1, lr 0.1, 1000 samples y ~ N(0,1)) against
// the §3.1 closed forms, with the tolerance argued in
// TestQuadraticClosedForm, plus an allowance for nn computing with η = 0.1
// in float64 or float32(0.1) (relative 1.5e-9 on η; with |∂θ/∂η| ≤
// M/(1−ρ)² that is below 1e-6).
func TestNNScalarClosedForm(t *testing.T) {
	const steps = 1000
	seed := replaytest.Seed(t)
	run := newNNRun(t, "quadratic", "scalar", "quadratic", 0.1, 1, steps, seed)
	if !run.sgd.IsAffine() {
		t.Fatal("nn scalar+quadratic is not affine")
	}
	train, _, err := nn.LoadDataset("quadratic", "", seed)
	if err != nil {
		t.Fatal(err)
	}
	const eta, rho = 0.1, 0.9
	log := make([]float64, steps+1)
	for k := 1; k <= steps; k++ {
		// The batch log is reproduced from the same sampler seed.
		b := make([]int32, 1)
		nn.NewSampler(train.N, 1, seed).Batch(k, b)
		log[k] = float64(train.Y[b[0]])
	}
	theta0 := float64(run.theta0[0])
	m := math.Abs(theta0)
	for _, v := range train.Y {
		m = max(m, math.Abs(float64(v)))
	}
	m *= 2
	tol := 2*(1+2*eta)*math.Ldexp(1, -24)*m/(1-rho) + 1e-6

	full := replay.NewFull(run.sgd, run.theta0)
	memo, err := replay.NewMemo(run.sgd, run.theta0, replay.MemoConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := memo.Evaluator().(*replay.AffinePrefix); !ok {
		t.Fatalf("memo over nn scalar uses %T", memo.Evaluator())
	}
	fwd := replaytest.NewForward(run.sgd, run.theta0)
	th, bk, bm := make([]float32, 1), make([]float32, 1), make([]float32, 1)
	fOracle, bSum, rk := theta0, 0.0, 1.0
	var worst float64
	for n := 1; n <= steps; n++ {
		fOracle = rho*fOracle + eta*log[n]
		bSum += rk * log[n]
		rk *= rho
		bOracle := rk*theta0 + eta*bSum
		if err := fwd.Forward(th, n); err != nil {
			t.Fatal(err)
		}
		if _, err := full.Backward(bk, n); err != nil {
			t.Fatal(err)
		}
		if _, err := memo.Backward(bm, n); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			what      string
			got, want float64
		}{{"forward", float64(th[0]), fOracle}, {"backward", float64(bk[0]), bOracle}, {"affine prefix", float64(bm[0]), bOracle}} {
			e := math.Abs(c.got - c.want)
			worst = max(worst, e)
			if e > tol {
				t.Fatalf("step %d: %s %g, closed form %g (tolerance %.3g)", n, c.what, c.got, c.want, tol)
			}
		}
	}
	t.Logf("worst error %.3g (tolerance %.3g)", worst, tol)
}

// TestNNLinearMemoMatchesFull: the fmnist-linear preset (linear model, MSE
// on one-hot targets, He init, lr 0.001, batch 8): the memoized prefix
// equals full within 1e-4 relative over 2000 steps (-short: 100). Full is
// evaluated at a sample of steps (each costs n applications).
func TestNNLinearMemoMatchesFull(t *testing.T) {
	steps := 2000
	if testing.Short() {
		steps = 100
	}
	seed := replaytest.Seed(t)
	run := newNNRun(t, "fashion-mnist", "linear", "mse", 0.001, 8, steps, seed)
	memo, err := replay.NewMemo(run.sgd, run.theta0, replay.MemoConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := memo.Evaluator().(*replay.AffinePrefix); !ok {
		t.Fatalf("memo over nn linear+mse uses %T", memo.Evaluator())
	}
	direct := replay.NewDirect(run.sgd.Clone())
	dim := len(run.theta0)
	got, want := make([]float32, dim), make([]float32, dim)
	check := map[int]bool{1: true, 2: true, 3: true, 10: true, 100: true, steps / 2: true, steps: true}
	start := time.Now()
	var worst float64
	for n := 1; n <= steps; n++ {
		if _, err := memo.Backward(got, n); err != nil {
			t.Fatal(err)
		}
		if !check[n] {
			continue
		}
		if _, err := direct.Eval(context.Background(), want, replay.Anchor{Start: run.theta0}, n); err != nil {
			t.Fatal(err)
		}
		e := replaytest.RelErr(got, want)
		worst = max(worst, e)
		if e > 1e-4 {
			t.Fatalf("step %d: memo vs full relative error %.3g > 1e-4", n, e)
		}
	}
	t.Logf("%d steps in %v, worst relative error %.3g (BLAS %s)", steps, time.Since(start).Round(time.Millisecond), worst, nn.BLASBackend())
}

// BenchmarkNNLinearFashionMNIST: memoized prefix vs full for the
// fmnist-linear preset, one op = the whole backward trajectory of
// -replay.fmnist-steps steps (default 2000; full takes minutes: run with
// -benchtime 1x).
func BenchmarkNNLinearFashionMNIST(b *testing.B) {
	steps := *fmnistSteps
	run := newNNRun(b, "fashion-mnist", "linear", "mse", 0.001, 8, steps, 1)
	for _, name := range []string{"memo", "full"} {
		b.Run(name, func(b *testing.B) {
			applied := 0
			for b.Loop() {
				var s replay.Strategy = replay.NewFull(run.sgd, run.theta0)
				if name == "memo" {
					m, err := replay.NewMemo(run.sgd, run.theta0, replay.MemoConfig{})
					if err != nil {
						b.Fatal(err)
					}
					s = m
				}
				applied = trajectory(b, s, len(run.theta0), steps)
			}
			b.ReportMetric(float64(applied), "applications/traj")
			b.ReportMetric(float64(steps), "steps")
		})
	}
}

// TestNNMLPCoalescing: over nn's MLP operators (not affine, although nn.SGD
// has the AffineOperators methods) Memo falls back to the coalescence memo,
// and its results equal full bitwise — with nn's real BLAS kernels.
func TestNNMLPCoalescing(t *testing.T) {
	const steps = 120
	seed := replaytest.Seed(t)
	run := newNNRun(t, "regression-sin", "mlp:32", "mse", 0.01, 10, steps, seed)
	memo, err := replay.NewMemo(run.sgd, run.theta0, replay.MemoConfig{BudgetBytes: replay.DefaultBudgetBytes})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := memo.Evaluator().(*replay.Coalescing); !ok {
		t.Fatalf("memo over nn mlp uses %T", memo.Evaluator())
	}
	full := replay.NewFull(run.sgd.Clone(), run.theta0)
	dim := len(run.theta0)
	got, want := make([]float32, dim), make([]float32, dim)
	applied := 0
	for n := 1; n <= steps; n++ {
		res, err := memo.Backward(got, n)
		if err != nil {
			t.Fatal(err)
		}
		applied += res.Applied
		if _, err := full.Backward(want, n); err != nil {
			t.Fatal(err)
		}
		if !replaytest.Bitwise(got, want) {
			t.Fatalf("step %d: coalescing memo differs from full (relative %.3g)", n, replaytest.RelErr(got, want))
		}
	}
	t.Logf("%d applications (full %d)", applied, steps*(steps+1)/2)
}
