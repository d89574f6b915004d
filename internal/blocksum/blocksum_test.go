package blocksum

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/replay-sgd/replay/internal/testseed"
)

func same(a, b Summary) bool {
	eq := func(x, y [M]float64) bool {
		for i := range x {
			if math.Float64bits(x[i]) != math.Float64bits(y[i]) && !(math.IsNaN(x[i]) && math.IsNaN(y[i])) {
				return false
			}
		}
		return true
	}
	return a.Last == b.Last && a.N == b.N && a.Count == b.Count && eq(a.Min, b.Min) && eq(a.Max, b.Max) && eq(a.End, b.End)
}

// TestMergeIsAdd: merging the summaries of consecutive runs of points
// (empty ones, ones with nothing measured) gives the summary of all of
// them, and the summary is the brute-force min, max, last measured value
// and count of every measure.
func TestMergeIsAdd(t *testing.T) {
	rng := rand.New(rand.NewPCG(testseed.Seed(t), 7))
	for range 200 {
		n := rng.IntN(300)
		var all, merged, part Summary
		var pts [][M]float64
		for k := 1; k <= n; k++ {
			var v [M]float64
			for i := range v {
				switch rng.IntN(5) {
				case 0:
					v[i] = math.NaN()
				case 1:
					v[i] = math.Inf(1 - 2*rng.IntN(2))
				default:
					v[i] = rng.NormFloat64()
				}
			}
			if k < 20 {
				v[2] = math.NaN() // a measure with nothing measured for a while
			}
			pts = append(pts, v)
			all.Add(k, &v)
			part.Add(k, &v)
			if rng.IntN(10) == 0 {
				merged.Merge(&part)
				part = Summary{}
				merged.Merge(&Summary{}) // an empty block
			}
		}
		merged.Merge(&part)
		if !same(all, merged) {
			t.Fatalf("%d points: merged %+v, added %+v", n, merged, all)
		}
		for i := range M {
			lo, hi, end, c := math.NaN(), math.NaN(), math.NaN(), int32(0)
			for j, v := range pts {
				if x := v[i]; !math.IsNaN(x) {
					c++
					if math.IsNaN(lo) || x < lo {
						lo = x
					}
					if math.IsNaN(hi) || x > hi {
						hi = x
					}
					end = x
				} else if j == 0 {
					end = x
				}
			}
			if n > 0 && (all.Count[i] != c || !same(Summary{Min: [M]float64{lo}, Max: [M]float64{hi}, End: [M]float64{end}},
				Summary{Min: [M]float64{all.Min[i]}, Max: [M]float64{all.Max[i]}, End: [M]float64{all.End[i]}})) {
				t.Fatalf("measure %d of %d points: %v %v %v %d, want %v %v %v %d", i, n, all.Min[i], all.Max[i], all.End[i], all.Count[i], lo, hi, end, c)
			}
		}
	}
}
