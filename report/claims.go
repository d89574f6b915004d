package report

import (
	"fmt"
	"math"
	"strings"
)

// The claims of the paper, as the report names them.
const (
	claimATitle = "Backward is more stable than forward"
	claimBTitle = "Backward converges to a point"
	claimCTitle = "After a reset the backward trajectory converges again"
)

func verdict(claim, title string, st Status, format string, args ...any) Verdict {
	return Verdict{Claim: claim, Status: st,
		Sentence: fmt.Sprintf("**(%s) %s — %s.** ", claim, title, st) + fmt.Sprintf(format, args...)}
}

// minChanges is the fewest loss differences an SD is compared on.
const minChanges = 5

func claimA(r *Result, th Thresholds) Verdict {
	f, b := r.Forward, r.Backward
	if f.LossChanges < minChanges || b.LossChanges < minChanges || !finite(f.LossChangeSD) || !finite(b.LossChangeSD) {
		return verdict("a", claimATitle, Undetermined,
			"Too few measured training losses in the last half (steps > %d): %d forward and %d backward differences, %d needed.",
			r.HalfFrom, f.LossChanges, b.LossChanges, minChanges)
	}
	q := ratio(b.LossChangeSD, f.LossChangeSD)
	st, cmp := NotShown, ">"
	if q <= th.StableRatio {
		st, cmp = Holds, "≤"
	}
	if f.LossChangeSD == 0 && b.LossChangeSD == 0 {
		cmp = "(both are exactly 0, a tie)"
		return verdict("a", claimATitle, NotShown, "Over steps %d–%d neither training loss changes at all %s.", r.HalfFrom+1, r.TailTo, cmp)
	}
	return verdict("a", claimATitle, st,
		"Over steps %d–%d the standard deviation of the change of the training loss between consecutive measurements is %s backward vs %s forward (%d differences each): ratio %s %s %s.",
		r.HalfFrom+1, r.TailTo, num(b.LossChangeSD), num(f.LossChangeSD), b.LossChanges, num2(q), cmp, num2(th.StableRatio))
}

func claimB(r *Result, th Thresholds) Verdict {
	f, b := r.Forward.StepDist, r.Backward.StepDist
	where := fmt.Sprintf("steps %d–%d", r.TailFrom, r.TailTo)
	if n := r.TailTo - r.TailFrom + 1; n < th.Tail {
		where += fmt.Sprintf(" (only %d steps: the last anchor segment starts at step %d)", n, r.TailFrom)
	}
	if r.TailTo-r.TailFrom+1 < 4 || !finite(f) || !finite(b) || !finite(r.TailTrend) && !(math.IsInf(r.TailTrend, 1)) {
		return verdict("b", claimBTitle, Undetermined, "Not enough step distances over %s to judge.", where)
	}
	q := ratio(b, f)
	small := q <= th.ConvergeRatio
	shrinking := r.TailTrend <= 1
	st := NotShown
	if small && shrinking {
		st = Holds
	}
	var why []string
	if small {
		why = append(why, fmt.Sprintf("%s× forward's %s (≤ %s)", num2(q), num(f), num2(th.ConvergeRatio)))
	} else {
		why = append(why, fmt.Sprintf("%s× forward's %s, not below %s×", num2(q), num(f), num2(th.ConvergeRatio)))
	}
	switch {
	case b == 0:
		why = append(why, "and it has stopped moving exactly (a floating-point fixed point)")
	case shrinking:
		why = append(why, fmt.Sprintf("and its steps are not growing (second half of the window %s× the first)", num2(r.TailTrend)))
	default:
		why = append(why, fmt.Sprintf("but its steps are growing (second half of the window %s× the first)", num2(r.TailTrend)))
	}
	return verdict("b", claimBTitle, st, "Over %s the backward iterate moves %s per step on average, %s.", where, num(b), strings.Join(why, ", "))
}

func claimC(r *Result, th Thresholds) Verdict {
	var resets, judged, conv []Segment
	var failing []Segment
	for _, s := range r.Segments {
		if s.Anchor.Segment == 0 {
			continue
		}
		resets = append(resets, s)
		if !s.Judged {
			continue
		}
		judged = append(judged, s)
		if s.Converges {
			conv = append(conv, s)
		} else {
			failing = append(failing, s)
		}
	}
	switch {
	case len(resets) == 0:
		return verdict("c", claimCTitle, Undetermined, "The run has no reset: its backward trajectory has a single anchor segment.")
	case len(judged) == 0:
		return verdict("c", claimCTitle, Undetermined, "None of the %d segments after a reset has the %d steps needed to judge it.", len(resets), th.MinSegment)
	}
	st := NotShown
	if len(conv) == len(judged) {
		st = Holds
	}
	var b strings.Builder
	if len(judged) > 1 || len(resets) > len(judged) {
		fmt.Fprintf(&b, "%d of the %d segments after a reset that are long enough to judge converge again", len(conv), len(judged))
		if n := len(resets) - len(judged); n > 0 {
			fmt.Fprintf(&b, " (%d more too short)", n)
		}
		b.WriteString(". ")
	}
	// Detail: the failing segments (at most three), else the last one.
	show := failing
	if len(show) == 0 {
		show = judged[len(judged)-1:]
	}
	if len(show) > 3 {
		show = show[:3]
	}
	for i, s := range show {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(segmentSentence(s, th))
	}
	return verdict("c", claimCTitle, st, "%s", b.String())
}

// segmentSentence describes one segment after a reset.
func segmentSentence(s Segment, th Thresholds) string {
	var b strings.Builder
	fmt.Fprintf(&b, "After the reset at step %d (start point: the %s iterate) the backward mean step distance went from %s over steps %d–%d to %s over steps %d–%d (%s×, threshold %s), %s× forward's %s over the same steps (threshold %s)",
		s.Anchor.Step, s.Anchor.From, num(s.HeadDist), s.First, s.First+s.K-1, num(s.TailDist), s.Last-s.K+1, s.Last,
		num2(ratio(s.TailDist, s.HeadDist)), num2(th.DecayRatio), num2(ratio(s.TailDist, s.FwdTailDist)), num(s.FwdTailDist), num2(th.ConvergeRatio))
	if finite(s.StartLoss) && finite(s.EndLoss) {
		fmt.Fprintf(&b, "; its training loss went from %s to %s", num(s.StartLoss), num(s.EndLoss))
	}
	if finite(s.Displacement) {
		fmt.Fprintf(&b, "; its last iterate lies %s from that start point", num(s.Displacement))
	}
	b.WriteString(".")
	return b.String()
}

// num formats a measure with four significant digits; NaN is "n/a".
func num(x float64) string {
	if math.IsNaN(x) {
		return "n/a"
	}
	return fmt.Sprintf("%.4g", x)
}

// num2 formats a ratio or threshold.
func num2(x float64) string {
	if math.IsNaN(x) {
		return "n/a"
	}
	if math.IsInf(x, 1) {
		return "∞"
	}
	return fmt.Sprintf("%.3g", x)
}
