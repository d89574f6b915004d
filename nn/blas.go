package nn

// BLASBackend reports which BLAS the package uses: "openblas" (cgo build,
// one OpenBLAS thread) or "gonum" (pure Go: CGO_ENABLED=0 or -tags
// noopenblas). Both give the same results to float32 rounding, not bitwise.
func BLASBackend() string { return backendName }
