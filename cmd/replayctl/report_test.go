package main

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// reportRun is a finished run of 2000 steps with a reset at 600.
func reportRun(name string) api.RunStatus {
	st := sampleRun(name)
	st.State, st.Steps, st.ForwardStep, st.BackwardStep = "done", 2000, 2000, 2000
	st.Strategy, st.Window = "full", 256
	st.Spec.Steps, st.Spec.ResetAt, st.Spec.ResetFrom, st.Spec.EvalEvery = 2000, []int{600}, "backward", api.Ptr(10)
	st.Anchor = api.AnchorInfo{Segment: 1, Step: 600, From: "backward"}
	return st
}

// reportPoints is a trajectory whose answer is known: forward moves 0.1
// per step with a noisy loss; backward either contracts geometrically in
// each segment (converge) or moves exactly like forward (it does not).
func reportPoints(converge bool) []api.Point {
	var ps []api.Point
	for n := 1; n <= 2000; n++ {
		l, acc := math.NaN(), math.NaN()
		if n%10 == 0 {
			l = 0.5 + 0.05*math.Sin(1.7*float64(n))
			acc = 0.8 + 0.01*math.Cos(float64(n))
		}
		ps = append(ps, api.Point{Kind: "forward", Step: n, Loss: l, TestLoss: l, TestAcc: acc, ParamNorm: 10, StepDist: 0.1})
	}
	for n := 1; n <= 2000; n++ {
		seg, r := 0, 0
		if n > 600 {
			seg, r = 1, 600
		}
		d := 0.1 * math.Pow(0.95, float64(n-r-1))
		l, acc := math.NaN(), math.NaN()
		if n%10 == 0 {
			l = 0.45 + 0.05*math.Pow(0.95, float64(n-r))*math.Sin(1.7*float64(n))
			acc = 0.82
		}
		if !converge {
			d = 0.1
			l = 0.5 + 0.05*math.Sin(1.7*float64(n))
			if n%10 != 0 {
				l = math.NaN()
			}
		}
		ps = append(ps, api.Point{Kind: "backward", Step: n, Loss: l, TestLoss: l, TestAcc: acc, ParamNorm: 10, StepDist: d, Anchor: r, Segment: seg})
	}
	return ps
}

func reportFake(t *testing.T) *fakeDaemon {
	f := newFake(t, reportRun("good"), reportRun("flat"))
	f.points = func(name string) []api.Point { return reportPoints(name == "good") }
	return f
}

func TestReportToFile(t *testing.T) {
	f := reportFake(t)
	out := filepath.Join(t.TempDir(), "REPORT.md")
	pre := filepath.Join(t.TempDir(), "pre.md")
	if err := os.WriteFile(pre, []byte("Produced by `make reproduce`."), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := f.cli("report", "--run", "good", "--out", out, "--preamble", pre)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "wrote "+out) {
		t.Errorf("stdout %q", stdout)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{
		"# Forward vs backward SGD: stability report\n\nProduced by `make reproduce`.\n\n## Summary",
		"| `good` | holds | holds | holds |",
		"## Run `good`",
		"**(a) Backward is more stable than forward — holds.**",
		"**(b) Backward converges to a point — holds.**",
		"**(c) After a reset the backward trajectory converges again — holds.**",
		// The fake's parameters end in the step number: the segment after
		// the reset runs from θ̃_600 to θ̃_2000, a distance of 1400; the
		// first from θ_0 to θ̃_600.
		"| 1 | 600 (backward) | 601–2000 | 100 |", "| 1400 | yes |", "| 600 | — (initial segment) |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "flat") {
		t.Error("report covers a run that was not asked for")
	}
	f.mu.Lock()
	reqs := strings.Join(f.requests, "\n")
	f.mu.Unlock()
	for _, want := range []string{"kind=forward&step=0", "kind=backward&step=600", "kind=backward&step=2000"} {
		if !strings.Contains(reqs, want) {
			t.Errorf("no params request %s in\n%s", want, reqs)
		}
	}
	if f.mutated() != 0 {
		t.Error("report changed the daemon")
	}
}

// Without --run every run is reported, by name, to stdout; a run whose
// backward trajectory moves like the forward one shows no claim.
func TestReportAllRunsStdout(t *testing.T) {
	f := reportFake(t)
	stdout, _, err := f.cli("report", "--displacement=false")
	if err != nil {
		t.Fatal(err)
	}
	i, j := strings.Index(stdout, "## Run `flat`"), strings.Index(stdout, "## Run `good`")
	if i < 0 || j < 0 || i > j {
		t.Errorf("runs missing or out of order (flat at %d, good at %d)", i, j)
	}
	if !strings.Contains(stdout, "| `flat` | not shown | not shown | not shown |") {
		t.Errorf("flat run's verdicts:\n%s", stdout)
	}
	if strings.Contains(f.lastRequest(), "params") || strings.Contains(stdout, "wrote ") {
		t.Error("--displacement=false fetched parameters, or a file message on stdout")
	}
}

func TestReportErrors(t *testing.T) {
	f := reportFake(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "r.md")
	for _, tc := range []struct {
		args  []string
		usage bool
		want  string
	}{
		{[]string{"--run", "nope", "--out", out}, false, "nope"},
		{[]string{"-o", "json", "--out", out}, true, "Markdown only"},
		{[]string{"--converge-ratio", "0", "--out", out}, true, "thresholds"},
		{[]string{"--out", ""}, true, "--out"},
		{[]string{"--preamble", filepath.Join(dir, "missing.md"), "--out", out}, false, "missing.md"},
		{[]string{"--run", "good", "--out", dir}, false, "is a directory"},
		{[]string{"extra"}, true, "unexpected argument"},
	} {
		_, _, err := f.cli(append([]string{"report"}, tc.args...)...)
		oneLine(t, err)
		if errors.Is(err, errUsage) != tc.usage || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("report %q: %v (usage %v), want %q", tc.args, err, errors.Is(err, errUsage), tc.want)
		}
		if _, serr := os.Stat(out); serr == nil {
			t.Errorf("report %q: wrote %s despite the error", tc.args, out)
		}
	}
	// A run without points: no file, an error naming it.
	f.points = func(string) []api.Point { return nil }
	_, _, err := f.cli("report", "--run", "good", "--out", out)
	oneLine(t, err)
	if !strings.Contains(err.Error(), "good") {
		t.Errorf("empty run: %v", err)
	}
	if _, serr := os.Stat(out); serr == nil {
		t.Error("report written for a run without points")
	}
	// No runs at all.
	empty := newFake(t)
	if _, _, err := empty.cli("report"); err == nil || !strings.Contains(err.Error(), "no runs") {
		t.Errorf("no runs: %v", err)
	}
	if f.mutated() != 0 {
		t.Error("a failed report changed the daemon")
	}
}

func TestReportHelp(t *testing.T) {
	stdout, _, err := runCLI("report", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Usage: replayctl report", "--run", "--out", "Example:"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("help lacks %q:\n%s", want, stdout)
		}
	}
}

// The real daemon on the paper's §3.1 quadratic (ρ = 1 − ηa = 0.9): theory
// says the backward iterates converge to a point (ρ^n), also again after a
// reset, while the forward ones keep a stationary variance, so every claim
// must hold; and the report must be what the daemon's data say.
func TestE2EReportQuadratic(t *testing.T) {
	d := startDaemon(t)
	d.ctl(t, "run", "start", "--preset", "quadratic", "--name", "q", "--steps", "600", "--reset-at", "300",
		"--strategy", "full", "--seed", "3").ok(t, "run start")
	d.ctl(t, "wait", "--run", "q", "--timeout", "2m", "--interval", "100ms").ok(t, "wait")
	out := filepath.Join(t.TempDir(), "r.md")
	d.ctl(t, "report", "--out", out).ok(t, "report")
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{
		"| `q` | holds | holds | holds |",
		"| 1 | 300 (backward) | 301–600 | 100 |",
		"SD of the training-loss change, steps 301–600 (299 / 299 differences)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "| n/a | yes |") {
		t.Errorf("displacement of the segment after the reset not fetched:\n%s", md)
	}
}
