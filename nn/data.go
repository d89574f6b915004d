package nn

import (
	"fmt"
	"math"
)

// Dataset is an in-memory data set. It is never modified after loading, so
// one Dataset may be shared by any number of goroutines.
type Dataset struct {
	Name       string
	N, In, Out int
	// X holds the inputs, N×In row-major (images scaled by 1/255).
	X []float32
	// Y holds the targets, N×Out row-major: one-hot rows for classification,
	// values for regression and the quadratic.
	Y []float32
	// Labels is the class of each sample; nil for regression data.
	Labels []int32
}

// DefaultFashionMNISTDir is where Debian's dataset-fashion-mnist package
// installs the Fashion-MNIST files.
const DefaultFashionMNISTDir = "/usr/share/datasets/fashion-mnist"

// Sizes of the synthetic data sets.
const (
	RegressionN = 100  // points of each regression split
	QuadraticN  = 1000 // samples y_i of the quadratic data set
)

// LoadDataset returns the training and test splits of a data set:
//
//   - "fashion-mnist": the IDX .gz files in dir (DefaultFashionMNISTDir when
//     dir is ""), in file order, In 784, Out 10, one-hot Y; seed is unused.
//     Missing files give an error wrapping ErrNoData that names the Debian
//     package dataset-fashion-mnist.
//   - "regression-sin", "regression-x2", "regression-abs": In = Out = 1,
//     y = sin x, x² or |x|. Training: RegressionN points x ~ U[−π, π] from
//     seed. Test: RegressionN points evenly spaced on [−π, π] (ends included).
//   - "quadratic": In = 0, Out = 1, QuadraticN samples y_i ~ N(0, 1) from seed
//     (for the scalar model and the Quadratic loss); test: another
//     QuadraticN from the same seed.
func LoadDataset(name, dir string, seed uint64) (train, test *Dataset, err error) {
	switch name {
	case "fashion-mnist":
		if dir == "" {
			dir = DefaultFashionMNISTDir
		}
		return loadFashionMNIST(dir)
	case "regression-sin", "regression-x2", "regression-abs":
		f := map[string]func(float64) float64{
			"regression-sin": math.Sin,
			"regression-x2":  func(x float64) float64 { return x * x },
			"regression-abs": math.Abs,
		}[name]
		r := newRNG(seed, streamData, 0)
		train = regression(name, RegressionN, f, func(int) float64 { return r.uniform(-math.Pi, math.Pi) })
		test = regression(name, RegressionN, f, func(i int) float64 {
			return -math.Pi + 2*math.Pi*float64(i)/float64(RegressionN-1)
		})
		return train, test, nil
	case "quadratic":
		return quadratic(name, QuadraticN, newRNG(seed, streamData, 0)),
			quadratic(name, QuadraticN, newRNG(seed, streamData, 1)), nil
	}
	return nil, nil, fmt.Errorf("data set %q (want fashion-mnist, regression-sin, regression-x2, regression-abs or quadratic): %w", name, ErrSpec)
}

func regression(name string, n int, f func(float64) float64, x func(int) float64) *Dataset {
	d := &Dataset{Name: name, N: n, In: 1, Out: 1, X: make([]float32, n), Y: make([]float32, n)}
	for i := range n {
		xi := x(i)
		d.X[i] = float32(xi)
		d.Y[i] = float32(f(xi))
	}
	return d
}

func quadratic(name string, n int, r *rng) *Dataset {
	d := &Dataset{Name: name, N: n, In: 0, Out: 1, X: []float32{}, Y: make([]float32, n)}
	for i := range d.Y {
		d.Y[i] = float32(r.normal())
	}
	return d
}

// check reports whether the data set fits model m.
func (d *Dataset) check(m *Model) error {
	if m.kind != kindScalar && d.In != m.in || d.Out != m.out {
		return fmt.Errorf("model %s is %d→%d, data set %s is %d→%d: %w",
			m.spec, m.in, m.out, d.Name, d.In, d.Out, ErrShape)
	}
	if len(d.X) != d.N*d.In || len(d.Y) != d.N*d.Out || d.Labels != nil && len(d.Labels) != d.N {
		return fmt.Errorf("data set %s: slice lengths do not match N=%d: %w", d.Name, d.N, ErrShape)
	}
	return nil
}
