package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/export"
	"github.com/replay-sgd/replay/report"
)

var reportCmd = command{
	name:     "report",
	synopsis: "[--run RUN]... [--out FILE.md] [--preamble FILE.md] [--displacement=false]",
	summary:  "write a Markdown report: forward vs backward stability per run and a verdict on each of the paper's claims",
	example:  "replayctl report --run quad --run fig3 --out results/REPORT.md",
	run:      runReport,
}

func runReport(e *env, c *command, args []string) error {
	fs := e.flags(c)
	var names []string
	var out, preamble string
	displacement := true
	th := report.DefaultThresholds()
	fs.StringArrayVar(&names, "run", nil, "run to report on (repeat for several; default: every run, by name)")
	fs.StringVar(&out, "out", "-", "Markdown file to write (- for stdout)")
	fs.StringVar(&preamble, "preamble", "", "Markdown file inserted after the title (e.g. how the report was produced)")
	fs.BoolVar(&displacement, "displacement", true, "fetch each anchor segment's start and last parameters to report how far it travelled (recomputes iterates that are not stored)")
	fs.IntVar(&th.Tail, "tail", th.Tail, "steps at the end over which step distances are averaged")
	fs.Float64Var(&th.StableRatio, "stable-ratio", th.StableRatio, "claim (a): backward loss-change SD at most this × forward's")
	fs.Float64Var(&th.ConvergeRatio, "converge-ratio", th.ConvergeRatio, "claims (b), (c): backward step distance at most this × forward's")
	fs.Float64Var(&th.DecayRatio, "decay-ratio", th.DecayRatio, "claim (c): step distance at the end of a segment at most this × right after its reset")
	if err := e.parse(c, fs, args); err != nil {
		return helped(err)
	}
	if err := noArgs(c, fs.Args()); err != nil {
		return err
	}
	if e.g.output != "table" {
		return usagef("report: writes Markdown only; -o %s is not supported", e.g.output)
	}
	if err := th.Validate(); err != nil {
		return usagef("report: %v", err)
	}
	if out == "" {
		return usagef("report: --out must not be empty (- writes to stdout)")
	}
	var pre []byte
	if preamble != "" {
		b, err := os.ReadFile(preamble)
		if err != nil {
			return fmt.Errorf("report: --preamble: %w", err)
		}
		pre = b
	}
	cl := e.client()
	if len(names) == 0 {
		l, err := cl.Runs(e.ctx)
		if err != nil {
			return err
		}
		if len(l.Runs) == 0 {
			return fmt.Errorf("report: no runs: start one with `replayctl run start --preset quadratic`")
		}
		for _, r := range l.Runs {
			names = append(names, r.Name)
		}
		sort.Strings(names)
	}
	// Everything is fetched and analysed before the file is created, so a
	// failure leaves no half-written report.
	results := make([]report.Result, 0, len(names))
	for _, name := range names {
		run, err := fetchRun(e, cl, name, displacement)
		if err != nil {
			return err
		}
		res, err := report.Analyze(run, th)
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		results = append(results, res)
	}
	dst, err := createAtomic("report", out, e.stdout)
	if err != nil {
		return err
	}
	defer dst.abort()
	w := bufio.NewWriter(dst)
	fmt.Fprintf(w, "# Forward vs backward SGD: stability report\n\n")
	if len(pre) > 0 {
		w.Write(pre)
		if !strings.HasSuffix(string(pre), "\n") {
			w.WriteString("\n")
		}
		w.WriteString("\n")
	}
	writeSummary(w, results)
	if err := report.Write(w, results, th); err != nil {
		return fmt.Errorf("report: write %s: %w", out, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("report: write %s: %w", out, err)
	}
	if err := dst.commit(); err != nil {
		return err
	}
	if out != "-" {
		fmt.Fprintf(e.stdout, "wrote %s: %d run(s)\n", out, len(results))
	}
	return nil
}

// writeSummary is a table of every run's verdicts, above the details.
func writeSummary(w *bufio.Writer, results []report.Result) {
	fmt.Fprintf(w, "## Summary\n\n| run | (a) backward more stable | (b) backward converges to a point | (c) converges again after a reset |\n|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(w, "| `%s` |", r.Run.Status.Name)
		for _, v := range r.Verdicts {
			fmt.Fprintf(w, " %s |", v.Status)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

// fetchRun gets a run's status and trajectories (and, if asked, its
// segments' displacements) over the API.
func fetchRun(e *env, cl *api.Client, name string, displacement bool) (report.Run, error) {
	st, err := cl.Status(e.ctx, name)
	if err != nil {
		return report.Run{}, err
	}
	run := report.Run{Status: st}
	err = cl.Trajectory(e.ctx, name, api.TrajectoryQuery{Kind: "both", Every: 1}, func(p api.Point) error {
		switch p.Kind {
		case "forward":
			run.Forward = append(run.Forward, p)
		case "backward":
			run.Backward = append(run.Backward, p)
		}
		return nil
	})
	if err != nil {
		return report.Run{}, err
	}
	run.Anchors = anchorsOf(st, run.Backward)
	if displacement && len(run.Backward) > 0 {
		run.Displacement, err = displacements(e, cl, name, run.Anchors, run.Backward)
		if err != nil {
			return report.Run{}, err
		}
	}
	return run, nil
}

// anchorsOf lists the anchors of the backward points in segment order. The
// trajectory carries each point's anchor step and segment but not where the
// start point came from: segment 0 starts at θ_0 ("init"), the current
// segment's source is in the status, and the others follow the run's
// reset_from (a manual reset with another --from before the last one is
// the only case this misnames).
func anchorsOf(st api.RunStatus, bwd []api.Point) []api.AnchorInfo {
	seen := map[int]bool{}
	var as []api.AnchorInfo
	for _, p := range bwd {
		if seen[p.Segment] {
			continue
		}
		seen[p.Segment] = true
		from := st.Spec.ResetFrom
		if from == "" {
			from = "backward"
		}
		switch {
		case p.Segment == 0:
			from = "init"
		case p.Segment == st.Anchor.Segment && st.Anchor.From != "":
			from = st.Anchor.From
		}
		as = append(as, api.AnchorInfo{Segment: p.Segment, Step: p.Anchor, From: from})
	}
	sort.Slice(as, func(i, j int) bool { return as[i].Segment < as[j].Segment })
	return as
}

// displacements returns ‖θ̃_last − x_r‖ per segment, with x_r the anchor's
// start point (θ_0, or the forward or backward parameters at r) and θ̃_last
// the segment's last backward iterate, both fetched from the daemon.
func displacements(e *env, cl *api.Client, name string, anchors []api.AnchorInfo, bwd []api.Point) (map[int]float64, error) {
	last := map[int]int{}
	for _, p := range bwd {
		if p.Step > last[p.Segment] {
			last[p.Segment] = p.Step
		}
	}
	cache := map[string][]float32{}
	params := func(kind string, step int) ([]float32, error) {
		key := fmt.Sprintf("%s/%d", kind, step)
		if v, ok := cache[key]; ok {
			return v, nil
		}
		rc, err := cl.Params(e.ctx, name, kind, step)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		ts, err := export.ReadSafetensors(rc)
		if err != nil {
			return nil, fmt.Errorf("report: %s parameters of %s at step %d: %w", kind, name, step, err)
		}
		var flat []float32
		for _, t := range ts {
			flat = append(flat, t.Data...)
		}
		cache[key] = flat
		return flat, nil
	}
	out := map[int]float64{}
	for _, a := range anchors {
		end, ok := last[a.Segment]
		if !ok {
			continue
		}
		kind, step := "backward", a.Step
		switch a.From {
		case "init":
			kind, step = "forward", 0
		case "forward":
			kind = "forward"
		}
		x, err := params(kind, step)
		if err != nil {
			return nil, err
		}
		y, err := params("backward", end)
		if err != nil {
			return nil, err
		}
		if len(x) != len(y) {
			return nil, fmt.Errorf("report: run %s: parameters of %d and %d values", name, len(x), len(y))
		}
		var s float64
		for i := range x {
			d := float64(y[i]) - float64(x[i])
			s += d * d
		}
		out[a.Segment] = math.Sqrt(s)
	}
	return out, nil
}
