//go:build cgo && !noopenblas

package openblas

/*
#cgo LDFLAGS: -lopenblas

// Declared here rather than through <cblas.h>: Debian's cblas.h is an
// alternative that may point at another BLAS, and these two prototypes are
// all we need (CBLAS enums are C ints; blasint is int in Debian's build).
void cblas_sgemm(int order, int transa, int transb, int m, int n, int k,
	float alpha, const float *a, int lda, const float *b, int ldb,
	float beta, float *c, int ldc);
void openblas_set_num_threads(int num_threads);
*/
import "C"

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// CBLAS enum values.
const (
	cblasRowMajor = 101
	cblasNoTrans  = 111
	cblasTrans    = 112
)

func init() {
	C.openblas_set_num_threads(1)
}

// Implementation is gonum's pure-Go BLAS with Sgemm done by OpenBLAS.
type Implementation struct {
	gonum.Implementation
}

var _ blas.Float32 = Implementation{}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C with OpenBLAS. It checks its
// arguments as gonum does (panicking on a caller bug) before handing
// pointers to C, since OpenBLAS would read or write out of bounds instead.
func (impl Implementation) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 || k == 0 || alpha == 0 {
		// Degenerate shapes: gonum checks them and scales C by beta.
		impl.Implementation.Sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	ta, ar, ac := cblasNoTrans, m, k // stored shape of A
	if tA != blas.NoTrans {
		ta, ar, ac = cblasTrans, k, m
	}
	tb, br, bc := cblasNoTrans, k, n
	if tB != blas.NoTrans {
		tb, br, bc = cblasTrans, n, k
	}
	switch {
	case m < 0 || n < 0 || k < 0:
		panic("blas: negative dimension")
	case tA != blas.NoTrans && tA != blas.Trans && tA != blas.ConjTrans,
		tB != blas.NoTrans && tB != blas.Trans && tB != blas.ConjTrans:
		panic("blas: illegal transpose")
	case lda < max(1, ac):
		panic("blas: bad leading dimension of A")
	case ldb < max(1, bc):
		panic("blas: bad leading dimension of B")
	case ldc < max(1, n):
		panic("blas: bad leading dimension of C")
	case len(a) < (ar-1)*lda+ac:
		panic("blas: insufficient length of a")
	case len(b) < (br-1)*ldb+bc:
		panic("blas: insufficient length of b")
	case len(c) < (m-1)*ldc+n:
		panic("blas: insufficient length of c")
	}
	C.cblas_sgemm(cblasRowMajor, C.int(ta), C.int(tb), C.int(m), C.int(n), C.int(k),
		C.float(alpha), (*C.float)(&a[0]), C.int(lda), (*C.float)(&b[0]), C.int(ldb),
		C.float(beta), (*C.float)(&c[0]), C.int(ldc))
}
