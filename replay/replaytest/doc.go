// Package replaytest holds the test suite every replay.Strategy passes
// (TestStrategy, in the style of gonum's testblas) and small in-memory
// operator families with known mathematics, so that replay's tests do not
// depend on nn:
//
//   - Quadratic: the scalar quadratic of the paper's §3.1,
//     T_k(θ) = θ − ηa(θ − ȳ_{b_k}) = ρθ + ηa ȳ_{b_k}; AffineOperators.
//   - LeastSquares: a linear model with MSE loss; AffineOperators.
//   - TanhNet: a one-hidden-layer tanh regression network (nonlinear).
//   - Constant: T_k(θ) = c_{b_k}, the paper's Example 2.4.
//   - Affine: generic low-rank affine maps, dense or row-space offsets.
//   - Optim: an optimizer over one of those (their Grad methods): momentum,
//     nesterov, adam, adamw as torch.optim 1.13 defines them, on the flat
//     state s = (θ, buffers, t); replay.MomentumAffineOperators over the
//     affine ones. OptimFamilies lists the combinations Families includes.
//
// Every Apply is a deterministic float32 computation of (k, θ) — of (k, s)
// for Optim — that allocates nothing after its first call, as
// replay.Operators requires. Forward is an in-memory
// replay.ForwardSource. Batches is a batch log (Batches[k−1] is step k).
package replaytest
