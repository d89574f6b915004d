package scheduler

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/nn"
	"github.com/replay-sgd/replay/replay"
)

// toyFamily is an in-memory family unknown to nn: models "toy:…" on the
// data set "toy", a 2-vector pulled towards its batch's mean target at two
// rates, with one tensor of optimizer-like state (a step count) after the
// parameters. It exists to show the scheduler runs any family through the
// seam, nothing of nn's.
type toyFamily struct{ loads atomic.Int32 }

const toyTrain, toyTest = 40, 10

func (*toyFamily) Name() string            { return "toy" }
func (*toyFamily) Knows(model string) bool { return strings.HasPrefix(model, "toy:") }

func (*toyFamily) Resolve(s *family.Spec) (family.Size, []string) {
	if s.Dataset != "toy" {
		return family.Size{}, []string{"toy models need the toy data set"}
	}
	if s.Init == "" {
		s.Init = "ones"
	}
	if s.Loss == "" {
		s.Loss = "toy"
	}
	return family.Size{Params: 3, Train: toyTrain, Test: toyTest, Outputs: 1, DataBytes: 4 * (toyTrain + toyTest), ScratchBytes: 64}, nil
}

func (*toyFamily) DataKey(s family.Spec) string { return "toy" }

func (f *toyFamily) LoadData(s family.Spec) (family.Data, error) {
	f.loads.Add(1)
	y := make([]float32, toyTrain+toyTest)
	for i := range y {
		y[i] = float32(i%7) - 3
	}
	return y, nil
}

func (*toyFamily) Open(s family.Spec, d family.Data) (family.Model, error) {
	return toyModel{y: d.([]float32), lr: float32(s.LR)}, nil
}

func (*toyFamily) Sampler(n, batch int, seed uint64) family.Sampler {
	return nn.NewSampler(n, batch, seed)
}

type toyModel struct {
	y  []float32
	lr float32
}

func (toyModel) Dim() int      { return 3 }
func (toyModel) ThetaDim() int { return 3 }
func (toyModel) Layout() []family.Tensor {
	return []family.Tensor{{Name: "w", Shape: []int{2}}, {Name: "opt.step", Shape: []int{1}}}
}
func (toyModel) Init(dst []float32) error { dst[0], dst[1], dst[2] = 1, 1, 0; return nil }
func (m toyModel) Operators(b family.Batches) (family.Operators, error) {
	return toyOps{m: m, b: b}, nil
}
func (m toyModel) Measurer() family.Measurer { return toyMeasurer{m} }

type toyOps struct {
	m toyModel
	b family.Batches
}

func (o toyOps) Dim() int                               { return 3 }
func (o toyOps) Clone() family.Operators                { return o }
func (o toyOps) Affine() (replay.AffineOperators, bool) { return nil, false }
func (o toyOps) Apply(k int, theta []float32)           { o.Step(theta, o.b.Batch(k)) }
func (o toyOps) Step(theta []float32, batch []int32) {
	var mean float32
	for _, i := range batch {
		mean += o.m.y[i]
	}
	mean /= float32(len(batch))
	theta[0] -= o.m.lr * (theta[0] - mean)
	theta[1] -= 2 * o.m.lr * (theta[1] - mean) * theta[1] * theta[1] // not affine
	theta[2]++
}

type toyMeasurer struct{ m toyModel }

func (e toyMeasurer) Measure(theta []float32) (float64, float64, float64) {
	loss := func(ys []float32) float64 {
		var s float64
		for _, y := range ys {
			d := float64(theta[0] - y)
			s += d * d
		}
		return s / float64(len(ys))
	}
	return loss(e.m.y[:toyTrain]), loss(e.m.y[toyTrain:]), math.NaN()
}

// The scheduler runs a family it has never heard of, next to the built-in
// one: the run is resolved, admitted, trained and replayed backward through
// the seam alone; its iterates are the family's operators composed in the
// backward order, bit for bit; its tensors are the family's layout
// (parameters, then state); and a model no family knows is a 400-class
// error naming the families.
func TestForeignFamily(t *testing.T) {
	toy := &toyFamily{}
	h := startHarness(t, openStore(t, t.TempDir()), testOptions().WithFamilies(append(testFamilies, toy)...))
	const steps = 12
	h.create(api.RunSpec{Name: "t", Dataset: "toy", Model: "toy:2", LR: 0.05, Batch: 4, Steps: steps, Window: 5})
	h.create(api.RunSpec{Name: "q", Preset: "quadratic", Steps: 20})
	h.wait("t", ckpt.StateDone)
	h.wait("q", ckpt.StateDone)

	st, _ := h.s.Status("t")
	if st.Spec.Init != "ones" || st.Spec.Loss != "toy" {
		t.Errorf("family defaults not applied: init %q loss %q", st.Spec.Init, st.Spec.Loss)
	}
	if n := toy.loads.Load(); n != 1 {
		t.Errorf("toy data set loaded %d times, want once (one key)", n)
	}
	y, _ := toy.LoadData(family.Spec{})
	ops := toyOps{m: toyModel{y: y.([]float32), lr: 0.05}}
	sampler := nn.NewSampler(toyTrain, 4, DefaultSeed)
	batch := func(k int) []int32 {
		b := make([]int32, 4)
		sampler.Batch(k, b)
		return b
	}
	// Backward with window 5: the anchor of step n is the last multiple of
	// 5 below n, started from the backward iterate there.
	for n := 1; n <= steps; n++ {
		want := []float32{1, 1, 0}
		// θ̃ under anchors every 5 steps (reset_from backward): compose
		// the segments' chains, each T_{r+1}∘…∘T_n of the previous start.
		r := 0
		for r+5 < n {
			for k := r + 5; k > r; k-- {
				ops.Step(want, batch(k))
			}
			r += 5
		}
		for k := n; k > r; k-- {
			ops.Step(want, batch(k))
		}
		layout, got, err := h.s.Params(context.Background(), "t", KindBackward, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(layout) != 2 || layout[1].Name != "opt.step" {
			t.Fatalf("layout %v", layout)
		}
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("backward %d = %v, want %v (the family's operators in backward order)", n, got, want)
			}
		}
	}
	ts, err := h.s.Tensors(context.Background(), "t", KindForward, steps)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Name != "w" || len(ts[0].Data) != 2 || ts[1].Name != "opt.step" || ts[1].Data[0] != steps {
		t.Errorf("tensors %+v: want w [2] and opt.step = %d", ts, steps)
	}

	_, err = h.s.Create(api.RunSpec{Dataset: "toy", Model: "bogus:1"})
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "families: nn, toy") {
		t.Errorf("unknown model: %v", err)
	}
	_, err = h.s.Create(api.RunSpec{Dataset: "regression-sin", Model: "toy:1"})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "toy models need the toy data set") {
		t.Errorf("family's own problem: %v", err)
	}
}

// A scheduler without families is refused at construction, not at the
// first run.
func TestNoFamily(t *testing.T) {
	if err := DefaultOptions().Validate(); err == nil || !strings.Contains(err.Error(), "no model family") {
		t.Errorf("Validate without families: %v", err)
	}
}
