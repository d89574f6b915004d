package report

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Write writes the results as Markdown: how the verdicts are decided, then
// per run its settings, a table of measures (forward vs backward), a table
// of anchor segments and one sentence per claim. It writes no title, so a
// caller can put its own header (command line, machine) above it.
func Write(w io.Writer, results []Result, th Thresholds) error {
	bw := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(bw, format, a...) }
	p("## How the verdicts are decided\n\n")
	p("Measures are computed from the daemon's trajectories (one point per step; training and test losses are measured every `eval_every` steps on the run's evaluation subsets). ")
	p("\"Step distance\" is ‖θ_n − θ_{n−1}‖ (forward) or ‖θ̃_n − θ̃_{n−1}‖ (backward).\n\n")
	p("- (a) holds when the backward SD of the training-loss change over the last half is at most %s× the forward one.\n", num2(th.StableRatio))
	p("- (b) holds when over the last %d steps (inside the last anchor segment) the backward mean step distance is at most %s× the forward one over the same steps and is not growing (second half of the window ≤ first half).\n", th.Tail, num2(th.ConvergeRatio))
	p("- (c) holds when every segment that starts at a reset and has at least %d steps ends with a mean step distance (over its last min(%d, length/2) steps) at most %s× the forward one over the same steps and at most %s× its own right after the reset. Where it converges (\"possibly elsewhere\") is reported, not judged.\n", th.MinSegment, th.Tail, num2(th.ConvergeRatio), num2(th.DecayRatio))
	p("- A claim is *undetermined* when the run lacks the data (no reset, too few measurements).\n\n")
	for i := range results {
		writeRun(bw, &results[i])
	}
	return bw.Flush()
}

func writeRun(bw *bufio.Writer, r *Result) {
	p := func(format string, a ...any) { fmt.Fprintf(bw, format, a...) }
	st, s := r.Run.Status, r.Run.Status.Spec
	p("## Run `%s`\n\n", st.Name)
	var cfg []string
	add := func(k, v string) {
		if v != "" && v != "0" {
			cfg = append(cfg, fmt.Sprintf("%s `%s`", k, v))
		}
	}
	add("preset", s.Preset)
	add("model", s.Model)
	add("dataset", s.Dataset)
	add("init", s.Init)
	add("loss", s.Loss)
	add("lr", fmt.Sprint(s.LR))
	// The optimizer and those of its settings the spec carries (torch.optim's
	// names and meaning); a spec without one is plain SGD, shown as before.
	add("optimizer", s.Optimizer)
	for _, o := range []struct {
		name string
		v    *float64
	}{{"momentum", s.Momentum}, {"dampening", s.Dampening}, {"beta1", s.Beta1}, {"beta2", s.Beta2}, {"eps", s.Eps}, {"weight decay", s.WeightDecay}} {
		if o.v != nil {
			cfg = append(cfg, fmt.Sprintf("%s `%g`", o.name, *o.v))
		}
	}
	add("batch", fmt.Sprint(s.Batch))
	add("steps", fmt.Sprint(st.Steps))
	if s.Seed != nil {
		cfg = append(cfg, fmt.Sprintf("seed `%d`", *s.Seed))
	}
	add("strategy", st.Strategy)
	if st.Strategy != "full" { // memo moves its anchors as window does
		add("window", fmt.Sprint(st.Window))
	}
	if len(s.ResetAt) > 0 {
		add("reset at", strings.Trim(fmt.Sprint(s.ResetAt), "[]"))
		add("reset from", s.ResetFrom)
	}
	if s.EvalEvery != nil {
		every := fmt.Sprint(*s.EvalEvery)
		if *s.EvalEvery == 0 {
			every = "0 (last step only)"
		}
		add("eval every", every)
	}
	if s.EvalSize != nil {
		size := fmt.Sprint(*s.EvalSize)
		if *s.EvalSize == 0 {
			size = "whole split"
		}
		add("eval size", size)
	}
	p("%s. State: **%s**", strings.Join(cfg, ", "), st.State)
	if st.Reason != "" {
		p(" (%s)", st.Reason)
	}
	p(".\n\n")
	if r.BackwardIncomplete {
		p("> The backward trajectory stops at step %d of %d: every measure below uses steps ≤ %d only.\n\n", r.TailTo, r.Steps, r.TailTo)
	}
	f, b := r.Forward, r.Backward
	p("| measure | forward | backward |\n|---|---:|---:|\n")
	p("| SD of the training-loss change, steps %d–%d (%d / %d differences) | %s | %s |\n",
		r.HalfFrom+1, r.TailTo, f.LossChanges, b.LossChanges, num(f.LossChangeSD), num(b.LossChangeSD))
	p("| mean step distance, steps %d–%d | %s | %s |\n", r.TailFrom, r.TailTo, num(f.StepDist), num(b.StepDist))
	if finite(f.BestAcc) || finite(b.BestAcc) {
		p("| final test accuracy | %s | %s |\n", num(f.FinalAcc), num(b.FinalAcc))
		p("| best test accuracy (step) | %s | %s |\n", accAt(f), accAt(b))
	} else {
		p("| test accuracy | n/a (no classes) | n/a (no classes) |\n")
	}
	p("| final training loss | %s | %s |\n", num(f.FinalLoss), num(b.FinalLoss))
	p("| final / best test loss | %s / %s | %s / %s |\n\n", num(f.FinalTestLoss), num(f.BestTestLoss), num(b.FinalTestLoss), num(b.BestTestLoss))

	p("Backward anchor segments (k = steps averaged at each end):\n\n")
	p("| segment | anchor (start point) | steps | k | step dist, first k | step dist, last k | forward, last k | training loss start → end | distance from start point | converges again |\n")
	p("|---:|---|---|---:|---:|---:|---:|---|---:|---|\n")
	for _, sg := range r.Segments {
		conv := "—"
		switch {
		case sg.Anchor.Segment == 0:
			conv = "— (initial segment)"
		case !sg.Judged:
			conv = "too short"
		case sg.Converges:
			conv = "yes"
		default:
			conv = "no"
		}
		p("| %d | %d (%s) | %d–%d | %d | %s | %s | %s | %s → %s | %s | %s |\n",
			sg.Anchor.Segment, sg.Anchor.Step, sg.Anchor.From, sg.First, sg.Last, sg.K,
			num(sg.HeadDist), num(sg.TailDist), num(sg.FwdTailDist), num(sg.StartLoss), num(sg.EndLoss), num(sg.Displacement), conv)
	}
	p("\nClaims of the paper on this run:\n\n")
	for _, v := range r.Verdicts {
		p("- %s\n", v.Sentence)
	}
	p("\n")
}

func accAt(m Measures) string {
	if !finite(m.BestAcc) {
		return "n/a"
	}
	return fmt.Sprintf("%s (%d)", num(m.BestAcc), m.BestAccStep)
}
