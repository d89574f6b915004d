package nn

import (
	"errors"
	"math"
	"testing"

	"gonum.org/v1/gonum/blas"
)

// TestPixelInputs checks every input of both Fashion-MNIST splits, read
// through Input from the byte storage, against float32(b)/255 computed here
// without the package's table.
func TestPixelInputs(t *testing.T) {
	train, test := fashionMNIST(t)
	for _, d := range []*Dataset{train, test} {
		x := make([]float32, d.In+3) // longer than In: Input writes dst[:In]
		for i := range d.N {
			d.Input(x, i)
			for j, b := range d.Pixels[i*d.In : (i+1)*d.In] {
				if want := float32(b) / 255; math.Float32bits(x[j]) != math.Float32bits(want) {
					t.Fatalf("sample %d input %d = %g, want %g", i, j, x[j], want)
				}
			}
		}
	}
}

// floatCopy returns the first n samples of an image data set twice: as
// bytes (sharing d's slices) and as float32 inputs float32(b)/255 computed
// here, the representation ReadIDX used to build.
func floatCopy(d *Dataset, n int) (pix, flt *Dataset) {
	pix = &Dataset{Name: d.Name, N: n, In: d.In, Out: d.Out,
		Pixels: d.Pixels[:n*d.In], Y: d.Y[:n*d.Out], Labels: d.Labels[:n]}
	flt = &Dataset{Name: d.Name, N: n, In: d.In, Out: d.Out,
		X: make([]float32, n*d.In), Y: d.Y[:n*d.Out], Labels: d.Labels[:n]}
	for k, b := range pix.Pixels {
		flt.X[k] = float32(b) / 255
	}
	return pix, flt
}

func sameBits32(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

// TestPixelStorageBitwise runs SGD steps, gradients, batch losses,
// evaluations and affine steps on Fashion-MNIST samples stored as bytes and
// on a float32 copy, with both BLAS backends, and requires bitwise equal
// results: the byte storage changes memory, not arithmetic.
func TestPixelStorageBitwise(t *testing.T) {
	const seed, n, steps = 41, 3000, 30
	t.Logf("seed %d", seed)
	train, _ := fashionMNIST(t)
	pix, flt := floatCopy(train, n)
	log := randomLog(n, 8, steps, seed)

	for name, impl := range map[string]blas.Float32{"pure-go": pureGo{}, BLASBackend(): defaultBLAS} {
		m := mustModel(t, "mlp:64x2", 784, 10)
		theta0 := initTheta(t, m, "", seed)
		sp, err := newSGD(m, CrossEntropy, pix, 0.05, log, impl)
		if err != nil {
			t.Fatal(err)
		}
		sf, err := newSGD(m, CrossEntropy, flt, 0.05, log, impl)
		if err != nil {
			t.Fatal(err)
		}
		tp := append([]float32(nil), theta0...)
		tf := append([]float32(nil), theta0...)
		gp, gf := make([]float32, m.Dim()), make([]float32, m.Dim())
		for k := 1; k <= steps; k++ {
			b := log.Batch(k)
			if lp, lf := sp.Gradient(gp, tp, b), sf.Gradient(gf, tf, b); math.Float64bits(lp) != math.Float64bits(lf) {
				t.Fatalf("%s: step %d: gradient loss %v (bytes) vs %v (float32)", name, k, lp, lf)
			}
			if i := sameBits32(gp, gf); i >= 0 {
				t.Fatalf("%s: step %d: gradient[%d] %g (bytes) vs %g (float32)", name, k, i, gp[i], gf[i])
			}
			if lp, lf := sp.StepLoss(tp, b), sf.StepLoss(tf, b); math.Float64bits(lp) != math.Float64bits(lf) {
				t.Fatalf("%s: step %d: loss %v (bytes) vs %v (float32)", name, k, lp, lf)
			}
			if i := sameBits32(tp, tf); i >= 0 {
				t.Fatalf("%s: step %d: θ[%d] %g (bytes) vs %g (float32)", name, k, i, tp[i], tf[i])
			}
		}
		if sameBits32(tp, theta0) < 0 {
			t.Fatalf("%s: %d steps left θ unchanged: the comparison is vacuous", name, steps)
		}
		b := FixedSubset(n, 100, seed)
		if lp, lf := sp.BatchLoss(tp, b), sf.BatchLoss(tf, b); math.Float64bits(lp) != math.Float64bits(lf) {
			t.Errorf("%s: batch loss %v (bytes) vs %v (float32)", name, lp, lf)
		}
	}

	// Evaluations over every sample (several chunks).
	m := mustModel(t, "mlp:64x2", 784, 10)
	theta := initTheta(t, m, "", seed)
	lp, ap := NewEvaluator(m, CrossEntropy, pix, nil).Eval(theta)
	lf, af := NewEvaluator(m, CrossEntropy, flt, nil).Eval(theta)
	if math.Float64bits(lp) != math.Float64bits(lf) || ap != af {
		t.Errorf("evaluation: loss %v acc %v (bytes) vs loss %v acc %v (float32)", lp, ap, lf, af)
	}
	if math.IsNaN(ap) || !(lp > 0) {
		t.Errorf("evaluation: loss %v acc %v, want > 0 and a number", lp, ap)
	}

	// Affine steps of the linear model with MSE read the inputs too.
	lin := mustModel(t, "linear", 784, 10)
	ap2, err := NewSGD(lin, MSE, pix, 0.01, log)
	if err != nil {
		t.Fatal(err)
	}
	af2, err := NewSGD(lin, MSE, flt, 0.01, log)
	if err != nil {
		t.Fatal(err)
	}
	for k := 1; k <= 5; k++ {
		up, bp, cp, op := ap2.AffineStep(k)
		uf, bf, cf, of := af2.AffineStep(k)
		if bp != bf || math.Float64bits(cp) != math.Float64bits(cf) || len(up) != len(uf) || len(op) != len(of) {
			t.Fatalf("affine step %d: b %d c %v (bytes) vs b %d c %v (float32)", k, bp, cp, bf, cf)
		}
		for i := range up {
			if math.Float64bits(up[i]) != math.Float64bits(uf[i]) {
				t.Fatalf("affine step %d: U[%d] %v (bytes) vs %v (float32)", k, i, up[i], uf[i])
			}
		}
		for i := range op {
			if math.Float64bits(op[i]) != math.Float64bits(of[i]) {
				t.Fatalf("affine step %d: C[%d] %v (bytes) vs %v (float32)", k, i, op[i], of[i])
			}
		}
	}
}

// TestDatasetStorageChecked: a data set with both storages, or with Pixels
// of the wrong length, does not fit any model.
func TestDatasetStorageChecked(t *testing.T) {
	m := mustModel(t, "linear", 2, 1)
	for name, d := range map[string]*Dataset{
		"both":  {N: 2, In: 2, Out: 1, X: make([]float32, 4), Pixels: make([]uint8, 4), Y: make([]float32, 2)},
		"short": {N: 2, In: 2, Out: 1, Pixels: make([]uint8, 3), Y: make([]float32, 2)},
	} {
		if _, err := NewSGD(m, MSE, d, 0.1, nil); !errors.Is(err, ErrShape) {
			t.Errorf("%s: error %v, want ErrShape", name, err)
		}
	}
	d := &Dataset{N: 2, In: 2, Out: 1, Pixels: []uint8{0, 255, 51, 1}, Y: make([]float32, 2)}
	if _, err := NewSGD(m, MSE, d, 0.1, nil); err != nil {
		t.Fatalf("byte data set rejected: %v", err)
	}
	x := make([]float32, 2)
	d.Input(x, 1)
	if x[0] != float32(51)/255 || x[1] != float32(1)/255 {
		t.Errorf("Input(1) = %v, want [51/255 1/255]", x)
	}
	s := &Dataset{N: 2, In: 2, Out: 1, X: []float32{1, 2, 3, 4}, Y: make([]float32, 2)}
	s.Input(x, 1)
	if x[0] != 3 || x[1] != 4 {
		t.Errorf("float32 storage: Input(1) = %v, want [3 4]", x)
	}
}
