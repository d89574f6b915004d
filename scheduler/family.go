package scheduler

import (
	"context"
	"fmt"

	"github.com/replay-sgd/replay/export"
	"github.com/replay-sgd/replay/nn"
)

// TensorSpec is one tensor of a model's state layout: its name (PyTorch's
// state-dict key for the built-in MLPs), its shape, and where it lies in
// the flat parameter vector.
type TensorSpec struct {
	Name   string
	Shape  []int
	Offset int
}

// Size is the number of elements of t.
func (t TensorSpec) Size() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Model is the start of the model-family seam: what the scheduler needs of
// a run's model to expose its state, without knowing which family it is.
// nn is the built-in family (nnModel); an external process speaking the
// operator protocol will be another. Implementations are read-only after
// construction and safe for concurrent use.
//
// Still reached through nn directly (the rest of the cut, see the report of
// issue 9): init from a seed (Create), operators and data set sizes
// (newEnv, the trainer's sampler), evaluation measures (evaluators).
type Model interface {
	// Dim is the length of the flat parameter vector.
	Dim() int
	// Layout lists the parameter tensors in order; they tile 0..Dim.
	Layout() []TensorSpec
}

// nnModel is the built-in family's Model.
type nnModel struct{ m *nn.Model }

var _ Model = nnModel{}

func (m nnModel) Dim() int { return m.m.Dim() }

func (m nnModel) Layout() []TensorSpec {
	ts := m.m.Tensors()
	out := make([]TensorSpec, len(ts))
	for i, t := range ts {
		out[i] = TensorSpec{Name: t.Name, Shape: t.Shape, Offset: t.Offset}
	}
	return out
}

// Tensors returns the forward or backward iterate at step (see Params) as
// the model's named tensors, views into one parameter vector: what the
// server encodes as safetensors.
func (s *Scheduler) Tensors(ctx context.Context, name, kind string, step int) ([]export.Tensor, error) {
	m, theta, err := s.Params(ctx, name, kind, step)
	if err != nil {
		return nil, err
	}
	return cutTensors(nnModel{m}, theta)
}

// cutTensors cuts theta into m's named tensors (views, no copy).
func cutTensors(m Model, theta []float32) ([]export.Tensor, error) {
	if len(theta) != m.Dim() {
		return nil, fmt.Errorf("scheduler: %d parameters for a model of dimension %d", len(theta), m.Dim())
	}
	var out []export.Tensor
	for _, t := range m.Layout() {
		n := t.Size()
		if t.Offset < 0 || t.Offset+n > len(theta) {
			return nil, fmt.Errorf("scheduler: tensor %s [%d:%d] outside the %d parameters", t.Name, t.Offset, t.Offset+n, len(theta))
		}
		out = append(out, export.Tensor{Name: t.Name, Shape: t.Shape, Data: theta[t.Offset : t.Offset+n]})
	}
	return out, nil
}
