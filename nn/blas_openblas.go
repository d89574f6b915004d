//go:build cgo && !noopenblas

package nn

import "github.com/replay-sgd/replay/nn/internal/openblas"

// defaultBLAS is OpenBLAS when cgo is available (build tag noopenblas or
// CGO_ENABLED=0 selects the pure-Go fallback).
var defaultBLAS = openblas.Implementation{}

const backendName = "openblas"
