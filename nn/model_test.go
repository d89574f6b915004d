package nn

import (
	"errors"
	"math"
	"slices"
	"testing"
)

func TestNewModelLayout(t *testing.T) {
	for _, c := range []struct {
		spec    string
		in, out int
		dim     int
		names   []string
		shapes  [][]int
	}{
		{"linear", 784, 10, 7850, []string{"0.weight", "0.bias"}, [][]int{{10, 784}, {10}}},
		{"scalar", 0, 1, 1, []string{"theta"}, [][]int{{1}}},
		{"mlp:32", 1, 1, 32 + 32 + 32 + 1, []string{"0.weight", "0.bias", "2.weight", "2.bias"},
			[][]int{{32, 1}, {32}, {1, 32}, {1}}},
		{"mlp:500x5", 784, 10, 784*500 + 500 + 4*(500*500+500) + 500*10 + 10, nil, nil},
		{"mlp:64x2,32", 3, 2, 3*64 + 64 + 64*64 + 64 + 64*32 + 32 + 32*2 + 2,
			[]string{"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias", "6.weight", "6.bias"},
			[][]int{{64, 3}, {64}, {64, 64}, {64}, {32, 64}, {32}, {2, 32}, {2}}},
	} {
		m := mustModel(t, c.spec, c.in, c.out)
		if m.Dim() != c.dim || m.Spec() != c.spec || m.In() != c.in || m.Out() != c.out {
			t.Errorf("%s: dim %d in %d out %d, want dim %d", c.spec, m.Dim(), m.In(), m.Out(), c.dim)
		}
		ts := m.Tensors()
		off := 0
		for i, tn := range ts {
			if tn.Offset != off {
				t.Errorf("%s: tensor %s at %d, want %d (no gaps)", c.spec, tn.Name, tn.Offset, off)
			}
			off += tn.Size()
			if c.names != nil && (tn.Name != c.names[i] || !slices.Equal(tn.Shape, c.shapes[i])) {
				t.Errorf("%s: tensor %d is %s %v, want %s %v", c.spec, i, tn.Name, tn.Shape, c.names[i], c.shapes[i])
			}
		}
		if off != m.Dim() {
			t.Errorf("%s: tensors cover %d of %d", c.spec, off, m.Dim())
		}
	}
	for _, bad := range []string{"mlp", "mlp:", "mlp:0", "mlp:5x0", "mlp:ax2", "conv", ""} {
		if _, err := NewModel(bad, 3, 2); !errors.Is(err, ErrSpec) {
			t.Errorf("%q: error %v, want ErrSpec", bad, err)
		}
	}
	if _, err := NewModel("scalar", 0, 2); !errors.Is(err, ErrShape) {
		t.Errorf("scalar with 2 outputs: %v", err)
	}
}

// TestInitSchemes checks the distribution of each scheme on a wide layer:
// with 78 400 weights the sample standard deviation is within 1% of the
// target except with negligible probability (its relative sd is 1/√(2n)).
func TestInitSchemes(t *testing.T) {
	const seed = 3
	m := mustModel(t, "mlp:100", 784, 10)
	fanIn, fanOut := 784.0, 100.0
	for _, c := range []struct {
		scheme     string
		std        float64
		uniform    bool
		zeroBiases bool
	}{
		{"", math.Sqrt(2 / fanIn), false, true},
		{"he", math.Sqrt(2 / fanIn), false, true},
		{"lecun", math.Sqrt(1 / fanIn), false, true},
		{"glorot", math.Sqrt(2 / (fanIn + fanOut)), false, true},
		{"torch", 1 / math.Sqrt(fanIn) / math.Sqrt(3), true, false},
	} {
		theta := initTheta(t, m, c.scheme, seed)
		w := theta[:784*100]
		var mean, sq float64
		for _, v := range w {
			mean += float64(v)
			sq += float64(v) * float64(v)
		}
		n := float64(len(w))
		mean /= n
		std := math.Sqrt(sq/n - mean*mean)
		if math.Abs(std/c.std-1) > 0.01 || math.Abs(mean) > 4*c.std/math.Sqrt(n) {
			t.Errorf("%q: weights mean %g std %g, want 0, %g", c.scheme, mean, std, c.std)
		}
		if c.uniform {
			bound := float32(1 / math.Sqrt(fanIn))
			for _, v := range theta[:784*100+100] {
				if v < -bound || v >= bound {
					t.Fatalf("torch: %g outside ±%g", v, bound)
				}
			}
		}
		bias := theta[784*100 : 784*100+100]
		allZero := !slices.ContainsFunc(bias, func(v float32) bool { return v != 0 })
		if allZero != c.zeroBiases {
			t.Errorf("%q: biases all zero = %v", c.scheme, allZero)
		}
		if !slices.Equal(theta, initTheta(t, m, c.scheme, seed)) {
			t.Errorf("%q: not deterministic", c.scheme)
		}
		if slices.Equal(theta, initTheta(t, m, c.scheme, seed+1)) {
			t.Errorf("%q: seeds %d and %d agree", c.scheme, seed, seed+1)
		}
	}
	if err := m.Init(make([]float32, m.Dim()), "xavier", 1); !errors.Is(err, ErrSpec) {
		t.Errorf("unknown scheme: %v", err)
	}
	// Golden values: the initialisation must not change with the Go version.
	theta := initTheta(t, mustModel(t, "linear", 2, 1), "he", 1)
	if !slices.Equal(theta, goldenLinearHe[:]) {
		t.Errorf("linear 2→1 he seed 1 = %v, want %v", theta, goldenLinearHe)
	}
}

// Recorded from this implementation (Go 1.26); any change breaks stored runs.
var goldenLinearHe = [3]float32{-1.4947016, 1.9141445, 0}

func TestParseLoss(t *testing.T) {
	for _, l := range []Loss{CrossEntropy, MSE, Quadratic} {
		got, err := ParseLoss(l.String())
		if err != nil || got != l {
			t.Errorf("ParseLoss(%q) = %v, %v", l, got, err)
		}
	}
	if _, err := ParseLoss("hinge"); !errors.Is(err, ErrSpec) {
		t.Errorf("hinge: %v", err)
	}
	for _, c := range [][3]string{
		{"mlp:500x5", "fashion-mnist", "cross-entropy"},
		{"linear", "fashion-mnist", "mse"},
		{"scalar", "quadratic", "quadratic"},
		{"mlp:32", "regression-sin", "mse"},
	} {
		if got := DefaultLoss(c[0], c[1]); got != c[2] {
			t.Errorf("DefaultLoss(%s, %s) = %s, want %s", c[0], c[1], got, c[2])
		}
	}
}
