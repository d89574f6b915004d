// Package openblas implements gonum's blas.Float32 with OpenBLAS (cgo,
// Debian libopenblas-dev) for the calls the nn package makes in its inner
// loop (Sgemm) and gonum's pure-Go code for everything else.
//
// The package is empty unless built with cgo and without the noopenblas tag.
// Importing it sets OpenBLAS to one thread: the callers parallelise across
// jobs, one goroutine per core, and OpenBLAS threads would oversubscribe.
// With one thread, concurrent calls from several goroutines are safe.
package openblas
