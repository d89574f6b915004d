package server

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
)

var seriesSeed = flag.Uint64("seriesseed", 0, "seed of TestSeriesBucketsExact (0: from the clock)")

// seriesAnswer is the body of GET /series; values are *float64 so that
// null (a non-finite value) is told apart from 0.
type seriesAnswer struct {
	Kind     string                        `json:"kind"`
	From     int                           `json:"from"`
	To       int                           `json:"to"`
	Width    int                           `json:"width"`
	Start    []int                         `json:"start"`
	LastStep []int                         `json:"last_step"`
	N        []int                         `json:"n"`
	Measures map[string]seriesMeasure      `json:"-"`
	Anchors  []struct{ Segment, Step int } `json:"anchors"`
}

type seriesMeasure struct {
	Min, Max, Last []*float64
	Count          []int
}

func decodeSeries(t *testing.T, body []byte) seriesAnswer {
	t.Helper()
	var a seriesAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("series: %v in %.200s", err, body)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	a.Measures = map[string]seriesMeasure{}
	for _, m := range seriesMeasures {
		var v seriesMeasure
		if err := json.Unmarshal(raw[m.name], &v); err != nil {
			t.Fatalf("series: measure %s: %v", m.name, err)
		}
		a.Measures[m.name] = v
	}
	return a
}

// fmtVal prints a value of the answer as the raw series would: nil is NaN.
func fmtVal(p *float64) string {
	if p == nil {
		return "NaN"
	}
	return fmt.Sprint(*p)
}

// TestSeriesBucketsExact checks every bucket of random queries over a
// random series (gaps, NaN, ±Inf) against a brute-force min/max/last of the
// raw points, compared as shortest round-trip text (equal text is equal
// bits).
func TestSeriesBucketsExact(t *testing.T) {
	seed := *seriesSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seriesseed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	h := newHarness(t, Options{})
	h.json("POST", "/v1/runs", `{"name":"a","steps":3000}`)
	var raw []api.Point
	for step := 1; step <= 3000; step++ {
		if rng.IntN(10) == 0 {
			continue // a hole: a backward step not done yet
		}
		p := api.Point{Kind: "backward", Step: step, Loss: rng.NormFloat64(), TestLoss: rng.ExpFloat64(),
			TestAcc: rng.Float64(), StepDist: math.Exp(-rng.Float64() * 30), ParamNorm: 1 + rng.Float64(),
			Segment: 1 + step/700, Anchor: (1 + step/700) * 700}
		switch rng.IntN(50) {
		case 0:
			p.Loss = math.NaN()
		case 1:
			p.TestAcc = math.Inf(1)
		}
		raw = append(raw, p)
	}
	// The last point is an extreme one, so that a bucketing that drops it
	// shows in min, max and last.
	raw[len(raw)-1].Loss = 1e9
	h.fake.points = raw

	for q := range 40 {
		from := 1 + rng.IntN(3000)
		to := from + rng.IntN(3001-from)
		width := 1 + rng.IntN(200)
		if q == 0 {
			from, to, width = 1, 3000, 1 // the raw series itself
		}
		a := h.do("GET", fmt.Sprintf("/v1/runs/a/series?kind=backward&from=%d&to=%d&width=%d", from, to, width), nil)
		if a.code != 200 {
			t.Fatalf("from=%d to=%d width=%d: %d %s", from, to, width, a.code, a.body)
		}
		got := decodeSeries(t, a.body)
		if got.From != from || got.To != to || got.Width != width {
			t.Fatalf("answer range %d..%d width %d, want %d..%d width %d", got.From, got.To, got.Width, from, to, width)
		}
		checkSeries(t, raw, from, to, width, got)
	}

	// The whole run in the default number of buckets: the last point
	// (step 3000, loss 1e9) is the last value of the last bucket.
	got := decodeSeries(t, h.do("GET", "/v1/runs/a/series?kind=backward&to=3000&buckets=7", nil).body)
	if got.Width != 429 || len(got.Start) != 7 { // ⌈3000/7⌉
		t.Fatalf("buckets=7 over 3000 steps: width %d, %d buckets", got.Width, len(got.Start))
	}
	n := len(got.Start) - 1
	if got.LastStep[n] != raw[len(raw)-1].Step || fmtVal(got.Measures["loss"].Last[n]) != "1e+09" || fmtVal(got.Measures["loss"].Max[n]) != "1e+09" {
		t.Fatalf("last bucket: last step %d, loss last %s max %s; want step %d, 1e+09", got.LastStep[n],
			fmtVal(got.Measures["loss"].Last[n]), fmtVal(got.Measures["loss"].Max[n]), raw[len(raw)-1].Step)
	}
}

// checkSeries compares an answer with a brute-force min/max/last per bucket
// of the raw points of [from, to], compared as shortest round-trip text
// (equal text is equal bits), and its anchors with the points'.
func checkSeries(t *testing.T, raw []api.Point, from, to, width int, got seriesAnswer) {
	t.Helper()
	// Brute force: group the raw points of [from, to] by bucket.
	type exp struct {
		start, last, n int
		pts            []api.Point
	}
	var want []exp
	for _, p := range raw {
		if p.Step < from || p.Step > to {
			continue
		}
		start := from + (p.Step-from)/width*width
		if len(want) == 0 || want[len(want)-1].start != start {
			want = append(want, exp{start: start})
		}
		e := &want[len(want)-1]
		e.last, e.n, e.pts = p.Step, e.n+1, append(e.pts, p)
	}
	if len(got.Start) != len(want) {
		t.Fatalf("from=%d to=%d width=%d: %d buckets, want %d", from, to, width, len(got.Start), len(want))
	}
	for i, e := range want {
		if got.Start[i] != e.start || got.LastStep[i] != e.last || got.N[i] != e.n {
			t.Fatalf("bucket %d: start %d last %d n %d, want %d %d %d", i, got.Start[i], got.LastStep[i], got.N[i], e.start, e.last, e.n)
		}
		for _, m := range seriesMeasures {
			lo, hi := math.NaN(), math.NaN()
			for _, p := range e.pts {
				v := m.get(p)
				if math.IsNaN(v) {
					continue
				}
				if math.IsNaN(lo) || v < lo {
					lo = v
				}
				if math.IsNaN(hi) || v > hi {
					hi = v
				}
			}
			last, count := math.NaN(), 0 // the last measured value, how many
			for _, p := range e.pts {
				if v := m.get(p); !math.IsNaN(v) {
					last, count = v, count+1
				}
			}
			// JSON has no ±Inf: the wire says null (NaN) for them.
			fin := func(v float64) string {
				if math.IsInf(v, 0) {
					return "NaN"
				}
				return fmt.Sprint(v)
			}
			g := got.Measures[m.name]
			if g.Count[i] != count {
				t.Fatalf("from=%d to=%d width=%d bucket %d %s: count %d, want %d", from, to, width, i, m.name, g.Count[i], count)
			}
			if fmtVal(g.Min[i]) != fin(lo) || fmtVal(g.Max[i]) != fin(hi) || fmtVal(g.Last[i]) != fin(last) {
				t.Fatalf("from=%d to=%d width=%d bucket %d %s: min/max/last %s %s %s, want %s %s %s",
					from, to, width, i, m.name, fmtVal(g.Min[i]), fmtVal(g.Max[i]), fmtVal(g.Last[i]), fin(lo), fin(hi), fin(last))
			}
		}
	}
	// Anchors: the distinct (segment, anchor) of the range's points.
	var wantA []string
	for _, e := range want {
		for _, p := range e.pts {
			if p.Kind != "backward" {
				continue // forward answers have no anchors
			}
			s := fmt.Sprintf("%d/%d", p.Segment, p.Anchor)
			if len(wantA) == 0 || wantA[len(wantA)-1] != s {
				wantA = append(wantA, s)
			}
		}
	}
	var gotA []string
	for _, x := range got.Anchors {
		gotA = append(gotA, fmt.Sprintf("%d/%d", x.Segment, x.Step))
	}
	if strings.Join(gotA, " ") != strings.Join(wantA, " ") {
		t.Fatalf("anchors %v, want %v", gotA, wantA)
	}
}

func TestSeriesForwardToDefaultsToForwardStep(t *testing.T) {
	h := newHarness(t, Options{})
	h.json("POST", "/v1/runs", `{"name":"a","steps":100}`)
	h.fake.mu.Lock()
	st := h.fake.runs["a"]
	st.ForwardStep = 40
	h.fake.runs["a"] = st
	h.fake.mu.Unlock()
	for i := 1; i <= 100; i++ {
		h.fake.points = append(h.fake.points, api.Point{Kind: "forward", Step: i, Loss: float64(i)})
	}
	got := decodeSeries(t, h.do("GET", "/v1/runs/a/series?kind=forward&buckets=4", nil).body)
	if got.To != 40 || got.Width != 10 || len(got.Start) != 4 || got.LastStep[3] != 40 {
		t.Fatalf("to=0: answer to %d width %d buckets %v last %v; want to 40, width 10, 4 buckets ending at 40", got.To, got.Width, got.Start, got.LastStep)
	}
}

func TestSeriesBadRequests(t *testing.T) {
	h := newHarness(t, Options{})
	h.json("POST", "/v1/runs", `{"name":"a","steps":100}`)
	for _, c := range []struct {
		q    string
		code int
		want string
	}{
		{"", 400, "kind is required"},
		{"kind=both", 400, `kind=\"both\"`},
		{"kind=forward&width=0", 400, "width=0"},
		{"kind=forward&from=0", 400, "from=0"},
		{"kind=forward&from=101", 400, "beyond the 100 steps"},
		{"kind=forward&to=100&width=x", 400, "not an integer"},
	} {
		a := h.do("GET", "/v1/runs/a/series?"+c.q, nil)
		if a.code != c.code || !strings.Contains(string(a.body), c.want) || strings.Count(string(a.body), "\n") != 1 {
			t.Errorf("?%s: %d %s, want %d with %q on one line", c.q, a.code, a.body, c.code, c.want)
		}
	}
	h.json("POST", "/v1/runs", `{"name":"big","steps":1000000}`)
	if a := h.do("GET", "/v1/runs/big/series?kind=forward&to=1000000&width=1", nil); a.code != 400 || !strings.Contains(string(a.body), "more than 100000 buckets") {
		t.Errorf("10⁶ buckets: %d %s, want 400", a.code, a.body)
	}
	if a := h.do("GET", "/v1/runs/nope/series?kind=forward", nil); a.code != 404 {
		t.Errorf("unknown run: %d %s, want 404", a.code, a.body)
	}
}

// TestPageServedWithoutToken: the page needs no token (it holds no data),
// the API behind it still does.
func TestPageServedWithoutToken(t *testing.T) {
	h := newHarness(t, Options{Token: "s3cret"})
	for _, p := range []string{"/ui/", "/ui/app.js", "/ui/style.css"} {
		a := h.do("GET", p, nil)
		if a.code != 200 || len(a.body) == 0 || a.header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s: %d, %d bytes, CSP %q", p, a.code, len(a.body), a.header.Get("Content-Security-Policy"))
		}
	}
	if a := h.do("GET", "/ui/", nil); !strings.Contains(string(a.body), `<script src="app.js">`) {
		t.Errorf("GET /ui/ is not the page: %.200s", a.body)
	}
	if a := h.do("GET", "/v1/runs/a/series?kind=forward", nil); a.code != 401 {
		t.Errorf("series without the token: %d, want 401", a.code)
	}
	if a := h.do("POST", "/ui/", nil); a.code == 200 {
		t.Errorf("POST /ui/: 200, want an error")
	}
}

// smoothRef is an independent smoothing of the raw points of one kind, by
// the definitions in series_smooth.go rather than their recurrences: the
// debiased EMA as Σ (1−k) k^(c−j) v_j / Σ (1−k) k^(c−j) over the measured
// values of the point's segment, the moving average as the mean of the
// last n of them. NaN where the point's value is not finite.
func smoothRef(raw []api.Point, how string, k float64, n int) [][len(seriesMeasures)]float64 {
	out := make([][len(seriesMeasures)]float64, len(raw))
	for mi, m := range seriesMeasures {
		var vals []float64 // the finite values of the current segment
		seg := -1
		for i, p := range raw {
			if p.Segment != seg {
				vals, seg = nil, p.Segment
			}
			v := m.get(p)
			if math.IsNaN(v) || math.IsInf(v, 0) {
				out[i][mi] = math.NaN()
				continue
			}
			vals = append(vals, v)
			c := len(vals) - 1
			switch how {
			case "ema":
				// Newest first, until the weights are negligible (< 1e-25
				// of the newest: far below the tolerance of checkSmoothed).
				num, den := 0.0, 0.0
				for j, pw := c, 1.0; j >= 0 && pw > 1e-25; j, pw = j-1, pw*k {
					wt := (1 - k) * pw
					num += wt * vals[j]
					den += wt
				}
				out[i][mi] = num / den
			case "ma":
				sum := 0.0
				win := vals[max(0, len(vals)-n):]
				for _, x := range win {
					sum += x
				}
				out[i][mi] = sum / float64(len(win))
			}
		}
	}
	return out
}

// TestSeriesSmoothing checks the smoothed min/max/last of random queries
// (any range, any width) against smoothRef over the whole raw series
// (holes, NaN, ±Inf, segments), so that the smoothing is the same at every
// zoom; then that the smoothed value of a step does not change when the
// series grows.
func TestSeriesSmoothing(t *testing.T) {
	seed := *seriesSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seriesseed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	h := newHarness(t, Options{})
	h.json("POST", "/v1/runs", `{"name":"a","steps":2000}`)
	var raw []api.Point
	for step := 1; step <= 2000; step++ {
		if rng.IntN(10) == 0 {
			continue
		}
		p := api.Point{Kind: "backward", Step: step, Loss: 5 + rng.NormFloat64(), TestLoss: math.NaN(),
			TestAcc: rng.Float64(), StepDist: math.Exp(-rng.Float64() * 30), ParamNorm: 1e6 + rng.Float64(),
			Segment: 1 + (step-1)/500, Anchor: (step - 1) / 500 * 500} // as the scheduler's: segment k's points are the steps after its anchor
		if step%7 == 0 {
			p.TestLoss = rng.ExpFloat64() // measured every few steps
		}
		switch rng.IntN(40) {
		case 0:
			p.Loss = math.NaN()
		case 1:
			p.Loss = math.Inf(1)
		}
		raw = append(raw, p)
	}
	// A forward point in the answer's way: it must neither be bucketed
	// nor feed the smoothing of the backward series.
	raw = append(raw[:5:5], append([]api.Point{{Kind: "forward", Step: raw[4].Step, Loss: 1e300}}, raw[5:]...)...)
	h.fake.points = raw
	var bwd []api.Point
	for _, p := range raw {
		if p.Kind == "backward" {
			bwd = append(bwd, p)
		}
	}
	for _, sp := range []struct {
		q   string
		how string
		k   float64
		n   int
	}{{"ema:0.9", "ema", 0.9, 0}, {"ema:0", "ema", 0, 0}, {"ema:0.999", "ema", 0.999, 0}, {"ma:1", "ma", 0, 1}, {"ma:7", "ma", 0, 7}, {"ma:300", "ma", 0, 300}} {
		ref := smoothRef(bwd, sp.how, sp.k, sp.n)
		for q := range 12 {
			from := 1 + rng.IntN(2000)
			to := from + rng.IntN(2001-from)
			width := 1 + rng.IntN(300)
			if q == 0 {
				from, to, width = 1, 2000, 1
			}
			a := h.do("GET", fmt.Sprintf("/v1/runs/a/series?kind=backward&from=%d&to=%d&width=%d&smooth=%s", from, to, width, sp.q), nil)
			if a.code != 200 {
				t.Fatalf("%s from=%d to=%d width=%d: %d %s", sp.q, from, to, width, a.code, a.body)
			}
			var top struct{ Smooth string }
			json.Unmarshal(a.body, &top)
			if top.Smooth != sp.q {
				t.Fatalf("answer smooth %q, want %q", top.Smooth, sp.q)
			}
			checkSmoothed(t, bwd, ref, a.body, from, to, width, sp.q)
		}
	}

	// Causal: the series up to step 1200, then the whole one; the smoothed
	// values of the steps up to 1200 are the same bits.
	perStep := func(n int, q string) map[int]string {
		h.fake.mu.Lock()
		h.fake.points = nil
		for _, p := range raw {
			if p.Step <= n {
				h.fake.points = append(h.fake.points, p)
			}
		}
		h.fake.mu.Unlock()
		a := h.do("GET", fmt.Sprintf("/v1/runs/a/series?kind=backward&from=1000&to=2000&width=1&smooth=%s", q), nil)
		var raw map[string]json.RawMessage
		json.Unmarshal(a.body, &raw)
		got := decodeSeries(t, a.body)
		var meas struct {
			Smooth struct{ Last []*float64 }
		}
		json.Unmarshal(raw["loss"], &meas)
		out := map[int]string{}
		for i, st := range got.Start {
			out[st] = fmtVal(meas.Smooth.Last[i])
		}
		return out
	}
	for _, q := range []string{"ema:0.95", "ma:40"} {
		short, long := perStep(1200, q), perStep(2000, q)
		if len(short) < 100 || len(long) <= len(short) {
			t.Fatalf("%s: %d and %d steps answered", q, len(short), len(long))
		}
		for st, v := range short {
			if long[st] != v {
				t.Fatalf("%s: smoothed loss at step %d is %s with the series to 1200, %s with the series to 2000", q, st, v, long[st])
			}
		}
	}

	// What is read: a window run's smoothed backward series from the start
	// of the segment of the range's first point (1501 for from=1700), a
	// sliding run's from step 1 (its points carry n − W, not the segment's
	// start; the values stay the reference's, a reset included).
	h.fake.mu.Lock()
	h.fake.points = raw
	h.fake.mu.Unlock()
	h.do("GET", "/v1/runs/a/series?kind=backward&from=1700&to=2000&width=10&smooth=ema:0.9", nil)
	if lt := h.fake.lastTraj; lt.from != 1501 || lt.to != 2000 {
		t.Errorf("window run, from=1700: read %d..%d, want 1501..2000", lt.from, lt.to)
	}
	h.fake.mu.Lock()
	st := h.fake.runs["a"]
	st.Strategy = "sliding"
	h.fake.runs["a"] = st
	var sl []api.Point
	for _, p := range bwd {
		p.Anchor, p.Segment = max(0, p.Step-64), 1
		if p.Step > 1300 {
			p.Segment = 2 // a reset
		}
		sl = append(sl, p)
	}
	h.fake.points = sl
	h.fake.mu.Unlock()
	ref := smoothRef(sl, "ema", 0.9, 0)
	for _, from := range []int{1, 700, 1350} {
		a := h.do("GET", fmt.Sprintf("/v1/runs/a/series?kind=backward&from=%d&to=2000&width=7&smooth=ema:0.9", from), nil)
		if lt := h.fake.lastTraj; lt.from != 1 {
			t.Errorf("sliding run, from=%d: read from %d, want 1", from, lt.from)
		}
		checkSmoothed(t, sl, ref, a.body, from, 2000, 7, "sliding ema:0.9")
	}
}

// checkSmoothed compares the smoothed min/max/last of an answer with the
// buckets of ref, the smoothing of pts (smoothRef), to rounding.
func checkSmoothed(t *testing.T, pts []api.Point, ref [][len(seriesMeasures)]float64, body []byte, from, to, width int, label string) {
	t.Helper()
	// close: the recurrences round differently from the definitions;
	// the EMA's and the re-summed moving average's errors stay within a
	// few ulps of the values' magnitude (1e6 for param_norm), so 1e-9
	// relative catches any wrong weight or window by orders of magnitude.
	close := func(got *float64, want float64) bool {
		if got == nil || want != want {
			return got == nil && want != want
		}
		return math.Abs(*got-want) <= 1e-9*math.Max(1, math.Abs(want))
	}
	var raw map[string]json.RawMessage
	json.Unmarshal(body, &raw)
	got := decodeSeries(t, body)
	// The expected buckets of the smoothed values.
	type exp struct {
		start        int
		lo, hi, last [len(seriesMeasures)]float64
	}
	var want []exp
	for i, p := range pts {
		if p.Step < from || p.Step > to {
			continue
		}
		start := from + (p.Step-from)/width*width
		if len(want) == 0 || want[len(want)-1].start != start {
			e := exp{start: start}
			for mi := range seriesMeasures {
				e.lo[mi], e.hi[mi], e.last[mi] = math.NaN(), math.NaN(), math.NaN()
			}
			want = append(want, e)
		}
		e := &want[len(want)-1]
		for mi := range seriesMeasures {
			v := ref[i][mi]
			if v != v {
				continue
			}
			if e.lo[mi] != e.lo[mi] || v < e.lo[mi] {
				e.lo[mi] = v
			}
			if e.hi[mi] != e.hi[mi] || v > e.hi[mi] {
				e.hi[mi] = v
			}
			e.last[mi] = v
		}
	}
	if len(got.Start) != len(want) {
		t.Fatalf("%s from=%d to=%d width=%d: %d buckets, want %d", label, from, to, width, len(got.Start), len(want))
	}
	for mi, m := range seriesMeasures {
		var meas struct {
			Smooth struct{ Min, Max, Last []*float64 }
		}
		if err := json.Unmarshal(raw[m.name], &meas); err != nil {
			t.Fatal(err)
		}
		sm := meas.Smooth
		if len(sm.Min) != len(want) || len(sm.Max) != len(want) || len(sm.Last) != len(want) {
			t.Fatalf("%s %s: smooth has %d/%d/%d buckets, want %d", label, m.name, len(sm.Min), len(sm.Max), len(sm.Last), len(want))
		}
		for i, e := range want {
			if !close(sm.Min[i], e.lo[mi]) || !close(sm.Max[i], e.hi[mi]) || !close(sm.Last[i], e.last[mi]) {
				t.Fatalf("%s from=%d to=%d width=%d bucket %d (start %d) %s: smoothed min/max/last %s %s %s, want %v %v %v",
					label, from, to, width, i, e.start, m.name, fmtVal(sm.Min[i]), fmtVal(sm.Max[i]), fmtVal(sm.Last[i]), e.lo[mi], e.hi[mi], e.last[mi])
			}
		}
	}
}

func TestSeriesSmoothBadRequests(t *testing.T) {
	h := newHarness(t, Options{})
	h.json("POST", "/v1/runs", `{"name":"a","steps":100}`)
	for _, q := range []string{"ema:1", "ema:-0.1", "ema:x", "ma:0", "ma:100001", "ma:2.5", "gauss:3", "ema"} {
		a := h.do("GET", "/v1/runs/a/series?kind=forward&smooth="+q, nil)
		if a.code != 400 || !strings.Contains(string(a.body), "smooth=") || strings.Count(string(a.body), "\n") != 1 {
			t.Errorf("smooth=%s: %d %s, want 400 naming smooth on one line", q, a.code, a.body)
		}
	}
	for _, q := range []string{"", "none"} {
		if a := h.do("GET", "/v1/runs/a/series?kind=forward&smooth="+q, nil); a.code != 200 || strings.Contains(string(a.body), `"smooth"`) {
			t.Errorf("smooth=%s: %d %.200s, want 200 without smoothing", q, a.code, a.body)
		}
	}
}

// TestSeriesBlocksSameAnswer: forward answers served from the block
// summaries (series_blocks.go) are the brute-force buckets of the raw
// points, aligned on blocks or not, as the run grows, and after the run is
// deleted and created again with other points; and an aligned request
// reads only the steps past the last complete block.
func TestSeriesBlocksSameAnswer(t *testing.T) {
	seed := *seriesSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seriesseed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	h := newHarness(t, Options{})
	gen := func(n int, scale float64) []api.Point {
		var raw []api.Point
		for step := 1; step <= n; step++ {
			if rng.IntN(50) == 0 {
				continue // a step without metrics: blocks need not be full
			}
			p := api.Point{Kind: "forward", Step: step, Loss: scale * rng.NormFloat64(), TestLoss: math.NaN(), TestAcc: math.NaN(),
				StepDist: math.Exp(-rng.Float64() * 30), ParamNorm: 1 + rng.Float64()}
			if step%100 == 0 { // some blocks of 64 steps have none
				p.TestLoss, p.TestAcc = rng.ExpFloat64(), rng.Float64()
			}
			switch rng.IntN(60) {
			case 0:
				p.Loss = math.NaN()
			case 1:
				p.Loss = math.Inf(-1)
			case 2:
				p.Loss = math.Copysign(0, -1)
			}
			raw = append(raw, p)
		}
		return raw
	}
	setForward := func(n int) {
		h.fake.mu.Lock()
		st := h.fake.runs["a"]
		st.ForwardStep = n
		h.fake.runs["a"] = st
		h.fake.mu.Unlock()
	}
	// cold answers as a fresh server would: a first request, building
	// every summary it needs from step 1.
	cold := func(path string) []byte {
		t.Helper()
		req := httptest.NewRequest("GET", "http://127.0.0.1"+path, nil)
		w := httptest.NewRecorder()
		New(h.fake, Options{}).ServeHTTP(w, req)
		return w.Body.Bytes()
	}
	// stored answers as a fresh server over a store with block summaries
	// (some missing, as in a store partly written before it kept them).
	missing := map[int]bool{}
	for i := range 5000 / seriesBlock {
		missing[i] = rng.IntN(4) == 0
	}
	stored := func(path string) []byte {
		t.Helper()
		req := httptest.NewRequest("GET", "http://127.0.0.1"+path, nil)
		w := httptest.NewRecorder()
		New(storedFake{h.fake, func(i int) bool { return missing[i] }}, Options{}).ServeHTTP(w, req)
		return w.Body.Bytes()
	}
	emaRef := map[float64][][len(seriesMeasures)]float64{}
	query := func(raw []api.Point, from, to, width int) {
		t.Helper()
		path := fmt.Sprintf("/v1/runs/a/series?kind=forward&from=%d&to=%d&width=%d", from, to, width)
		a := h.do("GET", path, nil)
		if a.code != 200 {
			t.Fatalf("from=%d to=%d width=%d: %d %s", from, to, width, a.code, a.body)
		}
		checkSeries(t, raw, from, to, width, decodeSeries(t, a.body))
		if c := stored(path); string(c) != string(a.body) {
			t.Fatalf("%s: the answer from stored block summaries differs from the cached one:\n%.300s\n%.300s", path, a.body, c)
		}
		// Smoothed (EMA: from the summaries and their states too): the
		// reference smoothing, and the same bits as a cold answer.
		k := []float64{0.9, 0.5}[rng.IntN(2)]
		if emaRef[k] == nil {
			emaRef[k] = smoothRef(raw, "ema", k, 0)
		}
		path += fmt.Sprintf("&smooth=ema:%g", k)
		a = h.do("GET", path, nil)
		checkSeries(t, raw, from, to, width, decodeSeries(t, a.body))
		checkSmoothed(t, raw, emaRef[k], a.body, from, to, width, fmt.Sprintf("ema:%g", k))
		if c := cold(path); string(c) != string(a.body) {
			t.Fatalf("%s: the answer from the summaries differs from a cold one:\n%.300s\n%.300s", path, a.body, c)
		}
	}
	h.json("POST", "/v1/runs", `{"name":"a","steps":5000}`)
	raw := gen(5000, 1)
	h.fake.points = raw
	for _, fwd := range []int{100, 1999, 2048, 5000} { // the run grows
		setForward(fwd)
		for q := range 25 {
			from := 1 + rng.IntN(fwd)
			width := 1 + rng.IntN(400)
			if q%3 == 0 { // aligned, as the page asks
				width = seriesBlock * (1 + rng.IntN(8))
				from = 1 + rng.IntN(fwd)/width*width
			}
			query(raw, from, from+rng.IntN(fwd+1-from), width)
		}
		query(raw, 1, fwd, seriesBlock*4)
		h.fake.mu.Lock()
		lt := h.fake.lastTraj
		h.fake.mu.Unlock()
		if tail := fwd/seriesBlock*seriesBlock + 1; fwd%seriesBlock != 0 && (lt.from != tail || lt.to != fwd) {
			t.Fatalf("forward step %d: an aligned request read steps %d..%d, want only %d..%d", fwd, lt.from, lt.to, tail, fwd)
		}
	}
	// Deleted and created again (same name, other spec, other points):
	// the old summaries are gone.
	if a := h.do("DELETE", "/v1/runs/a", nil); a.code != 204 {
		t.Fatalf("DELETE: %d %s", a.code, a.body)
	}
	h.json("POST", "/v1/runs", `{"name":"a","steps":4000,"lr":0.5}`)
	raw = gen(4000, 1000)
	clear(emaRef)
	h.fake.mu.Lock()
	h.fake.points = raw
	h.fake.mu.Unlock()
	setForward(4000)
	query(raw, 1, 4000, seriesBlock*2)
	query(raw, 65, 3000, seriesBlock)

	// Concurrent requests while the run grows (for the race detector):
	// every answer is still the brute-force one.
	setForward(1000)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for q := range 10 {
				to := 500 + 100*q
				path := fmt.Sprintf("/v1/runs/a/series?kind=forward&from=1&to=%d&width=%d&smooth=ema:0.%d", to, seriesBlock*(1+g%2), 5+g%2*4)
				a := h.do("GET", path, nil)
				if a.code != 200 {
					t.Errorf("%s: %d %s", path, a.code, a.body)
					return
				}
			}
		}()
	}
	for fwd := 1000; fwd <= 4000; fwd += 250 {
		setForward(fwd)
	}
	wg.Wait()
	setForward(4000)
	query(raw, 1, 4000, seriesBlock)
}

// TestSeriesCacheBounded: however many EMA weights clients ask for, the
// cache keeps at most seriesCacheEntries entries, and an evicted entry is
// rebuilt to the same answer.
func TestSeriesCacheBounded(t *testing.T) {
	f := newFake()
	f.Create(api.RunSpec{Name: "a", Steps: 200})
	st := f.runs["a"]
	st.ForwardStep = 200
	f.runs["a"] = st
	for i := 1; i <= 200; i++ {
		f.points = append(f.points, api.Point{Kind: "forward", Step: i, Loss: float64(i % 7), TestLoss: math.NaN(), TestAcc: math.NaN()})
	}
	h := New(f, Options{})
	get := func(k float64) string {
		req := httptest.NewRequest("GET", fmt.Sprintf("http://127.0.0.1/v1/runs/a/series?kind=forward&width=64&smooth=ema:%g", k), nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			t.Fatalf("ema:%g: %d %s", k, w.Code, w.Body)
		}
		return w.Body.String()
	}
	first := get(0.5)
	for i := range 3 * seriesCacheEntries {
		get(float64(i+1) / float64(4*seriesCacheEntries))
	}
	if again := get(0.5); again != first {
		t.Fatalf("ema:0.5 after eviction:\n%s\nfirst:\n%s", again, first)
	}
	c := newBlockCache()
	for i := range 3 * seriesCacheEntries {
		sp, err := parseSmooth(fmt.Sprintf("ema:%g", float64(i)/float64(4*seriesCacheEntries)))
		if err != nil {
			t.Fatal(err)
		}
		c.entry(st, sp)
	}
	if len(c.entries) != seriesCacheEntries || c.lru.Len() != seriesCacheEntries {
		t.Fatalf("%d entries (%d in the LRU list) after %d weights, want %d", len(c.entries), c.lru.Len(), 3*seriesCacheEntries, seriesCacheEntries)
	}
}
