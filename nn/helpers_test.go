package nn

import (
	"sync"
	"testing"

	"github.com/replay-sgd/replay/replay"
)

// The SGD operators are what replay composes.
var (
	_ replay.Operators       = (*SGD)(nil)
	_ replay.AffineOperators = (*SGD)(nil)
	_ Batches                = BatchLog(nil)
)

var fmnist struct {
	once        sync.Once
	train, test *Dataset
	err         error
}

// fashionMNIST loads the real data set once per test binary (≈0.5 s, 55 MB).
// The Debian package dataset-fashion-mnist is a test dependency (installed
// by .ci/run), so a missing data set is a failure, not a skip.
func fashionMNIST(tb testing.TB) (train, test *Dataset) {
	tb.Helper()
	fmnist.once.Do(func() {
		fmnist.train, fmnist.test, fmnist.err = LoadDataset("fashion-mnist", "", 0)
	})
	if fmnist.err != nil {
		tb.Fatal(fmnist.err)
	}
	return fmnist.train, fmnist.test
}

// synthetic returns a random data set: inputs U[-1,1]; with classes true,
// one-hot targets of random labels, else N(0,1) targets.
func synthetic(n, in, out int, classes bool, seed uint64) *Dataset {
	r := newRNG(seed, 99, 0)
	d := &Dataset{Name: "synthetic", N: n, In: in, Out: out,
		X: make([]float32, n*in), Y: make([]float32, n*out)}
	for i := range d.X {
		d.X[i] = float32(r.uniform(-1, 1))
	}
	if classes {
		d.Labels = make([]int32, n)
		for i := range n {
			c := int(r.intn(uint64(out)))
			d.Labels[i] = int32(c)
			d.Y[i*out+c] = 1
		}
	} else {
		for i := range d.Y {
			d.Y[i] = float32(r.normal())
		}
	}
	return d
}

// randomLog returns steps batches of size b drawn by a Sampler.
func randomLog(n, b, steps int, seed uint64) BatchLog {
	s := NewSampler(n, b, seed)
	log := make(BatchLog, steps)
	for k := range log {
		log[k] = make([]int32, b)
		s.Batch(k+1, log[k])
	}
	return log
}

func mustModel(tb testing.TB, spec string, in, out int) *Model {
	tb.Helper()
	m, err := NewModel(spec, in, out)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func initTheta(tb testing.TB, m *Model, scheme string, seed uint64) []float32 {
	tb.Helper()
	theta := make([]float32, m.Dim())
	if err := m.Init(theta, scheme, seed); err != nil {
		tb.Fatal(err)
	}
	return theta
}
