// Package replay is the mathematics of backward SGD: it composes training
// operators into forward and backward iterates, with several strategies that
// bound the cost. It is pure and deterministic: no I/O, no global state, no
// goroutines of its own (gonum's BLAS, used by AffinePrefix, may split large
// products over goroutines internally). Operators, forward iterates
// (ForwardSource) and parameters come in; parameters come out.
//
// # Composition order
//
// T_k is the training step made with the k-th batch (Operators.Apply(k, θ)).
// The forward iterate is θ_n = T_n∘…∘T_1(θ_0); the backward iterate is
//
//	θ̃_n = T_1∘T_2∘…∘T_n(θ_0),
//
// so T_n is applied FIRST and T_1 LAST: the newest batch acts on θ_0 and the
// oldest batch has the final word. θ̃_0 = θ_0 and θ̃_1 = θ_1. Under an anchor
// (r, x_r) a backward iterate is θ̃_n = T_{r+1}∘…∘T_n(x_r) for n > r: copy
// x_r, apply T_n, T_{n−1}, …, T_{r+1}.
//
// # Optimizer state
//
// T_k may be any optimizer's step (DESIGN §5): the operators act on the
// whole optimizer state s = (θ, buffers, t), a flat vector of length Dim
// laid out as docs/protocol.md says (θ; then momentum's buffer, or Adam's
// exp_avg and exp_avg_sq, each with θ's layout; then the step count t as
// one float32 integer). T_k(s) is one torch.optim step with batch k from s,
// so θ̃_n — the state T_1∘…∘T_n(s_0) from s_0 = (θ_0, zero buffers, t = 0)
// — is exactly what torch.optim reaches when it is fed batches n, n−1, …,
// 1: the innermost step T_n sees t = 0 (torch's "absent" momentum buffer:
// buf = g, no dampening) and T_1 sees t = n−1. Apply stays a pure function
// of (k, s): the bias correction of Adam and momentum's t = 0 case come
// from s's t, never from k, which is what makes a chain's levels
// comparable bitwise (Coalescing) and anchors restartable. An anchor
// carries the whole state: from the backward point it is θ̃_r's state, from
// the forward point the forward state at r (with t = r either way); dst,
// Anchor.Start and θ_0 below are states. This package never reads the
// layout except where a capability declares it (MomentumAffineOperators);
// norms, distances and exports of θ alone are the caller's business.
//
// # Evaluators and strategies
//
// An Evaluator computes one anchor segment exactly: Direct (n−r
// applications), AffinePrefix (memoized composition of affine maps, to
// rounding), MomentumPrefix (the same for heavy-ball or Nesterov momentum on
// an affine gradient, composing the maps of (θ, buf) with torch's t = 0
// step handled exactly; to rounding) and Coalescing (memoized chain that
// stops when it meets the previous one bitwise; bitwise exact, for any
// operators: it is the memo of Adam and AdamW, whose steps divide by √v and
// compose to nothing compact). NewMemoEvaluator picks the exact memo an
// Operators value admits. A Strategy chooses anchors and uses an
// evaluator: Full (anchor 0 only), Windowed (periodic resets every W steps
// and manual resets; start points from the backward or the forward
// iterate), Sliding (θ̃_n = T_{n−W+1}∘…∘T_n(θ_{n−W})) and Memo (the anchors
// of Full or Windowed with NewMemoEvaluator's choice, or Coalescing).
//
// Operators that implement Chainer (an external model, each application a
// round trip to another process) get the whole chain of a Direct
// evaluation in one Chain call, steps in application order (n, n−1, …,
// r+1); its result must be bitwise that of the applications one by one.
//
// # The anchor policy
//
// AnchorRule is the only statement of when an anchor moves: under the
// anchor at a, the window's periodic reset falls at every m > a with m − a
// a multiple of W (so at a+W when that move is made, and W steps later
// again when an adaptive trial rejected it), and a manual reset at m moves
// the anchor to m. Windowed, Memo and Full take their anchor sequence from
// it. Policy is the state machine the scheduler executes for a run, in the
// style of etcd-raft: events in (Logged, SetPending, Received, Committed,
// Decide, Advance of a performed action), actions out (Next: dispatch a
// job, move the anchor, start an adaptive trial, roll back, done). Next
// does not change the policy; Advance does. It is pure and deterministic:
// the same events give the same actions, and its state after a restart is
// rebuilt from what the scheduler stores (anchor, segment number,
// frontier). Project lists the jobs still to come under the same rule (the
// scheduler's ETA). TrialKeeps is the adaptive decision.
//
// # What is mutated, what may alias
//
//   - dst arguments are only written; they must not alias an Anchor's Start,
//     θ_0, or each other. Nothing retains dst after the call returns.
//   - Anchor.Start, θ_0 and every input slice are never modified. Strategies
//     and memoizing evaluators keep copies, so callers may reuse their
//     slices after a call.
//   - Evaluators take a context: a cancelled evaluation returns the
//     context's error (wrapped) within a few applications, never a
//     partial result, and leaves an exact memo behind.
//   - Operators are mutated only through their own scratch space; an
//     Operators value (and every evaluator or strategy built on it) belongs
//     to one goroutine at a time.
//
// # Determinism
//
// Operators.Apply must be a deterministic function of (k, s): the same bits
// in give the same bits out. Given that, Direct, Coalescing, Full, Windowed,
// Sliding and Memo-with-Coalescing return bitwise identical results for the
// same mathematical iterate whatever the order of calls, and AffinePrefix
// and MomentumPrefix are deterministic too (the same compositions in the
// same order).
//
// # Memory
//
// Direct, Full, Windowed and Sliding hold O(Dim) floats. AffinePrefix holds
// Cols² + 2·Rows·Cols float64 (4.9 MB for a 784→10 linear model);
// MomentumPrefix 4·Cols² + 16·Rows·Cols float64 (MomentumPrefixBytes:
// 20.7 MB for the same model).
// Coalescing holds at most its byte budget of chain levels plus 3·Dim
// floats.
//
// Length mismatches are caller bugs and panic; steps out of range return
// errors wrapping ErrStep.
package replay
