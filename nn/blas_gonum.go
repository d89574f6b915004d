//go:build !cgo || noopenblas

package nn

import "gonum.org/v1/gonum/blas/gonum"

// defaultBLAS is gonum's pure-Go BLAS: cgo is disabled or the build has the
// noopenblas tag.
var defaultBLAS = gonum.Implementation{}

const backendName = "gonum"
