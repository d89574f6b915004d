package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/internal/echo"
)

// Smoothing of GET /series (&smooth=ema:K or &smooth=ma:N). It is computed
// by the server over every raw point of the series, from step 1, and only
// then bucketed (min, max, last of the smoothed values per bucket), so
// that the smoothed curve is the same at every zoom: a chart at 1000
// buckets over 10⁶ steps shows the smoothing of the 10⁶ points, not a
// smoothing of 1000 bucket values.
//
//   - ema:K (0 ≤ K < 1) is the debiased exponential moving average of the
//     measured values: m ← K·m + (1−K)·v, w ← K·w + (1−K), value m/w (as
//     Adam debiases its moments). It is causal: the value at a step depends
//     only on the points up to it, so it does not change as the run grows.
//   - ma:N (1 ≤ N ≤ MaxSmoothWidth) is the trailing mean of the last N
//     measured values, the current one included; causal too.
//
// A measured value is a finite one: NaN (not measured at this step,
// eval_every) and ±Inf (a diverged loss) are skipped, and the smoothed
// value at such a step is absent (null in its bucket when the bucket has
// no measured value). The backward series restarts the smoothing at every
// change of segment (a reset): the curve is discontinuous there by
// construction, and a smoothing across it would blur the very jump the
// chart marks; it also keeps the smoothed values of a segment independent
// of the segments after it, and lets a request read the series from its
// segment's start only (backwardSmoothFrom) rather than from step 1.

// MaxSmoothWidth bounds the width of a moving average (its memory is
// 5 × N float64 per request).
const MaxSmoothWidth = 100_000

// smoothing is a parsed smooth parameter; how == "" is none.
type smoothing struct {
	how  string  // "", "ema" or "ma"
	k    float64 // the EMA's weight on the past
	n    int     // the moving average's width
	text string  // as given, for the answer
}

// parseSmooth parses "", "none", "ema:K" or "ma:N".
func parseSmooth(v string) (smoothing, error) {
	if v == "" || v == "none" {
		return smoothing{}, nil
	}
	how, arg, _ := strings.Cut(v, ":")
	switch how {
	case "ema":
		k, err := strconv.ParseFloat(arg, 64)
		if err != nil || !(k >= 0 && k < 1) {
			return smoothing{}, fmt.Errorf("%w: smooth=%q: the EMA weight must be a number in [0, 1), as in ema:0.9", errBadRequest, echo.Clip(v))
		}
		return smoothing{how: how, k: k, text: "ema:" + strconv.FormatFloat(k, 'g', -1, 64)}, nil
	case "ma":
		n, err := strconv.Atoi(arg)
		if err != nil || n < 1 || n > MaxSmoothWidth {
			return smoothing{}, fmt.Errorf("%w: smooth=%q: the moving average's width must be an integer in [1, %d], as in ma:20", errBadRequest, echo.Clip(v), MaxSmoothWidth)
		}
		return smoothing{how: how, n: n, text: "ma:" + strconv.Itoa(n)}, nil
	}
	return smoothing{}, fmt.Errorf("%w: smooth=%q, want none, ema:K or ma:N", errBadRequest, echo.Clip(v))
}

// smoother computes a smoothing point by point, in step order.
type smoother struct {
	sp      smoothing
	started bool
	segment int
	// EMA state per measure.
	m, w [len(seriesMeasures)]float64
	// Moving average state per measure: a ring of the last n values,
	// their running sum, and how many values were added since the sum
	// was last recomputed from the ring.
	ring  [len(seriesMeasures)][]float64
	head  [len(seriesMeasures)]int
	size  [len(seriesMeasures)]int
	sum   [len(seriesMeasures)]float64
	since [len(seriesMeasures)]int
}

func newSmoother(sp smoothing) *smoother {
	s := &smoother{sp: sp}
	if sp.how == "ma" {
		for i := range s.ring {
			s.ring[i] = make([]float64, sp.n)
		}
	}
	return s
}

func (s *smoother) restart() {
	s.m, s.w = [len(seriesMeasures)]float64{}, [len(seriesMeasures)]float64{}
	s.head, s.size = [len(seriesMeasures)]int{}, [len(seriesMeasures)]int{}
	s.sum, s.since = [len(seriesMeasures)]float64{}, [len(seriesMeasures)]int{}
}

// next folds p in and returns the smoothed value of every measure at p:
// NaN where p's value is not finite.
func (s *smoother) next(p api.Point) [len(seriesMeasures)]float64 {
	if !s.started || p.Segment != s.segment {
		s.restart()
		s.started, s.segment = true, p.Segment
	}
	var out [len(seriesMeasures)]float64
	for i, ms := range seriesMeasures {
		v := ms.get(p)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			out[i] = math.NaN()
			continue
		}
		switch s.sp.how {
		case "ema":
			k := s.sp.k
			s.m[i] = k*s.m[i] + (1-k)*v
			s.w[i] = k*s.w[i] + (1 - k)
			out[i] = s.m[i] / s.w[i]
		case "ma":
			n, r := s.sp.n, s.ring[i]
			if s.size[i] == n {
				s.sum[i] -= r[s.head[i]]
			} else {
				s.size[i]++
			}
			r[s.head[i]] = v
			s.head[i] = (s.head[i] + 1) % n
			s.sum[i] += v
			// A running sum drifts by a rounding error per update;
			// recomputing it from the ring every n updates bounds the
			// error by that of n additions, whatever the run's length.
			if s.since[i]++; s.since[i] >= n {
				s.since[i] = 0
				sum := 0.0
				for j := range s.size[i] { // oldest first
					sum += r[(s.head[i]-s.size[i]+j+n)%n]
				}
				s.sum[i] = sum
			}
			out[i] = s.sum[i] / float64(s.size[i])
		default:
			out[i] = v
		}
	}
	return out
}

// errFirstPoint stops a read after its first point.
var errFirstPoint = errors.New("server: first point read")

// backwardSmoothFrom is where a smoothed backward series must be read from
// so that its smoothed values in [from, to] are those of a read from step
// 1. The smoothing restarts at every change of segment, and a backward
// point of a run whose strategy is not sliding carries its segment's
// anchor step r (api.Point.Anchor; the segment's points are the steps
// after r, the point at r belongs to an older segment): the state at the
// first point p ≥ from depends only on the points after p.Anchor. A
// sliding run's points carry n − W instead, and its segment spans resets
// only: it is read from step 1.
func (s *server) backwardSmoothFrom(ctx context.Context, st api.RunStatus, from, to int) (int, error) {
	if st.Strategy == "sliding" {
		return 1, nil
	}
	start := from
	err := s.b.Trajectory(ctx, st.Name, "backward", from, to, 1, func(p api.Point) error {
		if p.Kind != "backward" || p.Step < from || p.Step > to {
			return nil
		}
		start = min(from, max(1, p.Anchor+1))
		return errFirstPoint
	})
	if err != nil && !errors.Is(err, errFirstPoint) {
		return 0, err
	}
	return start, nil
}
