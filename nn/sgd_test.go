package nn

import (
	"math"
	"slices"
	"sync"
	"testing"
)

// TestSGDNoAllocation checks that a step allocates nothing once warm, both
// through Apply (batch log) and Step.
func TestSGDNoAllocation(t *testing.T) {
	d := synthetic(64, 12, 4, true, 3)
	m := mustModel(t, "mlp:16x2", 12, 4)
	theta := initTheta(t, m, "", 3)
	log := randomLog(d.N, 8, 16, 3)
	sgd, err := NewSGD(m, CrossEntropy, d, 0.01, log)
	if err != nil {
		t.Fatal(err)
	}
	k := 0
	if n := testing.AllocsPerRun(50, func() { sgd.Apply(k%len(log)+1, theta); k++ }); n != 0 {
		t.Errorf("Apply: %v allocations per step", n)
	}
	if n := testing.AllocsPerRun(50, func() { sgd.Step(theta, log[3]) }); n != 0 {
		t.Errorf("Step: %v allocations per step", n)
	}
}

// TestSGDNoAllocationFashionMNIST does the same for the paper's model on the
// real data with the default BLAS (OpenBLAS through cgo when enabled).
func TestSGDNoAllocationFashionMNIST(t *testing.T) {
	train, _ := fashionMNIST(t)
	m := mustModel(t, "mlp:500x5", 784, 10)
	theta := initTheta(t, m, "", 1)
	log := randomLog(train.N, 8, 4, 1)
	sgd, err := NewSGD(m, CrossEntropy, train, 0.001, log)
	if err != nil {
		t.Fatal(err)
	}
	k := 0
	if n := testing.AllocsPerRun(3, func() { sgd.Apply(k%len(log)+1, theta); k++ }); n != 0 {
		t.Errorf("Apply: %v allocations per step (%s)", n, BLASBackend())
	}
}

// run applies steps 1..len(log) from θ0 with impl and returns the result.
func run(t *testing.T, sgd *SGD, theta0 []float32, steps int) []float32 {
	t.Helper()
	theta := append([]float32(nil), theta0...)
	for k := 1; k <= steps; k++ {
		sgd.Apply(k, theta)
	}
	return theta
}

// TestBackendsAgree runs the same steps with the default backend and with
// gonum's pure-Go BLAS constructed explicitly: bitwise reproducible per
// backend, equal across backends to rounding.
func TestBackendsAgree(t *testing.T) {
	const seed, steps = 5, 30
	t.Logf("seed %d, default backend %s", seed, BLASBackend())
	train, _ := fashionMNIST(t)
	m := mustModel(t, "mlp:64x2", 784, 10)
	theta0 := initTheta(t, m, "", seed)
	log := randomLog(train.N, 8, steps, seed)
	def, err := NewSGD(m, CrossEntropy, train, 0.01, log)
	if err != nil {
		t.Fatal(err)
	}
	pure, err := newSGD(m, CrossEntropy, train, 0.01, log, pureGo{})
	if err != nil {
		t.Fatal(err)
	}
	a, a2 := run(t, def, theta0, steps), run(t, def.Clone(), theta0, steps)
	b, b2 := run(t, pure, theta0, steps), run(t, pure.Clone(), theta0, steps)
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(a2[i]) {
			t.Fatalf("%s: runs differ at θ[%d]: %g vs %g", BLASBackend(), i, a[i], a2[i])
		}
		if math.Float32bits(b[i]) != math.Float32bits(b2[i]) {
			t.Fatalf("gonum: runs differ at θ[%d]: %g vs %g", i, b[i], b2[i])
		}
	}
	// Different summation orders in the GEMMs give differences of a few ε32
	// per step that the next steps propagate; over 30 small steps from
	// weights of size ≈ 0.05 they stay far below 1e-5, while one wrong step
	// moves weights by η|g| ≈ 1e-3.
	var diff, moved float64
	for i := range a {
		diff = max(diff, math.Abs(float64(a[i]-b[i])))
		moved = max(moved, math.Abs(float64(a[i]-theta0[i])))
	}
	t.Logf("max |θ_default − θ_gonum| = %g after %d steps (max move %g)", diff, steps, moved)
	if diff > 1e-5 {
		t.Errorf("backends differ by %g", diff)
	}
	if moved < 1e-3 {
		t.Errorf("parameters moved only %g: the comparison proves nothing", moved)
	}
}

// TestAffineStepReproducesApply checks T_k(Θ) = Θ(I − c UᵀU) + C against
// Apply for every affine combination.
func TestAffineStepReproducesApply(t *testing.T) {
	const seed, lr = 13, 0.05
	t.Logf("seed %d", seed)
	quad, _, err := LoadDataset("quadratic", "", seed)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		spec string
		loss Loss
		d    *Dataset
		b    int
	}{
		{"linear", MSE, synthetic(40, 5, 3, true, seed), 8},
		{"linear", Quadratic, synthetic(40, 5, 3, false, seed), 4},
		{"linear", MSE, synthetic(40, 0, 2, false, seed), 3},
		{"scalar", Quadratic, quad, 1},
		{"scalar", Quadratic, quad, 5},
		{"scalar", MSE, quad, 2},
	}
	for _, c := range cases {
		t.Run(c.spec+"/"+c.loss.String(), func(t *testing.T) {
			m := mustModel(t, c.spec, c.d.In, c.d.Out)
			log := randomLog(c.d.N, c.b, 10, seed)
			sgd, err := NewSGD(m, c.loss, c.d, lr, log)
			if err != nil {
				t.Fatal(err)
			}
			if !sgd.IsAffine() {
				t.Fatal("not affine")
			}
			rows, cols := sgd.AffineShape()
			theta := initTheta(t, m, "torch", seed)
			th := make([]float64, rows*cols)
			back := make([]float32, m.Dim())
			for k := 1; k <= len(log); k++ {
				sgd.Pack(th, theta)
				sgd.Unpack(back, th)
				for i := range back {
					if back[i] != theta[i] {
						t.Fatalf("Unpack(Pack(θ)) ≠ θ at %d", i)
					}
				}
				u, b, ck, off := sgd.AffineStep(k)
				// next = Θ − c(ΘUᵀ)U + C in float64.
				next := make([]float64, rows*cols)
				for r := range rows {
					for i := range b {
						var dot float64
						for j := range cols {
							dot += th[r*cols+j] * u[i*cols+j]
						}
						for j := range cols {
							next[r*cols+j] -= ck * dot * u[i*cols+j]
						}
					}
					for j := range cols {
						next[r*cols+j] += th[r*cols+j] + off[r*cols+j]
					}
				}
				sgd.Apply(k, theta)
				sgd.Pack(th, theta)
				for i := range next {
					// Apply rounds every intermediate to float32: a few ε32
					// of the terms' magnitudes.
					if d := math.Abs(next[i] - th[i]); d > 1e-6*(1+math.Abs(next[i])) {
						t.Fatalf("step %d: Θ[%d] affine %g, Apply %g", k, i, next[i], th[i])
					}
				}
			}
		})
	}
	for _, c := range []struct {
		spec string
		loss Loss
	}{{"mlp:4", MSE}, {"linear", CrossEntropy}, {"scalar", CrossEntropy}} {
		d := synthetic(10, 2, 1, false, seed)
		sgd, err := NewSGD(mustModel(t, c.spec, 2, 1), c.loss, d, lr, nil)
		if err != nil {
			t.Fatal(err)
		}
		if sgd.IsAffine() {
			t.Errorf("%s with %s claims to be affine", c.spec, c.loss)
		}
	}
}

// TestScalarQuadraticClosedForm checks the scalar model against the
// paper's §3.1 recursion θ ← ρθ + ηa·ȳ_b with ρ = 1 − ηa.
func TestScalarQuadraticClosedForm(t *testing.T) {
	const seed, lr = 17, 0.1
	train, _, err := LoadDataset("quadratic", "", seed)
	if err != nil {
		t.Fatal(err)
	}
	m := mustModel(t, "scalar", train.In, train.Out)
	log := randomLog(train.N, 1, 200, seed)
	sgd, err := NewSGD(m, Quadratic, train, lr, log)
	if err != nil {
		t.Fatal(err)
	}
	theta := []float32{3}
	want := 3.0
	rho := 1 - lr*QuadraticA
	for k := 1; k <= len(log); k++ {
		sgd.Apply(k, theta)
		want = rho*want + lr*QuadraticA*float64(train.Y[log[k-1][0]])
		if math.Abs(float64(theta[0])-want) > 1e-5 {
			t.Fatalf("step %d: θ = %g, closed form %g", k, theta[0], want)
		}
	}
}

func TestNewSGDErrors(t *testing.T) {
	d := synthetic(10, 3, 2, true, 1)
	if _, err := NewSGD(mustModel(t, "linear", 4, 2), MSE, d, 0.1, nil); err == nil {
		t.Error("model 4→2 accepted data 3→2")
	}
	if _, err := NewSGD(mustModel(t, "linear", 3, 2), MSE, d, 0, nil); err == nil {
		t.Error("learning rate 0 accepted")
	}
	if _, err := NewSGD(mustModel(t, "linear", 3, 2), Loss(42), d, 0.1, nil); err == nil {
		t.Error("unknown loss accepted")
	}
}

// TestDeterminismPaperModel repeats a few steps of the paper's model (large
// enough for gonum's GEMM to run its blocks in parallel goroutines) and
// requires bitwise-equal results for each backend.
func TestDeterminismPaperModel(t *testing.T) {
	const seed, steps = 23, 4
	train, _ := fashionMNIST(t)
	m := mustModel(t, "mlp:500x5", 784, 10)
	theta0 := initTheta(t, m, "", seed)
	log := randomLog(train.N, 8, steps, seed)
	def, err := NewSGD(m, CrossEntropy, train, 0.01, log)
	if err != nil {
		t.Fatal(err)
	}
	pure, err := newSGD(m, CrossEntropy, train, 0.01, log, pureGo{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*SGD{def, pure} {
		a, b := run(t, s, theta0, steps), run(t, s.Clone(), theta0, steps)
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				t.Fatalf("runs differ at θ[%d]: %g vs %g", i, a[i], b[i])
			}
		}
	}
}

// TestClonesConcurrent runs clones of one SGD in parallel goroutines (as the
// daemon's workers do, sharing model, data and batches) and requires each to
// match a sequential run bitwise.
func TestClonesConcurrent(t *testing.T) {
	const seed, steps, workers = 29, 20, 4
	train, _ := fashionMNIST(t)
	m := mustModel(t, "mlp:128x2", 784, 10)
	theta0 := initTheta(t, m, "", seed)
	log := randomLog(train.N, 8, steps, seed)
	sgd, err := NewSGD(m, CrossEntropy, train, 0.01, log)
	if err != nil {
		t.Fatal(err)
	}
	want := run(t, sgd, theta0, steps)
	got := make([][]float32, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			s := sgd.Clone()
			theta := append([]float32(nil), theta0...)
			for k := 1; k <= steps; k++ {
				s.Apply(k, theta)
			}
			got[w] = theta
		})
	}
	wg.Wait()
	for w := range workers {
		if !slices.Equal(got[w], want) {
			t.Errorf("worker %d differs from the sequential run", w)
		}
	}
}

// TestScratchReuse checks that steps with changing batch sizes (the scratch
// space grows, then is used in part) give what fresh operators give.
func TestScratchReuse(t *testing.T) {
	const seed = 37
	d := synthetic(40, 6, 3, true, seed)
	m := mustModel(t, "mlp:7x2", 6, 3)
	theta0 := initTheta(t, m, "", seed)
	batches := [][]int32{{1, 2, 3}, {4, 5, 6, 7, 8, 9, 10, 11}, {12}, {13, 14, 15, 16}}
	reused, err := NewSGD(m, CrossEntropy, d, 0.1, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := append([]float32(nil), theta0...)
	b := append([]float32(nil), theta0...)
	for _, batch := range batches {
		reused.Step(a, batch)
		fresh, _ := NewSGD(m, CrossEntropy, d, 0.1, nil)
		fresh.Step(b, batch)
		if !slices.Equal(a, b) {
			t.Fatalf("batch of %d: reused scratch differs from fresh", len(batch))
		}
	}
}
