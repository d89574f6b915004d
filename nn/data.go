package nn

import (
	"fmt"
	"math"
)

// Dataset is an in-memory data set. It is never modified after loading, so
// one Dataset may be shared by any number of goroutines.
//
// The inputs are stored in exactly one of two forms: X (float32) or, for
// image data sets, Pixels (the bytes), a quarter of the memory. The
// Fashion-MNIST training images take 47 MB instead of 188 MB, which matters
// because the daemon's memory budget counts models, not data sets (DESIGN.md
// §4). Read inputs through Input, which serves both.
type Dataset struct {
	Name       string
	N, In, Out int
	// X holds the inputs, N×In row-major; nil when Pixels is set. The
	// synthetic data sets use it.
	X []float32
	// Pixels holds the inputs of an image data set as bytes, N×In
	// row-major (the IDX file's pixels); nil when X is set. Input j of
	// sample i is float32(Pixels[i*In+j])/255, rounded once to float32.
	Pixels []uint8
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
//     dir is ""), in file order, In 784, Out 10, inputs as bytes in Pixels
//     (X nil), one-hot Y; seed is unused.
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

// pixelScale maps a byte v to its input value float32(v)/255 (one float32
// division, rounded once). Every reader of Pixels goes through this table,
// so a byte-stored data set and its float32 copy are bitwise the same input.
var pixelScale = func() (t [256]float32) {
	for v := range t {
		t[v] = float32(v) / 255
	}
	return t
}()

// Input writes the In inputs of sample i into dst[:In], whichever storage
// the data set uses. It panics if len(dst) < In or i is out of range. It
// does not allocate.
func (d *Dataset) Input(dst []float32, i int) {
	in := d.In
	dst = dst[:in]
	if d.Pixels != nil {
		p := d.Pixels[i*in : (i+1)*in]
		dst = dst[:len(p)] // lets the compiler drop the bounds check below
		for j, v := range p {
			dst[j] = pixelScale[v]
		}
		return
	}
	copy(dst, d.X[i*in:(i+1)*in])
}

// check reports whether the data set fits model m.
func (d *Dataset) check(m *Model) error {
	if m.kind != kindScalar && d.In != m.in || d.Out != m.out {
		return fmt.Errorf("model %s is %d→%d, data set %s is %d→%d: %w",
			m.spec, m.in, m.out, d.Name, d.In, d.Out, ErrShape)
	}
	if d.Pixels != nil && d.X != nil {
		return fmt.Errorf("data set %s has both X and Pixels: %w", d.Name, ErrShape)
	}
	nx := len(d.X)
	if d.Pixels != nil {
		nx = len(d.Pixels)
	}
	if nx != d.N*d.In || len(d.Y) != d.N*d.Out || d.Labels != nil && len(d.Labels) != d.N {
		return fmt.Errorf("data set %s: slice lengths do not match N=%d: %w", d.Name, d.N, ErrShape)
	}
	return nil
}
