package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Source says where the start point of an anchor came from.
type Source string

// Anchor start sources. The strings are those stored by ckpt (AnchorRec.From).
const (
	// SourceInit is θ_0, the start of anchor 0.
	SourceInit Source = "init"
	// SourceForward is the forward iterate θ_r.
	SourceForward Source = "forward"
	// SourceBackward is the backward iterate θ̃_r of the previous anchor.
	SourceBackward Source = "backward"
)

// Result describes one backward iterate computed by a Strategy.
type Result struct {
	// Step is n.
	Step int
	// Anchor is the anchor step r: the result is T_{r+1}∘…∘T_n(x_r).
	Anchor int
	// From is where x_r came from.
	From Source
	// Applied counts the operator applications (or their equivalent, see
	// the evaluators) performed by this call, including any work spent
	// moving the anchor.
	Applied int
}

// Strategy computes backward iterates θ̃_n under its own choice of anchors,
// in memory and to completion (it evaluates with context.Background(): a
// caller that must be able to stop a long chain uses an Evaluator, as the
// scheduler does).
// Strategies are deterministic: the result for n depends only on the
// operators, θ_0 and the configuration, never on which steps were asked
// before (order of calls only changes the cost). They are meant for
// sequential use (n = 1, 2, 3, …), which is the cheap order, and are not safe
// for concurrent use.
type Strategy interface {
	// Backward writes θ̃_n into dst (len Dim) for n ≥ 0. θ̃_0 = θ_0. dst is
	// only written, never read, and is not retained.
	Backward(dst []float32, n int) (Result, error)
}

// Config chooses the anchors of a Windowed or Memo strategy. The anchors are
// a pure function of the configuration: anchor 0 is (0, θ_0); after anchor r
// the next one is AnchorRule{Window: W}.Next(r, r, ResetAt) — min(r+W, the
// first reset step > r), the rule the scheduler's Policy applies too.
type Config struct {
	// Window is W: no step is more than W steps from its anchor. 0 means no
	// periodic reset (only ResetAt).
	Window int
	// ResetAt lists extra anchor steps: a reset at s makes steps n > s use
	// anchor s (until the next reset). Order and duplicates do not matter.
	ResetAt []int
	// From is the start point of every anchor after the first:
	// SourceBackward (the default when empty) or SourceForward.
	From Source
	// Forward gives θ_r; required when From is SourceForward.
	Forward ForwardSource
}

// Validate reports every problem of c at once (wrapping ErrConfig and, for a
// missing ForwardSource, ErrNoForward).
func (c Config) Validate() error {
	var errs []error
	if c.Window < 0 {
		errs = append(errs, fmt.Errorf("window %d < 0: %w", c.Window, ErrConfig))
	}
	for _, s := range c.ResetAt {
		if s <= 0 {
			errs = append(errs, fmt.Errorf("reset step %d ≤ 0: %w", s, ErrConfig))
		}
	}
	switch c.From {
	case "", SourceBackward:
	case SourceForward:
		if c.Forward == nil {
			errs = append(errs, fmt.Errorf("anchors from forward iterates: %w", ErrNoForward))
		}
	default:
		errs = append(errs, fmt.Errorf("anchor source %q (want %q or %q): %w", c.From, SourceBackward, SourceForward, ErrConfig))
	}
	return errors.Join(errs...)
}

// anchored is the engine shared by Full, Windowed and Memo: a deterministic
// anchor sequence and one Evaluator.
type anchored struct {
	ops    Operators
	dim    int
	theta0 []float32
	rule   AnchorRule
	resets []int // sorted, unique, > 0
	from   Source
	fwd    ForwardSource
	eval   Evaluator

	step  int       // current anchor step
	src   Source    // its start's source
	start []float32 // its start point
	// last is the latest result under the current anchor (lastStep, or −1):
	// the start of the next anchor when it comes from the backward iterate.
	lastStep int
	last     []float32
}

func newAnchored(ops Operators, theta0 []float32, cfg Config, eval Evaluator) (anchored, error) {
	if err := cfg.Validate(); err != nil {
		return anchored{}, err
	}
	dim := ops.Dim()
	if len(theta0) != dim {
		panic(fmt.Sprintf("replay: θ0 has length %d, operators %d", len(theta0), dim))
	}
	from := cfg.From
	if from == "" {
		from = SourceBackward
	}
	resets := slices.Clone(cfg.ResetAt)
	slices.Sort(resets)
	resets = slices.Compact(resets)
	a := anchored{
		ops: ops, dim: dim, theta0: slices.Clone(theta0),
		rule: AnchorRule{Window: cfg.Window}, resets: resets, from: from, fwd: cfg.Forward, eval: eval,
		start: make([]float32, dim), last: make([]float32, dim),
	}
	a.rewind()
	return a, nil
}

// rewind goes back to anchor 0.
func (a *anchored) rewind() {
	a.step, a.src = 0, SourceInit
	copy(a.start, a.theta0)
	a.lastStep = -1
}

// next returns the anchor that follows r, or −1 if there is none.
func (a *anchored) next(r int) int { return a.rule.Next(r, r, a.resets) }

// Backward implements Strategy.
func (a *anchored) Backward(dst []float32, n int) (Result, error) {
	if len(dst) != a.dim {
		panic(fmt.Sprintf("replay: dst has length %d, operators %d", len(dst), a.dim))
	}
	if n < 0 {
		return Result{}, fmt.Errorf("backward step %d: %w", n, ErrStep)
	}
	if n <= a.step && a.step > 0 {
		// An earlier anchor: the anchor sequence is replayed from 0.
		a.rewind()
	}
	applied := 0
	for nx := a.next(a.step); nx >= 0 && nx < n; nx = a.next(a.step) {
		if a.from == SourceForward {
			// Forward starts do not depend on earlier anchors: go
			// straight to the last anchor before n.
			for m := a.next(nx); m >= 0 && m < n; m = a.next(nx) {
				nx = m
			}
		}
		k, err := a.move(nx)
		applied += k
		if err != nil {
			return Result{}, err
		}
	}
	k, err := a.eval.Eval(context.Background(), dst, Anchor{Step: a.step, Start: a.start}, n)
	applied += k
	if err != nil {
		return Result{}, fmt.Errorf("backward step %d under anchor %d: %w", n, a.step, err)
	}
	copy(a.last, dst)
	a.lastStep = n
	return Result{Step: n, Anchor: a.step, From: a.src, Applied: applied}, nil
}

// move makes r the anchor, computing its start point.
func (a *anchored) move(r int) (int, error) {
	applied := 0
	switch a.from {
	case SourceForward:
		if err := a.fwd.Forward(a.start, r); err != nil {
			return 0, fmt.Errorf("forward iterate %d for anchor: %w", r, err)
		}
	default:
		if a.lastStep != r {
			k, err := a.eval.Eval(context.Background(), a.last, Anchor{Step: a.step, Start: a.start}, r)
			if err != nil {
				return k, fmt.Errorf("backward iterate %d for anchor: %w", r, err)
			}
			applied = k
		}
		copy(a.start, a.last)
	}
	a.step, a.src, a.lastStep = r, a.from, -1
	return applied, nil
}

// Full computes θ̃_n = T_1∘…∘T_n(θ_0) directly: n applications at step n.
// It is the reference for every other strategy.
type Full struct{ anchored }

// NewFull returns the full strategy. θ_0 is copied.
func NewFull(ops Operators, theta0 []float32) *Full {
	a, err := newAnchored(ops, theta0, Config{}, NewDirect(ops))
	if err != nil {
		panic(err) // the empty configuration is valid
	}
	return &Full{a}
}

// Backward implements Strategy: θ̃_n with n applications, anchor 0.
func (f *Full) Backward(dst []float32, n int) (Result, error) { return f.anchored.Backward(dst, n) }

// Windowed computes backward iterates under moving anchors (see Config),
// each evaluated directly: at most W applications per step when called
// sequentially. A call that skips steps pays up to W more for every anchor
// it passes when starts come from the backward iterate; a call for a step
// below the current anchor replays the anchors from step 0.
type Windowed struct{ anchored }

// NewWindowed returns a windowed-reset strategy. θ_0 is copied.
func NewWindowed(ops Operators, theta0 []float32, cfg Config) (*Windowed, error) {
	a, err := newAnchored(ops, theta0, cfg, NewDirect(ops))
	if err != nil {
		return nil, err
	}
	return &Windowed{a}, nil
}

// Backward implements Strategy.
func (w *Windowed) Backward(dst []float32, n int) (Result, error) { return w.anchored.Backward(dst, n) }

// DefaultBudgetBytes is a reasonable coalescence memo budget: 64 MiB keeps
// about 160 levels of a 100 000-parameter model, every level of a scalar one.
const DefaultBudgetBytes int64 = 64 << 20

// MemoConfig configures a Memo strategy.
type MemoConfig struct {
	// Config chooses the anchors; the zero value is full (anchor 0 only).
	Config
	// BudgetBytes bounds the coalescence memo; 0 keeps no level at all
	// (the cost of Direct), DefaultBudgetBytes is a sensible choice. The
	// affine prefix ignores it: its memory is fixed, Cols²+2·Rows·Cols
	// float64.
	BudgetBytes int64
	// Stride is the coalescence memo's initial stride (≤ 0: 1).
	Stride int
	// Coalesce forces the coalescence memo even for affine (or
	// momentum-affine) operators.
	Coalesce bool
}

// affineChecker is implemented by operator families that know at run time
// whether their AffineOperators methods are valid (nn.SGD: only for linear
// models with MSE and the scalar quadratic).
type affineChecker interface{ IsAffine() bool }

// Memo evaluates the anchors of its Config with a memoizing evaluator, the
// one NewMemoEvaluator chooses (or a Coalescing when Coalesce is set).
type Memo struct {
	anchored
}

// NewMemoEvaluator returns the exact memoizing evaluator for ops: a
// MomentumPrefix when AsMomentumAffine accepts ops (momentum or Nesterov on
// an affine gradient), else an AffinePrefix when ops implement
// AffineOperators (and, if they have an IsAffine method, it returns true),
// else a Coalescing with the given budget and stride — the coalescence
// memo, bitwise exact, for every operator that is not affine (Adam and
// AdamW among them: their steps divide by √v, so no composition of them has
// a compact form).
func NewMemoEvaluator(ops Operators, budgetBytes int64, stride int) Evaluator {
	if m, ok := AsMomentumAffine(ops); ok {
		return NewMomentumPrefix(m)
	}
	if aff, ok := ops.(AffineOperators); ok && isAffine(ops) {
		return NewAffinePrefix(aff)
	}
	return NewCoalescing(ops, budgetBytes, stride)
}

// NewMemo returns a memoized strategy. θ_0 is copied.
func NewMemo(ops Operators, theta0 []float32, cfg MemoConfig) (*Memo, error) {
	var ev Evaluator
	if cfg.Coalesce {
		ev = NewCoalescing(ops, cfg.BudgetBytes, cfg.Stride)
	} else {
		ev = NewMemoEvaluator(ops, cfg.BudgetBytes, cfg.Stride)
	}
	a, err := newAnchored(ops, theta0, cfg.Config, ev)
	if err != nil {
		return nil, err
	}
	return &Memo{a}, nil
}

// Backward implements Strategy. Applied counts the evaluator's work: maps
// composed (affine prefix) or operators applied (coalescence memo).
func (m *Memo) Backward(dst []float32, n int) (Result, error) { return m.anchored.Backward(dst, n) }

// Evaluator returns the evaluator Memo chose (*MomentumPrefix,
// *AffinePrefix or *Coalescing).
func (m *Memo) Evaluator() Evaluator { return m.eval }

func isAffine(ops Operators) bool {
	if c, ok := ops.(affineChecker); ok {
		return c.IsAffine()
	}
	return true
}

// Sliding computes θ̃_n = T_{n−W+1}∘…∘T_n(θ_{n−W}) from the forward iterate
// W steps back: exactly W applications per step for n > W, and the full
// iterate T_1∘…∘T_n(θ_0) (n applications) for n ≤ W.
type Sliding struct {
	ops    Operators
	theta0 []float32
	window int
	fwd    ForwardSource
	direct *Direct
	start  []float32
}

// NewSliding returns a sliding-window strategy (W ≥ 1). θ_0 is copied.
func NewSliding(ops Operators, theta0 []float32, window int, fwd ForwardSource) (*Sliding, error) {
	var errs []error
	if window < 1 {
		errs = append(errs, fmt.Errorf("sliding window %d < 1: %w", window, ErrConfig))
	}
	if fwd == nil {
		errs = append(errs, fmt.Errorf("sliding window: %w", ErrNoForward))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(theta0) != ops.Dim() {
		panic(fmt.Sprintf("replay: θ0 has length %d, operators %d", len(theta0), ops.Dim()))
	}
	return &Sliding{
		ops: ops, theta0: slices.Clone(theta0), window: window, fwd: fwd,
		direct: NewDirect(ops), start: make([]float32, ops.Dim()),
	}, nil
}

// Backward implements Strategy.
func (s *Sliding) Backward(dst []float32, n int) (Result, error) {
	if n < 0 {
		return Result{}, fmt.Errorf("backward step %d: %w", n, ErrStep)
	}
	an, src := Anchor{Step: 0, Start: s.theta0}, SourceInit
	if n > s.window {
		r := n - s.window
		if err := s.fwd.Forward(s.start, r); err != nil {
			return Result{}, fmt.Errorf("forward iterate %d for sliding window: %w", r, err)
		}
		an, src = Anchor{Step: r, Start: s.start}, SourceForward
	}
	k, err := s.direct.Eval(context.Background(), dst, an, n)
	if err != nil {
		return Result{}, err
	}
	return Result{Step: n, Anchor: an.Step, From: src, Applied: k}, nil
}

var (
	_ Strategy = (*Full)(nil)
	_ Strategy = (*Windowed)(nil)
	_ Strategy = (*Memo)(nil)
	_ Strategy = (*Sliding)(nil)
)
