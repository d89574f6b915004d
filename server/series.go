package server

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/internal/blocksum"
)

// Bucketed series: GET /v1/runs/{name}/series is what the web view draws.
// A chart is a few hundred pixels wide, a run up to 10⁶ steps long: the
// server cuts the requested step range into buckets of `width` consecutive
// steps and sends, per non-empty bucket and per measure, the min, the max
// and the last value. Nothing is dropped: every point lies inside its
// bucket's [min, max], and the last point of the range is the last value of
// the last bucket. With width 1 the answer is the raw series.

const (
	// DefaultSeriesBuckets is the number of buckets when neither buckets
	// nor width is given: about one per pixel of a wide chart.
	DefaultSeriesBuckets = 1000
	// MaxSeriesBuckets bounds an answer's size (and the handler's memory).
	MaxSeriesBuckets = 100_000
	// maxSeriesAnchors bounds the anchor list of one answer.
	maxSeriesAnchors = 10_000
)

// seriesMeasures are the measures of a Point, in the answer's order, which
// is blocksum.Names' (the order of the stored block summaries; checked by
// TestSeriesMeasuresOrder).
var seriesMeasures = [...]struct {
	name string
	get  func(api.Point) float64
}{
	{"loss", func(p api.Point) float64 { return p.Loss }},
	{"test_loss", func(p api.Point) float64 { return p.TestLoss }},
	{"test_acc", func(p api.Point) float64 { return p.TestAcc }},
	{"step_dist", func(p api.Point) float64 { return p.StepDist }},
	{"param_norm", func(p api.Point) float64 { return p.ParamNorm }},
}

// bucket accumulates the points of one bucket: the raw values' min, max,
// last and counts as a blocksum.Summary (the type the store's block
// summaries have, so that a bucket merges them as its own points), and
// the smoothed values' min, max and last (series_smooth.go), over the
// points whose smoothed value exists; NaN when none does.
type bucket struct {
	start int
	blocksum.Summary
	smin, smax, send [len(seriesMeasures)]float64
}

// add folds p into b. NaN means "not measured at this step" (losses are
// evaluated every eval_every steps; a regression has no accuracy): min, max
// and last skip it, so last is the bucket's last measured value, and NaN
// only when the bucket has none (blocksum.Summary.Add).
func (b *bucket) add(p api.Point, sm *[len(seriesMeasures)]float64) {
	if b.N == 0 {
		for i := range seriesMeasures {
			b.smin[i], b.smax[i], b.send[i] = math.NaN(), math.NaN(), math.NaN()
		}
	}
	var v [len(seriesMeasures)]float64
	for i, m := range seriesMeasures {
		v[i] = m.get(p)
		if sm != nil && !math.IsNaN(sm[i]) {
			u := sm[i]
			if math.IsNaN(b.smin[i]) || u < b.smin[i] {
				b.smin[i] = u
			}
			if math.IsNaN(b.smax[i]) || u > b.smax[i] {
				b.smax[i] = u
			}
			b.send[i] = u
		}
	}
	b.Summary.Add(p.Step, &v)
}

// series answers GET /v1/runs/{name}/series?kind=forward|backward
// &from=N (1) &to=N (0: the forward step so far) &buckets=N (1000) or
// &width=N (steps per bucket; wins over buckets) &smooth=none|ema:K|ma:N
// (series_smooth.go). Bucket k covers steps
// [from + k·width, from + (k+1)·width − 1]; a client that keeps `from` a
// multiple of width plus one can fetch only what is new and replace its
// last bucket. The body is one JSON object:
//
//	{"kind","from","to","width",
//	 "start":[…], "last_step":[…], "n":[…],       one entry per non-empty bucket
//	 "loss":{"min":[…],"max":[…],"last":[…],         test_loss, test_acc, step_dist, param_norm
//	         "count":[…]}, …                         (count: measured, non-NaN values)
//	 "anchors":[{"segment":s,"step":r},…]}          distinct anchors of backward points, in order
//
// With smooth, the answer also has "smooth":"ema:0.9" (as parsed) and
// every measure a "smooth":{"min":[…],"max":[…],"last":[…]}: the smoothed
// values of the bucket's points, smoothed over the whole series from
// step 1 (so such a request reads the series from step 1, whatever from).
//
// Non-finite values are null, as everywhere in the API.
func (s *server) series(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := r.PathValue("name")
	kind, err := enumParam(q.Get("kind"), "", "forward", "backward")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	from, err1 := intParam(q.Get("from"), "from", 1, 1)
	to, err2 := intParam(q.Get("to"), "to", 0, 0)
	nb, err3 := intParam(q.Get("buckets"), "buckets", DefaultSeriesBuckets, 1)
	width, err4 := intParam(q.Get("width"), "width", 0, 1)
	sp, err5 := parseSmooth(q.Get("smooth"))
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		s.fail(w, r, err)
		return
	}
	st, err := s.b.Status(name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if to == 0 || to > st.Steps {
		to = max(st.ForwardStep, 1)
	}
	if from > st.Steps && st.Steps > 0 {
		s.fail(w, r, fmt.Errorf("%w: from=%d is beyond the %d steps of run %q", errBadRequest, from, st.Steps, st.Name))
		return
	}
	if to < from {
		to = from // an empty range: no buckets
	}
	span := to - from + 1
	if width == 0 {
		width = (span + nb - 1) / nb
	}
	if (span+width-1)/width > MaxSeriesBuckets {
		s.fail(w, r, fmt.Errorf("%w: %d steps at width %d are more than %d buckets", errBadRequest, span, width, MaxSeriesBuckets))
		return
	}

	var buckets []bucket
	type anchor struct{ segment, step int }
	var anchors []anchor
	// Smoothing needs the points before from (they only feed the
	// smoother): from step 1, or for a backward series from its segment's
	// start (backwardSmoothFrom).
	readFrom := from
	var sm *smoother
	if sp.how != "" {
		readFrom, sm = 1, newSmoother(sp)
		if kind == "backward" {
			if readFrom, err = s.backwardSmoothFrom(r.Context(), st, from, to); err != nil {
				s.fail(w, r, err)
				return
			}
		}
	}
	bucketAt := func(step int) int { return from + (step-from)/width*width }
	// into returns the bucket that starts at start, appending it.
	into := func(start, step int) (*bucket, error) {
		if len(buckets) == 0 || buckets[len(buckets)-1].start != start {
			if len(buckets) > 0 && start < buckets[len(buckets)-1].start {
				return nil, fmt.Errorf("server: series: step %d after step %d (backend out of order)", step, buckets[len(buckets)-1].Last)
			}
			buckets = append(buckets, bucket{start: start})
		}
		return &buckets[len(buckets)-1], nil
	}
	// place buckets p, with its smoothed values sv (nil: no smoothing);
	// points before from only fed the smoother.
	place := func(p api.Point, sv *[len(seriesMeasures)]float64) error {
		if p.Step < from || p.Step > to {
			return nil
		}
		bk, err := into(bucketAt(p.Step), p.Step)
		if err != nil {
			return err
		}
		bk.add(p, sv)
		if kind == "backward" && len(anchors) < maxSeriesAnchors {
			if n := len(anchors); n == 0 || anchors[n-1] != (anchor{p.Segment, p.Anchor}) {
				anchors = append(anchors, anchor{p.Segment, p.Anchor})
			}
		}
		return r.Context().Err()
	}
	addPoint := func(p api.Point) error {
		// The backend already filters; checking again keeps the bucket
		// arithmetic safe whatever it sends.
		if p.Kind != kind || p.Step < readFrom || p.Step > to {
			return nil
		}
		var sv *[len(seriesMeasures)]float64
		if sm != nil {
			v := sm.next(p)
			sv = &v
		}
		return place(p, sv)
	}
	if kind == "forward" && (sp.how == "" || sp.how == "ema") {
		// From the block summaries (series_blocks.go).
		err = s.forwardSeries(r.Context(), st, sp, from, to, bucketAt, into, place)
	} else {
		err = s.b.Trajectory(r.Context(), name, kind, readFrom, to, 1, addPoint)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}

	b := make([]byte, 0, 64+len(buckets)*(3*8+len(seriesMeasures)*3*24))
	b = append(b, `{"kind":`...)
	b = strconv.AppendQuote(b, kind)
	b = append(b, `,"from":`...)
	b = strconv.AppendInt(b, int64(from), 10)
	b = append(b, `,"to":`...)
	b = strconv.AppendInt(b, int64(to), 10)
	b = append(b, `,"width":`...)
	b = strconv.AppendInt(b, int64(width), 10)
	if sp.how != "" {
		b = append(b, `,"smooth":`...)
		b = strconv.AppendQuote(b, sp.text)
	}
	ints := func(key string, get func(bucket) int) {
		b = append(b, `,"`+key+`":[`...)
		for i, bk := range buckets {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(get(bk)), 10)
		}
		b = append(b, ']')
	}
	ints("start", func(bk bucket) int { return bk.start })
	ints("last_step", func(bk bucket) int { return int(bk.Last) })
	ints("n", func(bk bucket) int { return int(bk.N) })
	for mi, m := range seriesMeasures {
		b = append(b, `,"`+m.name+`":{`...)
		for j, part := range [...]string{"min", "max", "last"} {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, `"`+part+`":[`...)
			for i := range buckets {
				if i > 0 {
					b = append(b, ',')
				}
				v := [...]*[len(seriesMeasures)]float64{&buckets[i].Min, &buckets[i].Max, &buckets[i].End}[j][mi]
				b = appendFinite(b, v)
			}
			b = append(b, ']')
		}
		// count: how many measured values the bucket holds (its last
		// value may stand for one or for thousands).
		b = append(b, `,"count":[`...)
		for i := range buckets {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(buckets[i].Count[mi]), 10)
		}
		b = append(b, ']')
		if sp.how != "" {
			b = append(b, `,"smooth":{`...)
			for j, part := range [...]string{"min", "max", "last"} {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(b, `"`+part+`":[`...)
				for i := range buckets {
					if i > 0 {
						b = append(b, ',')
					}
					v := [...]*[len(seriesMeasures)]float64{&buckets[i].smin, &buckets[i].smax, &buckets[i].send}[j][mi]
					b = appendFinite(b, v)
				}
				b = append(b, ']')
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	b = append(b, `,"anchors":[`...)
	for i, a := range anchors {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"segment":%d,"step":%d}`, a.segment, a.step)
	}
	b = append(b, "]}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// appendFinite appends v in the shortest form that parses back to it, or
// null when v is NaN or ±Inf.
func appendFinite(b []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
