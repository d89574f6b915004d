package replay

import (
	"context"
	"fmt"
)

// Operators is the family T_1, T_2, … of one run: T_k is the training step
// made with the k-th batch. Parameters are flat float32 vectors of length Dim.
//
// Apply is not safe for concurrent use (implementations own scratch space);
// give each goroutine its own Operators (nn.SGD has Clone for that).
type Operators interface {
	// Dim is the length of a parameter vector.
	Dim() int
	// Apply replaces theta by T_k(theta), in place, for k ≥ 1.
	Apply(k int, theta []float32)
}

// ForwardSource gives forward iterates θ_k = T_k∘…∘T_1(θ_0). The scheduler
// implements it over the store (nearest checkpoint + incremental replay);
// tests implement it in memory.
type ForwardSource interface {
	// Forward writes θ_k into dst (len Dim) for k ≥ 0.
	Forward(dst []float32, k int) error
}

// Anchor is where a backward chain starts: step r and the point x_r.
// Backward iterates under it are θ̃_n = T_{r+1}∘…∘T_n(x_r) for n > r, and x_r
// itself for n = r. Start is never modified.
type Anchor struct {
	Step  int
	Start []float32
}

// Evaluator computes the backward iterate of step n under an anchor: the exact
// mathematics of one anchor segment, without any choice of anchor.
//
// Implementations: Direct (stateless apart from scratch space, cost n−r),
// AffinePrefix and Coalescing (memoized, meant to be called with increasing
// n under one anchor; a different anchor discards the memo). None is safe
// for concurrent use.
//
// Eval checks ctx between applications (every checkEvery of them) and
// returns ctx's error, wrapped, once it is done: dst is then undefined, the
// applications made so far are counted, and a memoizing evaluator keeps a
// memo that is still exact (AffinePrefix keeps the maps composed so far;
// Coalescing discards its chain), so the next call returns the same bits as
// if nothing had been cancelled.
type Evaluator interface {
	// Eval writes T_{a.Step+1}∘…∘T_n(a.Start) into dst (len Dim, must not
	// alias a.Start) and returns the number of operator applications (or
	// their equivalent) it performed.
	Eval(ctx context.Context, dst []float32, a Anchor, n int) (applied int, err error)
}

// checkEvery is how many applications an evaluator makes between two looks
// at its context: a look costs a few nanoseconds, an application at least
// tens, so the overhead stays below a few percent while a cancelled chain
// stops within a few applications.
const checkEvery = 4

// cancelled returns ctx's error wrapped for an evaluation of step n.
func cancelled(ctx context.Context, n int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("evaluate step %d: %w", n, err)
	}
	return nil
}

// AffineOperators is an optional capability of Operators (checked by type
// assertion) whose every T_k is affine in the parameters. Viewing θ as a
// Rows×Cols matrix Θ (see Pack), each step is
//
//	T_k(Θ) = Θ (I − c_k U_kᵀ U_k) + C_k
//
// with U_k a small b×Cols matrix (b = the batch size, so the update is low
// rank) and C_k a Rows×Cols matrix. Least squares (linear model, MSE loss)
// and the scalar quadratic have this form; the memoized prefix strategy
// composes these maps exactly instead of re-applying them.
type AffineOperators interface {
	Operators
	// AffineShape is the matrix view (Rows, Cols) of a parameter vector.
	AffineShape() (rows, cols int)
	// Pack writes θ as a row-major Rows×Cols float64 matrix into dst.
	Pack(dst []float64, theta []float32)
	// Unpack is the inverse of Pack, rounding to float32.
	Unpack(dst []float32, m []float64)
	// AffineStep returns U_k (row-major, b×Cols, as b and the slice), c_k and
	// C_k (row-major Rows×Cols). The slices may be reused by the next call.
	AffineStep(k int) (u []float64, b int, c float64, off []float64)
}
