package replaytest

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/replay-sgd/replay/replay"
)

// Family is an operator family with its initial state and the number of
// steps its batch log covers.
type Family struct {
	Name string
	Ops  replay.Operators
	// Theta0 is the initial state: θ_0 for SGD families, s_0 = (θ_0, zero
	// buffers, t = 0) for optimizer families (len Ops.Dim() either way).
	Theta0 []float32
	Steps  int
	// Blocks splits the state into consecutive blocks compared separately
	// against a tolerance (θ, each optimizer buffer, the step count), so
	// that a buffer's error is not hidden by θ's norm nor t's; nil is one
	// block, the whole state.
	Blocks []int
}

// Families returns one instance of each in-memory family with random data
// from rng and batch logs of the given number of steps: the SGD families
// (Quadratic first), then OptimFamilies. Each call returns fresh operators
// (own scratch space).
func Families(rng *rand.Rand, steps int) []Family {
	return append([]Family{
		NewQuadraticFamily(rng, 200, 2, 0.1, steps),
		NewLeastSquaresFamily(rng, 3, 2, 50, 4, 0.05, steps),
		NewTanhFamily(rng, 3, 40, 4, 0.05, steps),
		NewConstantFamily(rng, 3, 2, steps),
		NewAffineFamily(rng, 2, 5, 3, steps),
	}, OptimFamilies(rng, steps)...)
}

// NewQuadraticFamily returns a Quadratic with n targets y_i ~ N(0,1), a = 1,
// learning rate lr, iid batches of the given size, and θ_0 ~ N(0, 4).
func NewQuadraticFamily(rng *rand.Rand, n, batch int, lr float32, steps int) Family {
	y := make([]float32, n)
	for i := range y {
		y[i] = float32(rng.NormFloat64())
	}
	q := &Quadratic{Y: y, A: 1, LR: lr, Batches: IIDBatches(rng, n, batch, steps)}
	return Family{Name: "quadratic", Ops: q, Theta0: []float32{float32(2 * rng.NormFloat64())}, Steps: steps}
}

// NewLeastSquaresFamily returns a LeastSquares with n samples x ~ N(0, I),
// y = W x + bias + noise, shuffled batches and θ_0 ~ N(0, 1/4).
func NewLeastSquaresFamily(rng *rand.Rand, in, out, n, batch int, lr float32, steps int) Family {
	x, y := make([]float32, n*in), make([]float32, n*out)
	w := make([]float64, out*(in+1))
	for i := range w {
		w[i] = rng.NormFloat64()
	}
	for i := 0; i < n; i++ {
		for j := 0; j < in; j++ {
			x[i*in+j] = float32(rng.NormFloat64())
		}
		for o := 0; o < out; o++ {
			acc := w[o*(in+1)+in] + 0.1*rng.NormFloat64()
			for j := 0; j < in; j++ {
				acc += w[o*(in+1)+j] * float64(x[i*in+j])
			}
			y[i*out+o] = float32(acc)
		}
	}
	l := &LeastSquares{In: in, Out: out, X: x, Y: y, LR: lr, Batches: ShuffledBatches(rng, n, batch, steps)}
	return Family{Name: "least-squares", Ops: l, Theta0: normal(rng, l.Dim(), 0.5), Steps: steps}
}

// NewTanhFamily returns a TanhNet with h hidden units fitting y = sin x on n
// points x ~ U[−π, π], shuffled batches and θ_0 ~ N(0, 1).
func NewTanhFamily(rng *rand.Rand, h, n, batch int, lr float32, steps int) Family {
	x, y := make([]float32, n), make([]float32, n)
	for i := range x {
		x[i] = float32((2*rng.Float64() - 1) * math.Pi)
		y[i] = float32(math.Sin(float64(x[i])))
	}
	net := &TanhNet{H: h, X: x, Y: y, LR: lr, Batches: ShuffledBatches(rng, n, batch, steps)}
	return Family{Name: "tanh", Ops: net, Theta0: normal(rng, net.Dim(), 1), Steps: steps}
}

// NewConstantFamily returns a Constant with m constants of dimension dim
// (entries ~ N(0,1)) chosen by iid batches of size 1.
func NewConstantFamily(rng *rand.Rand, m, dim, steps int) Family {
	c := make([][]float32, m)
	for i := range c {
		c[i] = normal(rng, dim, 1)
	}
	ops := &Constant{C: c, Batches: IIDBatches(rng, m, 1, steps)}
	return Family{Name: "constant", Ops: ops, Theta0: normal(rng, dim, 1), Steps: steps}
}

func normal(rng *rand.Rand, n int, sd float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(sd * rng.NormFloat64())
	}
	return v
}

// Seed returns the seed for a randomized test and logs it: the value of the
// environment variable REPLAYTEST_SEED when set (to replay a failure), else
// the clock.
func Seed(t testing.TB) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("REPLAYTEST_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("REPLAYTEST_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (set REPLAYTEST_SEED=%d to repeat)", seed, seed)
	return seed
}

// New builds the strategy under test for one run: operators ops, initial
// point θ_0, and fwd, the forward iterates of the same run.
type New func(ops replay.Operators, theta0 []float32, fwd replay.ForwardSource) (replay.Strategy, error)

// TestStrategy is the suite every replay.Strategy passes. Over each family of
// Families (SGD operators on θ and optimizer operators on the whole state
// s = (θ, buffers, t)) it checks, for n = 0 … 40:
//
//   - θ̃_0 = θ_0 bitwise, with anchor 0 and no application;
//   - θ̃_1 = θ_1 = T_1(θ_0);
//   - every result is what its Result says: T_{r+1}∘…∘T_n(x_r) with x_r
//     θ_0 (init, r = 0), the forward θ_r, or the strategy's own θ̃_r
//     (backward), and 0 ≤ r < n;
//   - dst is only written (it is filled with NaN before each call) and θ_0
//     is not modified;
//   - results do not depend on the order of calls: a fresh strategy asked
//     the same steps in random order returns bitwise the same values;
//   - a negative step is an error wrapping replay.ErrStep.
//
// tol is the allowed error (RelErr, block by block: see Family.Blocks)
// against the direct evaluation: 0 demands bitwise equality (every
// strategy but the affine and momentum prefixes).
func TestStrategy(t *testing.T, newStrategy New, tol float64) {
	t.Helper()
	seed := Seed(t)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	const steps = 40
	for _, fam := range Families(rng, steps) {
		t.Run(fam.Name, func(t *testing.T) {
			testFamily(t, fam, newStrategy, tol, rng.Uint64())
		})
	}
}

func testFamily(t *testing.T, fam Family, newStrategy New, tol float64, seed uint64) {
	dim := fam.Ops.Dim()
	theta0 := slices.Clone(fam.Theta0)
	fwd := NewForward(fam.Ops, theta0)
	s, err := newStrategy(fam.Ops, theta0, fwd)
	if err != nil {
		t.Fatalf("new strategy: %v", err)
	}
	direct := replay.NewDirect(fam.Ops)
	dst := make([]float32, dim)
	ref := make([]float32, dim)
	start := make([]float32, dim)

	res, err := s.Backward(dst, 0)
	if err != nil {
		t.Fatalf("step 0: %v", err)
	}
	if !Bitwise(dst, fam.Theta0) || res != (replay.Result{Step: 0, Anchor: 0, From: replay.SourceInit, Applied: 0}) {
		t.Fatalf("step 0: got %v %+v, want θ0 %v under anchor 0 from init, no application", dst, res, fam.Theta0)
	}

	results := make([][]float32, fam.Steps+1)
	results[0] = slices.Clone(fam.Theta0)
	for n := 1; n <= fam.Steps; n++ {
		fill(dst, float32(math.NaN()))
		res, err := s.Backward(dst, n)
		if err != nil {
			t.Fatalf("step %d: %v", n, err)
		}
		if res.Step != n || res.Anchor < 0 || res.Anchor >= n || res.Applied < 0 {
			t.Fatalf("step %d: bad result %+v", n, res)
		}
		switch res.From {
		case replay.SourceInit:
			if res.Anchor != 0 {
				t.Fatalf("step %d: anchor %d from init", n, res.Anchor)
			}
			copy(start, fam.Theta0)
		case replay.SourceForward:
			if err := fwd.Forward(start, res.Anchor); err != nil {
				t.Fatal(err)
			}
		case replay.SourceBackward:
			copy(start, results[res.Anchor])
		default:
			t.Fatalf("step %d: unknown source %q", n, res.From)
		}
		if _, err := direct.Eval(context.Background(), ref, replay.Anchor{Step: res.Anchor, Start: start}, n); err != nil {
			t.Fatal(err)
		}
		if !CloseBlocks(dst, ref, fam.Blocks, tol) {
			t.Fatalf("step %d (%+v): got %v, want T_{r+1}∘…∘T_n(x_r) = %v (tol %g)", n, res, dst, ref, tol)
		}
		if n == 1 {
			copy(ref, fam.Theta0)
			fam.Ops.Apply(1, ref)
			if !CloseBlocks(dst, ref, fam.Blocks, tol) {
				t.Fatalf("θ̃_1 = %v, want θ_1 = %v", dst, ref)
			}
		}
		results[n] = slices.Clone(dst)
	}
	if !Bitwise(theta0, fam.Theta0) {
		t.Fatalf("θ0 modified: %v, was %v", theta0, fam.Theta0)
	}
	if _, err := s.Backward(dst, -1); !errors.Is(err, replay.ErrStep) {
		t.Fatalf("step -1: error %v, want replay.ErrStep", err)
	}

	// Order independence, on a fresh strategy.
	s2, err := newStrategy(fam.Ops, theta0, NewForward(fam.Ops, theta0))
	if err != nil {
		t.Fatal(err)
	}
	order := rand.New(rand.NewPCG(seed, 1)).Perm(fam.Steps + 1)
	for _, n := range order {
		fill(dst, float32(math.NaN()))
		if _, err := s2.Backward(dst, n); err != nil {
			t.Fatalf("step %d (random order): %v", n, err)
		}
		if !Bitwise(dst, results[n]) {
			t.Fatalf("step %d asked in the order %v: %v, sequentially %v", n, order, dst, results[n])
		}
	}
}

func fill(v []float32, x float32) {
	for i := range v {
		v[i] = x
	}
}

// Bitwise reports whether a and b hold identical bits.
func Bitwise(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// Close reports whether RelErr(a, b) ≤ tol (tol = 0: bitwise equality).
func Close(a, b []float32, tol float64) bool {
	if tol == 0 {
		return Bitwise(a, b)
	}
	return RelErr(a, b) <= tol
}

// CloseBlocks reports whether a and b are Close block by block (blocks as
// in Family.Blocks; nil is one block).
func CloseBlocks(a, b []float32, blocks []int, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	if blocks == nil {
		return Close(a, b, tol)
	}
	at := 0
	for _, n := range blocks {
		if !Close(a[at:at+n], b[at:at+n], tol) {
			return false
		}
		at += n
	}
	return at == len(a)
}

// RelErr returns ‖a − b‖₂ / max(‖b‖₂, 1), in float64: relative for
// parameter vectors of norm above one, absolute below, so that an iterate
// that happens to be near zero (the scalar quadratic's fixed point may be)
// is not held to a relative precision float32 cannot give.
func RelErr(a, b []float32) float64 {
	var d, n float64
	for i := range a {
		x := float64(a[i]) - float64(b[i])
		d += x * x
		n += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(d / max(n, 1))
}
