// Package blocksum is the summary of a block of forward points that the
// store writes (ckpt) and the web view's series buckets merge (server):
// one type and one summarising function, so that a summary read from the
// store is the same bits as one the server builds from the points.
//
// Invariants: block i (from 0) covers steps [1+i·Steps, (i+1)·Steps]; a
// summary is exactly what Add gives for the block's measured points in
// step order: min and max of the non-NaN values, the last non-NaN value
// (or the first value when none is measured), the number of points and of
// non-NaN values. Merge(a, b) of consecutive blocks equals Add of their
// points (min and max are exact, counts add, last is the later block's
// when it measured anything).
package blocksum

import "math"

// Steps is the number of steps per block.
const Steps = 64

// Names are the measures in a summary's order (the series answer's).
var Names = [...]string{"loss", "test_loss", "test_acc", "step_dist", "param_norm"}

// M is the number of measures.
const M = len(Names)

// Summary accumulates points: the bucket of a series answer, or the
// summary of one block. The zero value is an empty summary.
type Summary struct {
	Last, N       int32 // the last point's step; the points added
	Min, Max, End [M]float64
	Count         [M]int32 // measured (non-NaN) values
}

// Add folds the point of step with values v (in Names' order) into s. NaN
// means "not measured at this step": min, max and end skip it, so End is
// the last measured value, and NaN only when there is none.
func (s *Summary) Add(step int, v *[M]float64) {
	for i, x := range v {
		if s.N == 0 {
			s.Min[i], s.Max[i] = math.NaN(), math.NaN()
		}
		if !math.IsNaN(x) {
			s.Count[i]++
			if math.IsNaN(s.Min[i]) || x < s.Min[i] {
				s.Min[i] = x
			}
			if math.IsNaN(s.Max[i]) || x > s.Max[i] {
				s.Max[i] = x
			}
		}
		if !math.IsNaN(x) || s.N == 0 {
			s.End[i] = x
		}
	}
	s.Last = int32(step)
	s.N++
}

// Merge folds o, the summary of points after s's, into s, as Add would
// fold o's points.
func (s *Summary) Merge(o *Summary) {
	if o.N == 0 {
		return
	}
	if s.N == 0 {
		*s = *o
		return
	}
	for i := range M {
		if !math.IsNaN(o.Min[i]) && (math.IsNaN(s.Min[i]) || o.Min[i] < s.Min[i]) {
			s.Min[i] = o.Min[i]
		}
		if !math.IsNaN(o.Max[i]) && (math.IsNaN(s.Max[i]) || o.Max[i] > s.Max[i]) {
			s.Max[i] = o.Max[i]
		}
		if o.Count[i] > 0 {
			s.End[i] = o.End[i]
		}
		s.Count[i] += o.Count[i]
	}
	s.Last = o.Last
	s.N += o.N
}
