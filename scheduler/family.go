package scheduler

import (
	"context"
	"fmt"
	"strings"

	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/export"
	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/internal/echo"
)

// The model-family seam: the scheduler reaches models only through
// family.Family and family.Model (package family states their concurrency
// contract), found in Options.Families by the run's model name. It owns
// everything else: the batch log, checkpoints, anchors, the schedule.

// failer is an optional capability of a family's Operators and Measurers
// whose calls can fail (an external model's round trips to a child):
// Apply and Measure have no error return, so the first failure is kept
// and reported by Err. The scheduler asks after each forward step, each
// job and each forward replay, and fails the run with the reason; the
// values computed since the failure are discarded.
type failer interface{ Err() error }

// familyErr returns the first failure any of vs reports (nil for values
// without the capability).
func familyErr(vs ...any) error {
	for _, v := range vs {
		if f, ok := v.(failer); ok {
			if err := f.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// familySpec is what a family reads of a run's configuration.
func familySpec(cfg ckpt.RunConfig) family.Spec {
	return family.Spec{
		Model: cfg.Model, Init: cfg.Init, Loss: cfg.Loss, Dataset: cfg.Dataset, DataPath: cfg.DataPath,
		LR: cfg.LR, Batch: cfg.Batch, Seed: cfg.Seed, EvalSize: cfg.EvalSize,
		Optim: family.Optimizer{
			Name: cfg.Optimizer, Momentum: cfg.Momentum, Dampening: cfg.Dampening,
			Beta1: cfg.Beta1, Beta2: cfg.Beta2, Eps: cfg.Eps, WeightDecay: cfg.WeightDecay,
		},
	}
}

// familyOf returns the first registered family that knows model.
func (o Options) familyOf(model string) (family.Family, error) {
	for _, f := range o.Families {
		if f.Knows(model) {
			return f, nil
		}
	}
	names := make([]string, len(o.Families))
	for i, f := range o.Families {
		names[i] = f.Name()
	}
	return nil, fmt.Errorf("model %q: no registered model family knows it (families: %s): %w", echo.Clip(model), strings.Join(names, ", "), ErrInvalid)
}

// sizeOf returns the family and the size of a stored configuration, checked
// again by its family (nothing is loaded).
func (o Options) sizeOf(cfg ckpt.RunConfig) (family.Family, family.Size, error) {
	f, err := o.familyOf(cfg.Model)
	if err != nil {
		return nil, family.Size{}, err
	}
	spec := familySpec(cfg)
	size, problems := f.Resolve(&spec)
	if len(problems) > 0 {
		return nil, family.Size{}, fmt.Errorf("run %q: %s: %w", echo.Clip(cfg.Name), strings.Join(problems, "; "), ErrInvalid)
	}
	return f, size, nil
}

// Tensors returns θ of the forward or backward iterate at step (see
// Params) as the model's named tensors, views into one vector: what the
// server encodes as safetensors. The optimizer's state is left out
// (StateTensors has it).
func (s *Scheduler) Tensors(ctx context.Context, name, kind string, step int) ([]export.Tensor, error) {
	return s.tensors(ctx, name, kind, step, false)
}

// StateTensors is Tensors with the optimizer's state after θ, named by the
// layout rule of docs/protocol.md (the same as Tensors for plain SGD).
func (s *Scheduler) StateTensors(ctx context.Context, name, kind string, step int) ([]export.Tensor, error) {
	return s.tensors(ctx, name, kind, step, true)
}

func (s *Scheduler) tensors(ctx context.Context, name, kind string, step int, withState bool) ([]export.Tensor, error) {
	layout, state, thetaDim, err := s.params(ctx, name, kind, step)
	if err != nil {
		return nil, err
	}
	ts, err := cutTensors(layout, state)
	if err != nil || withState {
		return ts, err
	}
	// θ is the prefix of the layout that tiles state[:thetaDim].
	n := 0
	for i, t := range ts {
		if n == thetaDim {
			return ts[:i], nil
		}
		n += len(t.Data)
	}
	if n == thetaDim {
		return ts, nil
	}
	return nil, fmt.Errorf("scheduler: no tensor ends at θ's length %d", thetaDim)
}

// cutTensors cuts theta into the layout's named tensors (views, no copy);
// the layout must tile theta exactly.
func cutTensors(layout []family.Tensor, theta []float32) ([]export.Tensor, error) {
	out := make([]export.Tensor, 0, len(layout))
	off := 0
	for _, t := range layout {
		n := t.Elems()
		if n < 0 || off+n > len(theta) {
			return nil, fmt.Errorf("scheduler: tensor %s [%d:%d] outside the %d parameters", t.Name, off, off+n, len(theta))
		}
		out = append(out, export.Tensor{Name: t.Name, Shape: t.Shape, Data: theta[off : off+n : off+n]})
		off += n
	}
	if off != len(theta) {
		return nil, fmt.Errorf("scheduler: tensors cover %d of %d parameters", off, len(theta))
	}
	return out, nil
}
