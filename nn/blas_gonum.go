//go:build !cgo || noopenblas

package nn

// defaultBLAS is gonum's pure-Go BLAS: cgo is disabled or the build has the
// noopenblas tag.
var defaultBLAS = pureGo{}

const backendName = "gonum"
