package report

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// quadratic is the paper's §3.1 model: per-sample loss (θ − y_i)²/2,
// batch 1, so T_k(θ) = θ − η(θ − y_{b_k}) = ρθ + η y_{b_k}. Its backward
// iterates converge to a point (ρ^n) while the forward ones keep a
// stationary variance: the oracle the claims are checked against.
type quadratic struct {
	y     []float64
	b     []int // b[k-1] is the sample of step k
	eta   float64
	every int // losses measured every this many steps
}

func newQuadratic(t *testing.T, seed uint64, steps int) *quadratic {
	t.Logf("quadratic oracle seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	q := &quadratic{y: make([]float64, 1000), b: make([]int, steps), eta: 0.1, every: 10}
	for i := range q.y {
		q.y[i] = rng.NormFloat64()
	}
	for k := range q.b {
		q.b[k] = rng.IntN(len(q.y))
	}
	return q
}

func (q *quadratic) T(k int, th float64) float64 { return th - q.eta*(th-q.y[q.b[k-1]]) }

func (q *quadratic) loss(th float64) float64 {
	var s float64
	for _, y := range q.y {
		s += (th - y) * (th - y) / 2
	}
	return s / float64(len(q.y))
}

func (q *quadratic) point(kind string, n int, th, prev float64, anchor, seg int) api.Point {
	p := api.Point{Kind: kind, Step: n, Loss: math.NaN(), TestLoss: math.NaN(), TestAcc: math.NaN(),
		ParamNorm: math.Abs(th), StepDist: math.Abs(th - prev), Anchor: anchor, Segment: seg}
	if n%q.every == 0 || n == len(q.b) {
		p.Loss = q.loss(th)
		p.TestLoss = p.Loss + 0.01
		// A made-up accuracy that is best near θ = 0, to exercise the
		// accuracy columns.
		p.TestAcc = 1 / (1 + th*th)
	}
	return p
}

func (q *quadratic) forward(th0 float64) []api.Point {
	var ps []api.Point
	th := th0
	for n := 1; n <= len(q.b); n++ {
		prev := th
		th = q.T(n, th)
		ps = append(ps, q.point("forward", n, th, prev, 0, 0))
	}
	return ps
}

// backward is the backward trajectory with anchors at the given steps
// (start point: the backward iterate there). If drift, the segments after
// the first reset are computed forward instead (a trajectory that does not
// converge again), to have a case where claims must fail.
func (q *quadratic) backward(th0 float64, resets []int, drift bool) ([]api.Point, map[int]float64) {
	var ps []api.Point
	disp := map[int]float64{}
	r, seg, x := 0, 0, th0
	prev := th0
	cur := th0
	for n := 1; n <= len(q.b); n++ {
		for _, rr := range resets {
			if rr == n-1 && rr > 0 {
				disp[seg] = math.Abs(cur - x)
				r, seg, x = rr, seg+1, cur
			}
		}
		if drift && seg > 0 {
			cur = q.T(n, prev)
		} else {
			cur = x
			for k := n; k > r; k-- { // T_{r+1} ∘ … ∘ T_n: T_n first
				cur = q.T(k, cur)
			}
		}
		ps = append(ps, q.point("backward", n, cur, prev, r, seg))
		prev = cur
	}
	disp[seg] = math.Abs(cur - x)
	return ps, disp
}

func status(name string, steps int, resets []int) api.RunStatus {
	seed := uint64(1)
	return api.RunStatus{Name: name, State: "done", Steps: steps, Strategy: "full",
		Spec: api.RunSpec{Preset: "quadratic", Model: "scalar", Dataset: "quadratic", LR: 0.1, Batch: 1,
			Steps: steps, Seed: &seed, ResetAt: resets, ResetFrom: "backward", EvalEvery: api.Ptr(10)}}
}

func analyze(t *testing.T, run Run) Result {
	t.Helper()
	res, err := Analyze(run, DefaultThresholds())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func wantVerdicts(t *testing.T, res Result, want ...Status) {
	t.Helper()
	for i, v := range res.Verdicts {
		if v.Status != want[i] {
			t.Errorf("claim (%s): %s, want %s: %s", v.Claim, v.Status, want[i], v.Sentence)
		} else {
			t.Logf("claim (%s): %s", v.Claim, v.Sentence)
		}
		if !strings.Contains(v.Sentence, want[i].String()) {
			t.Errorf("claim (%s): sentence does not state %q: %s", v.Claim, want[i], v.Sentence)
		}
	}
}

// The quadratic oracle with a reset at 1000 of 2000 steps: all three
// claims hold, and the measures agree with the closed forms.
func TestQuadraticClaimsHold(t *testing.T) {
	q := newQuadratic(t, 7, 2000)
	resets := []int{1000}
	bwd, disp := q.backward(2, resets, false)
	res := analyze(t, Run{Status: status("quad", 2000, resets), Forward: q.forward(2), Backward: bwd, Displacement: disp})
	wantVerdicts(t, res, Holds, Holds, Holds)

	// The forward steps are η|θ − y| with θ and y of unit scale: of order
	// 0.1; the backward ones have contracted by ρ^900 after the reset.
	if f := res.Forward.StepDist; f < 0.02 || f > 0.3 {
		t.Errorf("forward step distance %g, want ≈ 0.1", f)
	}
	if b := res.Backward.StepDist; b > 1e-12 {
		t.Errorf("backward step distance %g, want ≈ 0 (ρ^900)", b)
	}
	if res.TailFrom != 1901 || res.TailTo != 2000 || res.HalfFrom != 1000 {
		t.Errorf("windows: tail %d–%d, half > %d", res.TailFrom, res.TailTo, res.HalfFrom)
	}
	// 100 losses in the last half (every 10 steps, steps 1010..2000): 99
	// differences.
	if res.Forward.LossChanges != 99 || res.Backward.LossChanges != 99 {
		t.Errorf("loss differences %d / %d, want 99", res.Forward.LossChanges, res.Backward.LossChanges)
	}
	if len(res.Segments) != 2 || res.Segments[1].Anchor.Step != 1000 || res.Segments[1].First != 1001 || !res.Segments[1].Converges {
		t.Errorf("segments %+v", res.Segments)
	}
	if d := res.Segments[1].Displacement; d != disp[1] {
		t.Errorf("displacement %g, want %g", d, disp[1])
	}
	if res.Backward.BestAcc < res.Backward.FinalAcc || res.Backward.BestAccStep == 0 {
		t.Errorf("best accuracy %g at %d, final %g", res.Backward.BestAcc, res.Backward.BestAccStep, res.Backward.FinalAcc)
	}
}

// The same data where the trajectory after the reset is forward SGD (it
// never settles): no claim may hold.
func TestDriftingBackwardClaimsFail(t *testing.T) {
	q := newQuadratic(t, 8, 2000)
	resets := []int{1000}
	bwd, disp := q.backward(2, resets, true)
	res := analyze(t, Run{Status: status("drift", 2000, resets), Forward: q.forward(2), Backward: bwd, Displacement: disp})
	wantVerdicts(t, res, NotShown, NotShown, NotShown)
	if res.Segments[1].Converges {
		t.Error("a drifting segment converges")
	}
}

// The backward trajectory identical to the forward one: "more stable" must
// not hold for a tie (ratio 1 > 0.8).
func TestIdenticalTrajectoriesAreNotMoreStable(t *testing.T) {
	q := newQuadratic(t, 9, 1000)
	fwd := q.forward(0.5)
	bwd := make([]api.Point, len(fwd))
	for i, p := range fwd {
		p.Kind = "backward"
		bwd[i] = p
	}
	res := analyze(t, Run{Status: status("tie", 1000, nil), Forward: fwd, Backward: bwd})
	wantVerdicts(t, res, NotShown, NotShown, Undetermined)
	if res.Forward.LossChangeSD != res.Backward.LossChangeSD {
		t.Errorf("equal trajectories, SDs %g vs %g", res.Forward.LossChangeSD, res.Backward.LossChangeSD)
	}
}

// Windowed resets every 256 steps (as the daemon's window strategy): each
// segment converges again, so (c) holds for all of them and (b) is judged
// inside the last segment.
func TestWindowedSegments(t *testing.T) {
	q := newQuadratic(t, 10, 1000)
	resets := []int{256, 512, 768}
	bwd, _ := q.backward(1, resets, false)
	st := status("win", 1000, nil)
	st.Strategy, st.Window = "window", 256
	res := analyze(t, Run{Status: st, Forward: q.forward(1), Backward: bwd})
	wantVerdicts(t, res, Holds, Holds, Holds)
	if len(res.Segments) != 4 {
		t.Fatalf("%d segments, want 4", len(res.Segments))
	}
	for i, s := range res.Segments[1:] {
		if !s.Judged || !s.Converges || s.K != 100 {
			t.Errorf("segment %d: %+v", i+1, s)
		}
	}
	if !strings.Contains(res.Verdicts[2].Sentence, "3 of the 3 segments") {
		t.Errorf("(c) does not count segments: %s", res.Verdicts[2].Sentence)
	}
}

// Steps that are small but growing: (b) must not hold.
func TestGrowingStepsDoNotConverge(t *testing.T) {
	var fwd, bwd []api.Point
	for n := 1; n <= 400; n++ {
		l := math.NaN()
		if n%10 == 0 {
			l = 1 + 0.1*math.Sin(float64(n))
		}
		fwd = append(fwd, api.Point{Kind: "forward", Step: n, Loss: l, TestAcc: math.NaN(), TestLoss: math.NaN(), StepDist: 1})
		bwd = append(bwd, api.Point{Kind: "backward", Step: n, Loss: l, TestAcc: math.NaN(), TestLoss: math.NaN(), StepDist: 1e-3 * float64(n)})
	}
	res := analyze(t, Run{Status: status("grow", 400, nil), Forward: fwd, Backward: bwd})
	if v := res.Verdicts[1]; v.Status != NotShown || !strings.Contains(v.Sentence, "growing") {
		t.Errorf("(b): %s", v.Sentence)
	}
	if res.TailTrend <= 1 {
		t.Errorf("trend %g, want > 1", res.TailTrend)
	}
}

// Too little data: everything undetermined, and no error.
func TestUndetermined(t *testing.T) {
	fwd := []api.Point{{Kind: "forward", Step: 1, Loss: 1, StepDist: 1}, {Kind: "forward", Step: 2, Loss: 0.5, StepDist: 1}}
	bwd := []api.Point{{Kind: "backward", Step: 1, Loss: 1, StepDist: 1}, {Kind: "backward", Step: 2, Loss: 0.5, StepDist: 1}}
	res := analyze(t, Run{Status: status("tiny", 2, nil), Forward: fwd, Backward: bwd})
	wantVerdicts(t, res, Undetermined, Undetermined, Undetermined)
}

func TestAnalyzeErrors(t *testing.T) {
	if _, err := Analyze(Run{Status: status("empty", 10, nil)}, DefaultThresholds()); !errors.Is(err, ErrNoData) {
		t.Errorf("no points: %v, want ErrNoData", err)
	}
	th := DefaultThresholds()
	th.ConvergeRatio = 0
	q := newQuadratic(t, 1, 100)
	bwd, _ := q.backward(1, nil, false)
	if _, err := Analyze(Run{Forward: q.forward(1), Backward: bwd}, th); !errors.Is(err, ErrThresholds) {
		t.Errorf("zero ratio: %v, want ErrThresholds", err)
	}
}

// A backward frontier behind the forward trajectory: measured on the
// common steps only, and said so.
func TestIncompleteBackward(t *testing.T) {
	q := newQuadratic(t, 11, 1000)
	bwd, _ := q.backward(1, nil, false)
	res := analyze(t, Run{Status: status("part", 1000, nil), Forward: q.forward(1), Backward: bwd[:600]})
	if !res.BackwardIncomplete || res.TailTo != 600 || res.HalfFrom != 300 {
		t.Errorf("incomplete: %v, tail to %d, half from %d", res.BackwardIncomplete, res.TailTo, res.HalfFrom)
	}
	var buf bytes.Buffer
	if err := Write(&buf, []Result{res}, DefaultThresholds()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "stops at step 600 of 1000") {
		t.Errorf("no note on the incomplete backward trajectory:\n%s", buf.String())
	}
}

// Points out of order and duplicated give the same result as sorted ones;
// the input is not modified.
func TestOrderInvariance(t *testing.T) {
	q := newQuadratic(t, 12, 500)
	fwd := q.forward(1)
	bwd, _ := q.backward(1, []int{250}, false)
	want := analyze(t, Run{Status: status("o", 500, nil), Forward: fwd, Backward: bwd})
	rev := make([]api.Point, 0, len(bwd)+1)
	for i := len(bwd) - 1; i >= 0; i-- {
		rev = append(rev, bwd[i])
	}
	rev = append(rev, bwd[3])
	first := rev[0]
	got := analyze(t, Run{Status: status("o", 500, nil), Forward: fwd, Backward: rev})
	if rev[0] != first {
		t.Error("input modified")
	}
	if got.Backward != want.Backward || got.TailTrend != want.TailTrend || len(got.Segments) != len(want.Segments) {
		t.Errorf("order changes the result: %+v vs %+v", got.Backward, want.Backward)
	}
}

func TestMarkdown(t *testing.T) {
	q := newQuadratic(t, 13, 2000)
	resets := []int{1000}
	bwd, disp := q.backward(2, resets, false)
	a := analyze(t, Run{Status: status("quad", 2000, resets), Forward: q.forward(2), Backward: bwd, Displacement: disp})
	// A regression-like run without accuracies.
	fwd := q.forward(2)
	for i := range fwd {
		fwd[i].TestAcc = math.NaN()
	}
	bwd2, _ := q.backward(2, resets, true)
	for i := range bwd2 {
		bwd2[i].TestAcc = math.NaN()
	}
	b := analyze(t, Run{Status: status("reg", 2000, resets), Forward: fwd, Backward: bwd2})
	var buf bytes.Buffer
	if err := Write(&buf, []Result{a, b}, DefaultThresholds()); err != nil {
		t.Fatal(err)
	}
	md := buf.String()
	for _, want := range []string{
		"## How the verdicts are decided", "## Run `quad`", "## Run `reg`",
		"| measure | forward | backward |", "| SD of the training-loss change, steps 1001–2000 (99 / 99 differences) |",
		"| mean step distance, steps 1901–2000 |", "best test accuracy (step)", "n/a (no classes)",
		"| 1 | 1000 (backward) | 1001–2000 | 100 |",
		"**(a) Backward is more stable than forward — holds.**",
		"**(c) After a reset the backward trajectory converges again — not shown.**",
		"0.8×", "0.1×", "0.5×", "eval every `10`",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}
	if strings.Contains(md, "NaN") || strings.Contains(md, "%!") {
		t.Errorf("Markdown has NaN or a format error:\n%s", md)
	}
	// Every table row has the header's number of cells.
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| measure") || strings.HasPrefix(line, "| SD") || strings.HasPrefix(line, "| final") {
			if c := strings.Count(line, "|"); c != 4 {
				t.Errorf("row with %d bars: %s", c, line)
			}
		}
		if strings.HasPrefix(line, "| segment") || strings.HasPrefix(line, "| 1 |") || strings.HasPrefix(line, "| 0 |") {
			if c := strings.Count(line, "|"); c != 11 {
				t.Errorf("segment row with %d bars: %s", c, line)
			}
		}
	}
	if testing.Verbose() {
		t.Log("\n" + md)
	}
}
