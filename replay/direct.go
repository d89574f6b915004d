package replay

import (
	"context"
	"fmt"
)

// Direct evaluates T_{r+1}∘…∘T_n(x_r) by applying the n−r operators one by
// one, newest first: it copies x_r into dst and applies T_n, T_{n−1}, …,
// T_{r+1} in place. It keeps no memo, so its cost is always n−r applications
// and its result is the reference every other evaluator is checked against.
type Direct struct {
	ops Operators
}

var _ Evaluator = (*Direct)(nil)

// NewDirect returns a Direct evaluator over ops.
func NewDirect(ops Operators) *Direct { return &Direct{ops: ops} }

// Eval implements Evaluator. It returns ErrStep (wrapped) when n < a.Step.
func (d *Direct) Eval(ctx context.Context, dst []float32, a Anchor, n int) (int, error) {
	if err := checkEval(d.ops.Dim(), dst, a, n); err != nil {
		return 0, err
	}
	copy(dst, a.Start)
	if c, ok := d.ops.(Chainer); ok && n > a.Step {
		// One call for the whole chain (an external model: one round trip).
		steps := make([]int, 0, n-a.Step)
		for k := n; k > a.Step; k-- {
			steps = append(steps, k)
		}
		if err := c.Chain(ctx, dst, steps); err != nil {
			return 0, fmt.Errorf("evaluate step %d: %w", n, err)
		}
		return n - a.Step, nil
	}
	for k := n; k > a.Step; k-- {
		if (n-k)%checkEvery == 0 {
			if err := cancelled(ctx, n); err != nil {
				return n - k, err
			}
		}
		d.ops.Apply(k, dst)
	}
	return n - a.Step, nil
}

// checkEval validates the arguments of Evaluator.Eval. Length mismatches
// are caller bugs and panic, as in gonum; a step before the anchor is an
// error because it usually comes from data (a stored anchor, a request).
func checkEval(dim int, dst []float32, a Anchor, n int) error {
	if len(dst) != dim || len(a.Start) != dim {
		panic(fmt.Sprintf("replay: dimension mismatch: dst %d, start %d, operators %d", len(dst), len(a.Start), dim))
	}
	if a.Step < 0 || n < a.Step {
		return fmt.Errorf("evaluate step %d under anchor %d: %w", n, a.Step, ErrStep)
	}
	return nil
}
