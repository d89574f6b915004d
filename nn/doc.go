// Package nn provides the models, losses, data sets, batch sampler and SGD
// operators that replay composes.
//
// # Parameters
//
// A model's parameters are one flat []float32 (the unit that is checkpointed
// and replayed). For each affine layer l = 0, 1, … the vector holds its
// weight [out, in] row-major, then its bias [out]: exactly the order and
// shapes of the state_dict of torch.nn.Sequential(Linear, ReLU, …, Linear),
// named "0.weight", "0.bias", "2.weight", … (Model.Tensors gives names,
// shapes and offsets). The scalar model has one parameter, "theta" [1].
//
// # Data sets
//
// A Dataset stores its inputs either as float32 (X: the synthetic data
// sets) or as bytes (Pixels: Fashion-MNIST, a quarter of the memory), never
// both; everything in this package reads them through Dataset.Input, which
// turns byte v into float32(v)/255 through one 256-entry table. The two
// storages of the same images therefore give bitwise identical inputs,
// steps and evaluations.
//
// # Operators
//
// SGD.Apply(k, θ) replaces θ by T_k(θ) = θ − η∇L_{b_k}(θ) in place, where
// L_b is the batch mean of the loss (PyTorch's CrossEntropyLoss, MSELoss, or
// the quadratic a(θ−y)²/2) and the gradient is exact (backpropagation).
// The step allocates nothing once its scratch space has grown to the batch
// size, and writes the update straight into θ: each layer's weight update is
// one rank-b GEMM with beta = 1, made after the previous layer's delta has
// been computed from the old weight, so no gradient vector is materialised.
//
// Optim.Apply(k, s) is one torch.optim step (SGD with weight decay,
// momentum, Nesterov, Adam, AdamW) on the flat state s = (θ, buffers, t):
// θ, then the optimizer's θ-sized buffers element by element as θ, then the
// step count t as a float32 integer (OptimConfig.StateTensors names them).
// It is a pure function of (k, s): the bias correction and the momentum
// buffer's first step come from t. It materialises the gradient (SGD.Gradient)
// and updates elementwise in float32; plain SGD without weight decay is
// SGD's step itself, bitwise.
//
// # Mutation and aliasing
//
// Models and Datasets are immutable after construction and may be shared by
// any number of goroutines; so may Batches implementations (BatchLog is a
// plain slice; Sampler locks its cache). Only the θ passed to Apply, Step and
// StepLoss is modified (and dst of Gradient, Init, Unpack, Sampler.Batch).
// Gradient's dst must not alias θ. Slices returned by AffineStep are
// scratch, valid until the next call.
//
// # Concurrency
//
// SGD and Evaluator own scratch space and are not safe for concurrent use:
// give each goroutine its own (SGD.Clone, or another NewEvaluator). A
// goroutine that applies operators back to back (a worker) holds a
// ReserveProc for its lifetime: with OpenBLAS it spends nearly all its time
// in C calls, and unless a P stays idle beside it, the Go runtime takes
// its P away on nearly every GEMM (two such goroutines on two cores scaled
// 1.2–1.3× instead of 1.8×). The reservation changes only GOMAXPROCS,
// never a result.
//
// # Determinism and BLAS
//
// Everything random (initialisation, synthetic data, sampler permutations,
// evaluation subsets) is a pure function of a uint64 seed through
// math/rand/v2's PCG and transforms written out in this package, so results
// do not depend on the Go version. The GEMMs go through gonum's
// blas.Float32 interface: OpenBLAS (cgo, one thread) when cgo is enabled,
// gonum's pure-Go BLAS with CGO_ENABLED=0 or -tags noopenblas (see
// BLASBackend), its Sgemm kept on the calling goroutine. Either way one
// operator uses one core; callers parallelise across operators. A run
// repeated with the same backend is bitwise identical; the two backends
// agree to float32 rounding.
package nn
