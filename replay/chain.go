package replay

import "context"

// Chainer is an optional capability of Operators (checked by type
// assertion) that applies a whole chain in one call: operators whose every
// application is a round trip to another process (an external model,
// DESIGN §4) make a backward job one round trip instead of n−r.
//
// Chain replaces x by T_{steps[len−1]}∘…∘T_{steps[0]}(x), in place: steps
// are in application order (Direct passes n, n−1, …, r+1). Its result must
// be bitwise that of calling Apply for each step in turn. On error x is
// undefined; a ctx that ends makes Chain return its error (wrapped) soon.
type Chainer interface {
	Chain(ctx context.Context, x []float32, steps []int) error
}
