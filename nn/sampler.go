package nn

import (
	"fmt"
	"slices"
	"sync"
)

// Batches gives the batch (sample indices into the training split) of each
// step k ≥ 1. Implementations must return the same indices for the same k
// every time; callers must not modify the returned slice.
type Batches interface {
	Batch(k int) []int32
}

// BatchLog is a recorded sequence of batches: BatchLog[k-1] is step k.
type BatchLog [][]int32

// Batch returns the batch of step k (1 ≤ k ≤ len(l)).
func (l BatchLog) Batch(k int) []int32 { return l[k-1] }

var _ Batches = BatchLog(nil)

// Sampler draws batches as PyTorch's DataLoader(shuffle=True,
// drop_last=True) does: epoch e (0, 1, …) visits a random permutation of
// 0..n−1 in consecutive batches, and the n mod batch samples left over at
// the end of a permutation are skipped. The permutation of epoch e is a pure
// function of (seed, e), so the batch of any step can be recomputed without
// replaying earlier ones.
//
// A Sampler caches the permutation of the last epoch it used (guarded by a
// mutex, so it is safe for concurrent use); the cache never changes results.
type Sampler struct {
	n, batch, perEpoch int
	seed               uint64

	mu struct {
		sync.Mutex
		epoch int
		perm  []int32
	}
}

// NewSampler returns a sampler of batches of size batch from n samples. It
// panics unless 1 ≤ batch ≤ n (validate user input before).
func NewSampler(n, batch int, seed uint64) *Sampler {
	if batch < 1 || batch > n {
		panic(fmt.Sprintf("nn: NewSampler: batch %d not in [1, n=%d]", batch, n))
	}
	s := &Sampler{n: n, batch: batch, perEpoch: n / batch, seed: seed}
	s.mu.epoch = -1
	return s
}

// BatchSize returns the number of indices per batch.
func (s *Sampler) BatchSize() int { return s.batch }

// StepsPerEpoch returns n / batch (rounded down).
func (s *Sampler) StepsPerEpoch() int { return s.perEpoch }

// Batch writes the batch of step ≥ 1 into dst[:BatchSize()].
func (s *Sampler) Batch(step int, dst []int32) {
	if step < 1 {
		panic(fmt.Sprintf("nn: Sampler.Batch: step %d < 1", step))
	}
	e, j := (step-1)/s.perEpoch, (step-1)%s.perEpoch
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.epoch != e {
		if s.mu.perm == nil {
			s.mu.perm = make([]int32, s.n)
		}
		newRNG(s.seed, streamSampler, uint64(e)).perm(s.mu.perm)
		s.mu.epoch = e
	}
	copy(dst[:s.batch], s.mu.perm[j*s.batch:(j+1)*s.batch])
}

// FixedSubset returns size distinct indices of 0..n−1, sorted, chosen at
// random from seed: the evaluation subset of a run. size ≤ 0 or ≥ n gives
// all of 0..n−1.
func FixedSubset(n, size int, seed uint64) []int32 {
	p := make([]int32, n)
	if size <= 0 || size >= n {
		for i := range p {
			p[i] = int32(i)
		}
		return p
	}
	newRNG(seed, streamSubset, 0).perm(p)
	p = p[:size]
	slices.Sort(p)
	return p
}
