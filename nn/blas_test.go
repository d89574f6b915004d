package nn

import (
	"fmt"
	"math"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// TestSgemmImplementations compares the pure-Go panelled Sgemm and the
// default backend's with gonum's reference for every transpose, shapes that
// cross the panel edges and padded leading dimensions.
func TestSgemmImplementations(t *testing.T) {
	const seed = 61
	r := newRNG(seed, 7, 0)
	rand := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(r.uniform(-1, 1))
		}
		return s
	}
	impls := map[string]blas.Float32{"pure-go": pureGo{}, BLASBackend(): defaultBLAS}
	for _, sz := range [][3]int{{8, 500, 784}, {500, 784, 8}, {130, 400, 7}, {3, 5, 2}, {65, 193, 64}} {
		m, n, k := sz[0], sz[1], sz[2]
		for _, tA := range []blas.Transpose{blas.NoTrans, blas.Trans} {
			for _, tB := range []blas.Transpose{blas.NoTrans, blas.Trans} {
				ar, ac := m, k
				if tA == blas.Trans {
					ar, ac = k, m
				}
				br, bc := k, n
				if tB == blas.Trans {
					br, bc = n, k
				}
				lda, ldb, ldc := ac+3, bc+1, n+2 // padded rows
				a, b, c0 := rand(ar*lda), rand(br*ldb), rand(m*ldc)
				beta := float32(len(a) % 2) // 0 or 1, both used by the engine
				want := append([]float32(nil), c0...)
				gonum.Implementation{}.Sgemm(tA, tB, m, n, k, 0.7, a, lda, b, ldb, beta, want, ldc)
				for name, impl := range impls {
					t.Run(fmt.Sprintf("%s/%dx%dx%d/%c%c/beta%g", name, m, n, k, tA, tB, beta), func(t *testing.T) {
						got := append([]float32(nil), c0...)
						impl.Sgemm(tA, tB, m, n, k, 0.7, a, lda, b, ldb, beta, got, ldc)
						for i := range got {
							// Padding must be untouched; the k-term sums of
							// terms ≤ 1 differ in order only: k·ε32 at most.
							tol := float64(k) * 0x1p-23 * 2
							if i%ldc >= n {
								tol = 0
							}
							if d := math.Abs(float64(got[i] - want[i])); d > tol {
								t.Fatalf("C[%d] = %g, gonum %g", i, got[i], want[i])
							}
						}
					})
				}
			}
		}
	}
}

// TestSgemmChecksArguments checks that a short slice panics before any C
// code could read or write past it.
func TestSgemmChecksArguments(t *testing.T) {
	for name, impl := range map[string]blas.Float32{"pure-go": pureGo{}, BLASBackend(): defaultBLAS} {
		for what, call := range map[string]func(){
			"short c": func() {
				impl.Sgemm(blas.NoTrans, blas.NoTrans, 4, 4, 4, 1, make([]float32, 16), 4, make([]float32, 16), 4, 0, make([]float32, 15), 4)
			},
			"short a": func() {
				impl.Sgemm(blas.Trans, blas.NoTrans, 4, 4, 4, 1, make([]float32, 15), 4, make([]float32, 16), 4, 0, make([]float32, 16), 4)
			},
			"bad ldb": func() {
				impl.Sgemm(blas.NoTrans, blas.Trans, 4, 4, 4, 1, make([]float32, 16), 4, make([]float32, 16), 3, 0, make([]float32, 16), 4)
			},
		} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s: %s did not panic", name, what)
					}
				}()
				call()
			}()
		}
	}
}
