package nn

import (
	"math"
	"math/bits"
	"math/rand/v2"
)

// Every random quantity of this package is drawn from math/rand/v2's PCG
// (PCG-DXSM, a fixed, documented algorithm) through the transforms below,
// which are written out here rather than taken from rand.Rand so that the
// numbers do not depend on the Go version: uniform floats take the top 53
// bits, bounded integers use Lemire's multiply-and-reject, normals use
// Box–Muller.

// Streams separate the uses of one user seed, so that e.g. the data set and
// the initialisation drawn from the same seed are independent.
const (
	streamInit    = 0x1a17
	streamSampler = 0x5a3b
	streamData    = 0xda7a
	streamSubset  = 0x5b5e
)

// rng is a PCG generator with the transforms above.
type rng struct {
	src *rand.PCG
	// spare normal from Box–Muller, valid when hasSpare.
	spare    float64
	hasSpare bool
}

// newRNG returns the generator for (seed, stream, index). The PCG's second
// seed word mixes stream and index with splitmix64 so nearby indices give
// unrelated sequences.
func newRNG(seed, stream, index uint64) *rng {
	return &rng{src: rand.NewPCG(seed, splitmix64(stream<<32^index))}
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// float64 returns a uniform number in [0, 1).
func (r *rng) float64() float64 {
	return float64(r.src.Uint64()>>11) * (1.0 / (1 << 53))
}

// uniform returns a uniform number in [lo, hi).
func (r *rng) uniform(lo, hi float64) float64 {
	return lo + (hi-lo)*r.float64()
}

// intn returns a uniform integer in [0, n), n > 0 (Lemire's method).
func (r *rng) intn(n uint64) uint64 {
	hi, lo := bits.Mul64(r.src.Uint64(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(r.src.Uint64(), n)
		}
	}
	return hi
}

// normal returns a standard normal number (Box–Muller, both values used).
func (r *rng) normal() float64 {
	if r.hasSpare {
		r.hasSpare = false
		return r.spare
	}
	u1 := 1 - r.float64() // (0, 1]: log is finite
	u2 := r.float64()
	rad := math.Sqrt(-2 * math.Log(u1))
	s, c := math.Sincos(2 * math.Pi * u2)
	r.spare, r.hasSpare = rad*s, true
	return rad * c
}

// perm writes a uniformly random permutation of 0..len(p)-1 into p
// (Fisher–Yates, from the last position down).
func (r *rng) perm(p []int32) {
	for i := range p {
		p[i] = int32(i)
	}
	for i := len(p) - 1; i > 0; i-- {
		j := r.intn(uint64(i + 1))
		p[i], p[j] = p[j], p[i]
	}
}
