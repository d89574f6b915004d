package report

import (
	"fmt"
	"math"
	"slices"

	"github.com/replay-sgd/replay/api"
)

// Run is what Analyze needs of one run.
type Run struct {
	// Status is the run's status; Name, Spec (steps, model, strategy…) and
	// State are used.
	Status api.RunStatus
	// Forward and Backward are the trajectories, one point per step (the
	// daemon's trajectory stream with every=1).
	Forward, Backward []api.Point
	// Anchors are the backward anchors in segment order. When nil they are
	// derived from the backward points (their Segment and Anchor fields),
	// with From taken from Status.Spec.ResetFrom for segments ≥ 1.
	Anchors []api.AnchorInfo
	// Displacement maps a segment to ‖θ̃_end − x_r‖: the distance between
	// its anchor's start point and its last backward iterate. Optional:
	// segments without an entry are reported as unknown.
	Displacement map[int]float64
}

// Thresholds decide the verdicts. See DefaultThresholds.
type Thresholds struct {
	Tail          int     // steps at the end over which step distances are averaged
	MinSegment    int     // shortest segment after a reset that (c) judges
	StableRatio   float64 // (a): backward loss-change SD ≤ StableRatio × forward's
	ConvergeRatio float64 // (b), (c): backward step distance ≤ ConvergeRatio × forward's
	DecayRatio    float64 // (c): tail step distance ≤ DecayRatio × the one right after the reset
}

// DefaultThresholds are the thresholds of the committed report:
//
//   - Tail 100: the "last 100 steps".
//   - StableRatio 0.8: "more stable" must be a clear difference (≥ 20 %
//     smaller SD), not a tie within noise; with ~100 measured differences
//     the SD itself has a relative standard error of about 7 %.
//   - ConvergeRatio 0.1: converging "to a point" rather than to a
//     distribution must show as steps an order of magnitude smaller than
//     the forward steps taken with the same batches; forward SGD at a
//     constant rate keeps moving at η‖∇L_b‖.
//   - DecayRatio 0.5: converging "again" after a reset means the steps
//     shrank at least by half since the reset (the first step after a
//     reset is an ordinary SGD step from the anchor's start point).
//   - MinSegment 20: shorter segments have too few steps for a head and a
//     tail.
func DefaultThresholds() Thresholds {
	return Thresholds{Tail: 100, MinSegment: 20, StableRatio: 0.8, ConvergeRatio: 0.1, DecayRatio: 0.5}
}

// Validate reports thresholds that cannot decide anything.
func (t Thresholds) Validate() error {
	if t.Tail < 2 || t.MinSegment < 4 || !(t.StableRatio > 0) || !(t.ConvergeRatio > 0) || !(t.DecayRatio > 0) {
		return fmt.Errorf("report: thresholds %+v: want Tail ≥ 2, MinSegment ≥ 4 and positive ratios: %w", t, ErrThresholds)
	}
	return nil
}

// Measures are one trajectory's stability measures.
type Measures struct {
	LossChangeSD  float64 // SD of consecutive measured training-loss changes in the last half
	LossChanges   int     // how many differences LossChangeSD is computed from
	StepDist      float64 // mean ‖θ_n − θ_{n−1}‖ over TailFrom..TailTo
	FinalLoss     float64 // training loss at the last measured step
	FinalTestLoss float64
	BestTestLoss  float64
	FinalAcc      float64 // test accuracy at the last measured step (NaN for regression)
	BestAcc       float64
	BestAccStep   int
}

// Status is a claim's verdict.
type Status int

// Verdicts.
const (
	Undetermined Status = iota // not enough data to judge
	Holds                      // the run shows the claim
	NotShown                   // the run does not show it
)

func (s Status) String() string {
	switch s {
	case Holds:
		return "holds"
	case NotShown:
		return "not shown"
	}
	return "undetermined"
}

// Verdict is the judgement of one claim with the sentence that explains it.
type Verdict struct {
	Claim    string // "a", "b", "c"
	Status   Status
	Sentence string
}

// Segment is the behaviour of the backward trajectory in one anchor
// segment (from one anchor to the next or to the end).
type Segment struct {
	Anchor             api.AnchorInfo
	First, Last        int     // steps of the segment
	HeadDist, TailDist float64 // mean backward step distance over the first and the last k steps
	K                  int     // k: steps in head and tail, min(Tail, len/2)
	FwdTailDist        float64 // mean forward step distance over the same tail steps
	StartLoss, EndLoss float64 // first and last measured backward training loss in the segment
	Displacement       float64 // ‖θ̃_Last − x_r‖ if known, else NaN
	Judged             bool    // long enough for (c)
	Converges          bool    // (c) holds for this segment
}

// Result is the analysis of one run.
type Result struct {
	Run                Run
	Steps              int // last step of the forward trajectory
	HalfFrom           int // the last half: steps > HalfFrom
	TailFrom, TailTo   int // the step-distance window
	Forward, Backward  Measures
	TailTrend          float64 // backward: mean step distance over the 2nd half of the tail / 1st half
	Segments           []Segment
	Verdicts           []Verdict
	BackwardIncomplete bool // the backward frontier is behind the forward trajectory
}

// Analyze computes the measures and verdicts of one run.
func Analyze(run Run, th Thresholds) (Result, error) {
	if err := th.Validate(); err != nil {
		return Result{}, err
	}
	fwd, bwd := sorted(run.Forward), sorted(run.Backward)
	if len(fwd) == 0 || len(bwd) == 0 {
		return Result{}, fmt.Errorf("run %s: %d forward and %d backward points: %w", run.Status.Name, len(fwd), len(bwd), ErrNoData)
	}
	res := Result{Run: run, Steps: fwd[len(fwd)-1].Step}
	last := bwd[len(bwd)-1].Step
	res.BackwardIncomplete = last < res.Steps
	// Everything is measured on steps both trajectories have.
	end := min(last, res.Steps)
	res.HalfFrom = end / 2
	res.Segments = segments(run, bwd, end)
	// The tail lies in the last segment: a reset inside it would measure
	// the jump, not convergence.
	lastSeg := res.Segments[len(res.Segments)-1]
	res.TailTo = end
	res.TailFrom = max(end-th.Tail+1, lastSeg.First, 1)

	fm := byStep(fwd)
	res.Forward = measure(fwd, res.HalfFrom, end, res.TailFrom)
	res.Backward = measure(bwd, res.HalfFrom, end, res.TailFrom)
	res.TailTrend = trend(bwd, res.TailFrom, end)
	for i := range res.Segments {
		judgeSegment(&res.Segments[i], bwd, fm, run.Displacement, th)
	}
	res.Verdicts = []Verdict{claimA(&res, th), claimB(&res, th), claimC(&res, th)}
	return res, nil
}

// sorted returns a copy of ps in step order, without duplicate steps (the
// last one wins).
func sorted(ps []api.Point) []api.Point {
	out := slices.Clone(ps)
	slices.SortStableFunc(out, func(a, b api.Point) int { return a.Step - b.Step })
	j := 0
	for i := range out {
		if j > 0 && out[j-1].Step == out[i].Step {
			out[j-1] = out[i]
			continue
		}
		out[j] = out[i]
		j++
	}
	return out[:j]
}

func byStep(ps []api.Point) map[int]api.Point {
	m := make(map[int]api.Point, len(ps))
	for _, p := range ps {
		m[p.Step] = p
	}
	return m
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// measure computes the measures of one sorted trajectory, up to step end.
func measure(ps []api.Point, halfFrom, end, tailFrom int) Measures {
	m := Measures{LossChangeSD: math.NaN(), FinalLoss: math.NaN(), FinalTestLoss: math.NaN(),
		BestTestLoss: math.NaN(), FinalAcc: math.NaN(), BestAcc: math.NaN()}
	var diffs []float64
	prev := math.NaN()
	for _, p := range ps {
		if p.Step > end {
			break
		}
		if finite(p.Loss) {
			if p.Step > halfFrom && finite(prev) {
				diffs = append(diffs, p.Loss-prev)
			}
			if p.Step > halfFrom {
				prev = p.Loss
			}
			m.FinalLoss = p.Loss
		}
		if finite(p.TestLoss) {
			m.FinalTestLoss = p.TestLoss
			if !(m.BestTestLoss <= p.TestLoss) {
				m.BestTestLoss = p.TestLoss
			}
		}
		if finite(p.TestAcc) {
			m.FinalAcc = p.TestAcc
			if !(m.BestAcc >= p.TestAcc) {
				m.BestAcc, m.BestAccStep = p.TestAcc, p.Step
			}
		}
	}
	m.LossChanges = len(diffs)
	if len(diffs) >= 2 {
		m.LossChangeSD = sd(diffs)
	}
	m.StepDist = meanDist(ps, tailFrom, end)
	return m
}

// sd is the sample standard deviation.
func sd(xs []float64) float64 {
	var mean float64
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return math.Sqrt(ss / float64(len(xs)-1))
}

// meanDist is the mean finite step distance over steps from..to.
func meanDist(ps []api.Point, from, to int) float64 {
	var s float64
	n := 0
	for _, p := range ps {
		if p.Step >= from && p.Step <= to && finite(p.StepDist) {
			s += p.StepDist
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return s / float64(n)
}

// trend is the mean step distance over the second half of from..to divided
// by the mean over the first half: < 1 means shrinking steps. Two exact
// zeros (an iterate that stopped moving in float32) give 0.
func trend(ps []api.Point, from, to int) float64 {
	mid := from + (to-from+1)/2
	a, b := meanDist(ps, from, mid-1), meanDist(ps, mid, to)
	if a == 0 && b == 0 {
		return 0
	}
	return b / a
}

// segments splits the backward trajectory (up to end) into anchor
// segments.
func segments(run Run, bwd []api.Point, end int) []Segment {
	var segs []Segment
	for _, p := range bwd {
		if p.Step > end {
			break
		}
		if len(segs) == 0 || segs[len(segs)-1].Anchor.Segment != p.Segment {
			from := run.Status.Spec.ResetFrom
			if from == "" {
				from = "backward"
			}
			if p.Segment == 0 {
				from = "init"
			}
			a := api.AnchorInfo{Segment: p.Segment, Step: p.Anchor, From: from}
			for _, k := range run.Anchors {
				if k.Segment == p.Segment {
					a = k
				}
			}
			segs = append(segs, Segment{Anchor: a, First: p.Step})
		}
		segs[len(segs)-1].Last = p.Step
	}
	return segs
}

// judgeSegment fills the head/tail measures of one segment and decides (c)
// for it.
func judgeSegment(s *Segment, bwd []api.Point, fwd map[int]api.Point, disp map[int]float64, th Thresholds) {
	n := s.Last - s.First + 1
	s.K = min(th.Tail, n/2)
	s.HeadDist, s.TailDist, s.FwdTailDist = math.NaN(), math.NaN(), math.NaN()
	s.StartLoss, s.EndLoss = math.NaN(), math.NaN()
	s.Displacement = math.NaN()
	if d, ok := disp[s.Anchor.Segment]; ok {
		s.Displacement = d
	}
	for _, p := range bwd {
		if p.Step < s.First || p.Step > s.Last || !finite(p.Loss) {
			continue
		}
		if !finite(s.StartLoss) {
			s.StartLoss = p.Loss
		}
		s.EndLoss = p.Loss
	}
	if s.K < 1 {
		return
	}
	s.HeadDist = meanDist(bwd, s.First, s.First+s.K-1)
	s.TailDist = meanDist(bwd, s.Last-s.K+1, s.Last)
	var f float64
	k := 0
	for st := s.Last - s.K + 1; st <= s.Last; st++ {
		if p, ok := fwd[st]; ok && finite(p.StepDist) {
			f += p.StepDist
			k++
		}
	}
	if k > 0 {
		s.FwdTailDist = f / float64(k)
	}
	s.Judged = s.Anchor.Segment > 0 && n >= th.MinSegment && finite(s.TailDist) && finite(s.HeadDist) && finite(s.FwdTailDist)
	s.Converges = s.Judged && s.TailDist <= th.ConvergeRatio*s.FwdTailDist && s.TailDist <= th.DecayRatio*s.HeadDist
}

// ratio is a/b with 0/0 = 0 (both trajectories stopped moving).
func ratio(a, b float64) float64 {
	if a == 0 && b == 0 {
		return 0
	}
	return a / b
}
