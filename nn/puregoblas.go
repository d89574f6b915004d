package nn

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// pureGo is gonum's pure-Go BLAS with Sgemm kept on the calling goroutine.
//
// gonum's Sgemm splits a product with four or more 64×64 blocks of C across
// GOMAXPROCS goroutines, allocating its channels and goroutines on every
// call. The operators here run one per core (the caller parallelises across
// jobs, as with the one-thread OpenBLAS), so pureGo hands gonum panels of
// C small enough (64×192: three blocks) that it computes them serially: no
// allocation, no goroutines, and the same per-element summation order.
type pureGo struct {
	gonum.Implementation
}

// Panel sizes: gonum's blockSize is 64 and it goes parallel from 4 blocks.
const (
	panelRows = 64
	panelCols = 3 * 64
)

var _ blas.Float32 = pureGo{}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C panel by panel.
func (impl pureGo) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m <= panelRows && n <= panelCols || m < 0 || n < 0 || k <= 0 {
		impl.Implementation.Sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	aTrans, bTrans := tA != blas.NoTrans, tB != blas.NoTrans
	for i0 := 0; i0 < m; i0 += panelRows {
		mi := min(panelRows, m-i0)
		var ai []float32
		if aTrans {
			ai = a[i0:] // columns i0… of A stored k×m
		} else {
			ai = a[i0*lda:] // rows i0… of A (m×k)
		}
		for j0 := 0; j0 < n; j0 += panelCols {
			nj := min(panelCols, n-j0)
			var bj []float32
			if bTrans {
				bj = b[j0*ldb:] // rows j0… of B stored n×k
			} else {
				bj = b[j0:] // columns j0… of B (k×n)
			}
			impl.Implementation.Sgemm(tA, tB, mi, nj, k, alpha, ai, lda, bj, ldb, beta, c[i0*ldc+j0:], ldc)
		}
	}
}
