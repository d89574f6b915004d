package scheduler

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/internal/testseed"
	"github.com/replay-sgd/replay/replay"
)

func seed(v uint64) *uint64 { return &v }

// checkAgainstOracle compares a finished run with an in-memory
// recomputation by the replay package's sequential strategies. It compares
// parameter vectors wherever the run keeps them: every forward checkpoint
// (bit for bit), every anchor's starting point, every kept backward iterate,
// and every backward iterate as the query path (Params) recomputes it from
// the stored anchor (bit for bit, or within the memoized prefix's rounding
// bound for memo); and every stored metric:
// parameter norms and step distances bitwise (memo: to rounding) and the
// anchor of every backward iterate.
func checkAgainstOracle(t *testing.T, h *harness, name string) {
	t.Helper()
	o := newOracle(t, h.store, name)
	fwd := metricsOf(t, h.store, name, "forward", 0)
	if len(fwd) != o.cfg.Steps {
		t.Fatalf("%s: %d forward metrics, want %d", name, len(fwd), o.cfg.Steps)
	}
	for i, m := range fwd {
		n := i + 1
		if m.Step != n || !sameBits(m.ParamNorm, norm(o.fwd[n])) || !sameBits(m.StepDist, dist(o.fwd[n], o.fwd[n-1])) {
			t.Fatalf("%s: forward step %d: stored %+v, oracle norm %v dist %v", name, n, m, norm(o.fwd[n]), dist(o.fwd[n], o.fwd[n-1]))
		}
	}
	ks, err := h.store.Checkpoints(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(ks) < 2 || ks[0] != 0 {
		t.Fatalf("%s: checkpoints %v: want θ_0 and at least one more", name, ks)
	}
	got := make([]float32, o.cfg.Dim)
	for _, k := range ks {
		if err := h.store.Checkpoint(name, k, got); err != nil {
			t.Fatal(err)
		}
		if i := firstDiff(got, o.fwd[k], 0); i >= 0 {
			t.Fatalf("%s: checkpoint %d differs from the oracle's θ_%d at %d: %v vs %v", name, k, k, i, got[i], o.fwd[k][i])
		}
	}

	bwd := metricsOf(t, h.store, name, "backward", 0)
	if want := o.cfg.Steps - o.cfg.BackwardFrom; len(bwd) != want {
		t.Fatalf("%s: %d backward metrics, want %d", name, len(bwd), want)
	}
	anchors, err := h.store.Anchors(name)
	if err != nil {
		t.Fatal(err)
	}
	// The oracle's θ̃_r at every anchor step r, for the anchors' starts.
	atAnchor := map[int][]float32{0: o.theta0}
	for _, a := range anchors {
		atAnchor[a.Step] = nil
	}
	s := o.strategy(t)
	dst := make([]float32, o.cfg.Dim)
	prev := make([]float32, o.cfg.Dim)
	if _, err := s.Backward(prev, 0); err != nil {
		t.Fatal(err)
	}
	tol := 0.0
	if o.cfg.Strategy == StrategyMemo {
		tol = 1e-5 // the affine prefix composes in float64: equal to rounding, not bitwise
	}
	kept := 0
	for _, m := range bwd {
		res, err := s.Backward(dst, m.Step)
		if err != nil {
			t.Fatal(err)
		}
		want := norm(dst)
		if tol == 0 && !sameBits(m.ParamNorm, want) || math.Abs(m.ParamNorm-want) > tol*(1+want) {
			t.Fatalf("%s: backward step %d: stored norm %v, oracle %v", name, m.Step, m.ParamNorm, want)
		}
		if m.Anchor != res.Anchor {
			t.Fatalf("%s: backward step %d: stored anchor %d, oracle %d", name, m.Step, m.Anchor, res.Anchor)
		}
		if tol == 0 && m.Step > 1 && m.Step-1 != res.Anchor && o.cfg.Strategy != StrategySliding {
			if d := dist(dst, prev); !sameBits(m.StepDist, d) {
				t.Fatalf("%s: backward step %d: stored step distance %v, oracle %v", name, m.Step, m.StepDist, d)
			}
		}
		// Every backward iterate as a vector: recomputed by the scheduler's
		// query path from the stored anchor, equal to the oracle's.
		_, th, err := h.s.Params(context.Background(), name, KindBackward, m.Step)
		if err != nil {
			t.Fatal(err)
		}
		if i := firstDiff(th, dst, tol); i >= 0 {
			t.Fatalf("%s: backward parameters at step %d differ from the oracle's at %d: %v vs %v", name, m.Step, i, th[i], dst[i])
		}
		ok, err := h.store.BackwardTheta(name, m.Segment, m.Step, got)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			kept++
			if i := firstDiff(got, dst, tol); i >= 0 {
				t.Fatalf("%s: kept backward iterate at step %d differs from the oracle's at %d: %v vs %v", name, m.Step, i, got[i], dst[i])
			}
		}
		if v, ok := atAnchor[m.Step]; ok && v == nil {
			atAnchor[m.Step] = append([]float32(nil), dst...)
		}
		copy(prev, dst)
	}
	for _, a := range anchors {
		var want []float32
		switch a.From {
		case ckpt.FromInit:
			want = o.theta0
		case ckpt.FromForward:
			want = o.fwd[a.Step]
		case ckpt.FromBackward:
			want = atAnchor[a.Step]
		}
		if want == nil {
			t.Fatalf("%s: anchor %+v: no oracle iterate to compare its start with", name, a)
		}
		if err := h.store.AnchorStart(name, a.Segment, got); err != nil {
			t.Fatal(err)
		}
		if i := firstDiff(got, want, tol); i >= 0 {
			t.Fatalf("%s: start of anchor %+v differs from the oracle's at %d: %v vs %v", name, a, i, got[i], want[i])
		}
	}
	t.Logf("%s: %d checkpoints, %d anchor starts, %d backward iterates (%d kept) equal the oracle's", name, len(ks), len(anchors), len(bwd), kept)
}

// firstDiff is the first index where a and b differ: bitwise when tol is 0,
// else by more than tol·(1+|b_i|); -1 when they agree (and have one length).
func firstDiff(a, b []float32, tol float64) int {
	if len(a) != len(b) {
		return 0
	}
	for i := range a {
		if tol == 0 && math.Float32bits(a[i]) != math.Float32bits(b[i]) ||
			math.Abs(float64(a[i])-float64(b[i])) > tol*(1+math.Abs(float64(b[i]))) {
			return i
		}
	}
	return -1
}

func TestEndToEndQuadratic(t *testing.T) {
	h := startHarness(t, openStore(t, t.TempDir()), testOptions())
	st := h.create(api.RunSpec{Preset: "quadratic", Steps: 300, Window: 16})
	if st.Name != "quadratic-1" || st.Spec.LR != 0.1 || st.Spec.Batch != 1 || st.Window != 16 {
		t.Fatalf("created %+v", st)
	}
	st = h.wait(st.Name, ckpt.StateDone)
	if st.ForwardStep != 300 || st.BackwardStep != 300 {
		t.Fatalf("done at forward %d backward %d", st.ForwardStep, st.BackwardStep)
	}
	checkAgainstOracle(t, h, st.Name)

	// Closed form (§3.1): θ̃_n = ρ^n θ0 + ηa Σ_k ρ^{k−1} y_{b_k} under the
	// first anchor, so up to step W. The preset's loss is (θ − y)²/2 (a = 1),
	// so ρ = 1 − η. Tolerance: float32 rounding of at most W = 16 steps of
	// |θ| ≲ 3, far below 1e-5; a wrong batch or order moves θ̃ by ≈ η|Δy|.
	o := newOracle(t, h.store, st.Name)
	bwd := metricsOf(t, h.store, st.Name, "backward", 0)
	b, err := h.store.Batches(st.Name, 1, 16)
	if err != nil {
		t.Fatal(err)
	}
	ys := quadraticTargets(t, o.cfg.Seed)
	eta := o.cfg.LR
	rho := 1 - eta
	for n := 1; n <= 16; n++ {
		want := math.Pow(rho, float64(n)) * float64(o.theta0[0])
		for k := 1; k <= n; k++ {
			want += eta * math.Pow(rho, float64(k-1)) * float64(ys[b[k-1][0]])
		}
		if bwd[n-1].Step != n || bwd[n-1].Anchor != 0 {
			t.Fatalf("backward step %d: %+v, want the first anchor", n, bwd[n-1])
		}
		_, th, err := h.s.Params(context.Background(), st.Name, KindBackward, n)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(float64(th[0])-want) > 1e-5 {
			t.Errorf("θ̃_%d = %v, closed form %v", n, th[0], want)
		}
	}
	if bwd[0].Step != 1 || !sameBits(bwd[0].ParamNorm, norm(o.fwd[1])) {
		t.Fatalf("θ̃_1 ≠ θ_1: %v vs %v", bwd[0].ParamNorm, norm(o.fwd[1]))
	}

	// Trajectory, batches and verify through the API.
	var pts []api.Point
	if err := h.s.Trajectory(context.Background(), st.Name, "both", 1, 10, 2, func(p api.Point) error {
		pts = append(pts, p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(pts) != 10 || pts[0].Kind != "forward" || pts[1].Kind != "backward" || pts[0].Step != 2 || pts[9].Step != 10 {
		t.Fatalf("trajectory: %+v", pts)
	}
	rows, cols, idx, err := h.s.Batches(st.Name)
	if err != nil || rows != 300 || cols != 1 || len(idx) != 300 {
		t.Fatalf("batches: %d×%d (%d) %v", rows, cols, len(idx), err)
	}
	rep, err := h.s.Verify(context.Background(), st.Name)
	if err != nil || !rep.OK {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	// Params: forward at a step between checkpoints, backward recomputed.
	_, th, err := h.s.Params(context.Background(), st.Name, KindForward, 123)
	if err != nil || th[0] != o.fwd[123][0] {
		t.Fatalf("forward params at 123: %v, want %v (%v)", th, o.fwd[123], err)
	}
	s := o.strategy(t)
	want := make([]float32, 1)
	if _, err := s.Backward(want, 123); err != nil {
		t.Fatal(err)
	}
	_, th, err = h.s.Params(context.Background(), st.Name, KindBackward, 123)
	if err != nil || th[0] != want[0] {
		t.Fatalf("backward params at 123: %v, want %v (%v)", th, want, err)
	}
}

func TestQuadraticClosedFormFull(t *testing.T) {
	h := startHarness(t, openStore(t, t.TempDir()), testOptions())
	st := h.create(api.RunSpec{Preset: "quadratic", Name: "q", Steps: 120, Strategy: StrategyFull, Seed: seed(7)})
	h.wait(st.Name, ckpt.StateDone)
	o := newOracle(t, h.store, "q")
	b, err := h.store.Batches("q", 1, 120)
	if err != nil {
		t.Fatal(err)
	}
	// y values: the quadratic data set of the run's seed.
	ys := quadraticTargets(t, 7)
	eta, rho := 0.1, 0.9
	for _, n := range []int{1, 2, 10, 60, 120} {
		want := math.Pow(rho, float64(n)) * float64(o.theta0[0])
		for k := 1; k <= n; k++ {
			want += eta * math.Pow(rho, float64(k-1)) * float64(ys[b[k-1][0]])
		}
		_, th, err := h.s.Params(context.Background(), "q", KindBackward, n)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(float64(th[0])-want) > 1e-5 {
			t.Errorf("θ̃_%d = %v, closed form %v", n, th[0], want)
		}
	}
}

func TestStrategiesAgree(t *testing.T) {
	// A small MLP on regression data: the metamorphic relations of the
	// design (windowed with W ≥ n equals full; sliding with W = n equals
	// full; the coalescence memo equals full bitwise).
	h := startHarness(t, openStore(t, t.TempDir()), testOptions())
	base := api.RunSpec{Dataset: "regression-sin", Model: "mlp:16", Steps: 80, Batch: 5, LR: 0.02, Seed: seed(3), EvalEvery: api.Ptr(7)}
	specs := map[string]api.RunSpec{}
	for _, c := range []struct {
		name, strategy string
		window         int
	}{{"full", StrategyFull, 0}, {"wide", StrategyWindow, 80}, {"sliding", StrategySliding, 80}, {"memo", StrategyMemo, 0}, {"narrow", StrategyWindow, 9}, {"slide9", StrategySliding, 9}} {
		s := base
		s.Name, s.Strategy, s.Window = c.name, c.strategy, c.window
		specs[c.name] = s
		h.create(s)
	}
	for name := range specs {
		h.wait(name, ckpt.StateDone)
		checkAgainstOracle(t, h, name)
	}
	full := metricsOf(t, h.store, "full", "backward", 0)
	for _, name := range []string{"wide", "sliding", "memo"} {
		got := metricsOf(t, h.store, name, "backward", 0)
		for i := range full {
			a, b := full[i], got[i]
			a.Anchor, b.Anchor = 0, 0
			if !sameMetrics(a, b) {
				t.Fatalf("%s differs from full at step %d: %+v vs %+v", name, a.Step, b, a)
			}
		}
	}
	// The forward trajectories are one and the same.
	f1, f2 := metricsOf(t, h.store, "full", "forward", 0), metricsOf(t, h.store, "narrow", "forward", 0)
	for i := range f1 {
		if !sameMetrics(f1[i], f2[i]) {
			t.Fatalf("forward metrics differ at %d", i+1)
		}
	}
}

func TestMemoAffineMatchesFull(t *testing.T) {
	h := startHarness(t, openStore(t, t.TempDir()), testOptions())
	base := api.RunSpec{Dataset: "regression-x2", Model: "linear", Steps: 150, Batch: 4, LR: 0.05, Seed: seed(11)}
	a, b := base, base
	a.Name, a.Strategy = "memo", StrategyMemo
	b.Name, b.Strategy = "full", StrategyFull
	h.create(a)
	h.create(b)
	h.wait("memo", ckpt.StateDone)
	h.wait("full", ckpt.StateDone)
	checkAgainstOracle(t, h, "memo")
	m, f := metricsOf(t, h.store, "memo", "backward", 0), metricsOf(t, h.store, "full", "backward", 0)
	for i := range f {
		if d := math.Abs(m[i].ParamNorm - f[i].ParamNorm); d > 1e-5*(1+f[i].ParamNorm) {
			t.Fatalf("memo and full differ at step %d: %v vs %v", i+1, m[i].ParamNorm, f[i].ParamNorm)
		}
	}
}

func TestResetSemantics(t *testing.T) {
	h := startHarness(t, openStore(t, t.TempDir()), testOptions())
	h.create(api.RunSpec{Preset: "quadratic", Name: "r", Steps: 100, Window: 1000, ResetAt: []int{40}, ResetFrom: FromForward})
	st := h.wait("r", ckpt.StateDone)
	if st.Anchor.Segment != 1 || st.Anchor.Step != 40 || st.Anchor.From != FromForward {
		t.Fatalf("anchor after the configured reset: %+v", st.Anchor)
	}
	checkAgainstOracle(t, h, "r")
	o := newOracle(t, h.store, "r")

	// Errors: beyond the steps, before 1, bad source; a clear ErrInvalid.
	for _, req := range []api.ResetRequest{{At: 101}, {At: 0}, {At: 5, From: "sideways"}} {
		if _, err := h.s.Reset("r", req); !isErr(err, ErrInvalid) {
			t.Errorf("reset %+v: %v, want ErrInvalid", req, err)
		}
	}
	if _, err := h.s.Reset("nope", api.ResetRequest{At: 3}); !isErr(err, ErrNotFound) {
		t.Errorf("reset of an unknown run: %v", err)
	}

	// A reset of the finished run at 70 from the backward iterate reopens it
	// and recomputes 71..100 under segment 2; segment 1's results stay.
	st, err := h.s.Reset("r", api.ResetRequest{At: 70})
	if err != nil {
		t.Fatal(err)
	}
	if st.State != ckpt.StateRunning {
		t.Fatalf("state after a reset of a done run: %s", st.State)
	}
	st = h.wait("r", ckpt.StateDone)
	if st.Anchor.Segment != 2 || st.Anchor.Step != 70 || st.BackwardStep != 100 {
		t.Fatalf("after reset at 70: %+v", st)
	}
	seg1 := metricsOf(t, h.store, "r", "segment", 1)
	if len(seg1) != 60 || seg1[0].Step != 41 || seg1[59].Step != 100 {
		t.Fatalf("segment 1 has %d results", len(seg1))
	}
	seg2 := metricsOf(t, h.store, "r", "segment", 2)
	if len(seg2) != 30 || seg2[0].Step != 71 {
		t.Fatalf("segment 2 has %d results from %d", len(seg2), seg2[0].Step)
	}
	latest := metricsOf(t, h.store, "r", "backward", 0)
	if latest[69].Segment != 1 || latest[70].Segment != 2 || latest[70].Anchor != 70 {
		t.Fatalf("latest results around 70: %+v %+v", latest[69], latest[70])
	}
	// Segment 2 starts at θ̃_70 of segment 1: θ̃_n = T_71∘…∘T_n(θ̃_70).
	x70 := make([]float32, 1)
	s := o.strategy(t)
	if _, err := s.Backward(x70, 70); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{71, 85, 100} {
		th := append([]float32(nil), x70...)
		for k := n; k > 70; k-- {
			o.sgd.Apply(k, th)
		}
		_, got, err := h.s.Params(context.Background(), "r", KindBackward, n)
		if err != nil || got[0] != th[0] {
			t.Fatalf("θ̃_%d after the reset: %v, want %v (%v)", n, got, th, err)
		}
	}
	// Earlier segments stay queryable: segment 1 at 90 still answers.
	if seg1[49].Step != 90 {
		t.Fatal("segment 1 lost step 90")
	}
}

func TestScheduledReset(t *testing.T) {
	h := startHarness(t, openStore(t, t.TempDir()), testOptions())
	h.create(api.RunSpec{Dataset: "regression-sin", Model: "mlp:32x2", Name: "s", Steps: 400, Batch: 10, Window: 64, Seed: seed(5)})
	if _, err := h.s.Pause("s"); err != nil {
		t.Fatal(err)
	}
	st, _ := h.s.Status("s")
	at := st.ForwardStep + 50
	st, err := h.s.Reset("s", api.ResetRequest{At: at, From: FromForward})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.PendingReset) != 1 || st.PendingReset[0] != at {
		t.Fatalf("pending resets %v, want [%d]", st.PendingReset, at)
	}
	if !strings.Contains(h.events.String(), fmt.Sprintf("reset-requested at=%d from=forward when=scheduled", at)) {
		t.Fatalf("events: %s", h.events.String())
	}
	if _, err := h.s.Resume("s"); err != nil {
		t.Fatal(err)
	}
	st = h.wait("s", ckpt.StateDone)
	if len(st.PendingReset) != 0 {
		t.Fatalf("pending after done: %v", st.PendingReset)
	}
	as, err := h.store.Anchors("s")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range as {
		found = found || a.Step == at && a.From == FromForward
	}
	if !found {
		t.Fatalf("no forward anchor at %d in %+v", at, as)
	}
}

func TestDivergenceFailsOnlyThatRun(t *testing.T) {
	h := startHarness(t, openStore(t, t.TempDir()), testOptions())
	// ρ = 1 − ηa = −1.5: |θ| grows like 1.5^n and overflows float32.
	h.create(api.RunSpec{Preset: "quadratic", Name: "bad", Steps: 600, LR: 2.5})
	h.create(api.RunSpec{Preset: "quadratic", Name: "good", Steps: 300})
	st := h.wait("bad", ckpt.StateFailed)
	if !strings.Contains(st.Reason, "not finite") && !strings.Contains(st.Reason, "loss is") {
		t.Fatalf("reason %q", st.Reason)
	}
	_, rs, err := h.store.Run("bad")
	if err != nil || rs.FailedStep < 100 || rs.FailedStep > 300 {
		t.Fatalf("failed step %d (%v)", rs.FailedStep, err)
	}
	h.wait("good", ckpt.StateDone)
	if _, err := h.s.Resume("bad"); !isErr(err, ErrConflict) {
		t.Fatalf("resume of a failed run: %v", err)
	}
	if _, err := h.s.Reset("bad", api.ResetRequest{At: 3}); !isErr(err, ErrConflict) {
		t.Fatalf("reset of a failed run: %v", err)
	}
	if !strings.Contains(h.events.String(), "run=bad event=failed step=") {
		t.Fatalf("no failure event: %s", h.events.String())
	}
}

// TestResumeBitwise stops the scheduler (and closes the store) three times
// (twice with -short, which the race run of make test uses) at random
// points of a run and checks that every stored metric, the
// anchors and the final parameters equal those of an uninterrupted run, bit
// for bit.
func TestResumeBitwise(t *testing.T) {
	cases := []api.RunSpec{
		{Dataset: "regression-sin", Model: "mlp:64x2", Steps: 300, Batch: 10, LR: 0.001, Window: 48, ResetAt: []int{130}, ResetFrom: FromForward, CheckpointEvery: 20},
		{Dataset: "regression-sin", Model: "mlp:32", Steps: 260, Batch: 10, Strategy: StrategyFull, ResetPolicy: PolicyImprove, ResetAt: []int{100, 180}, ResetHorizon: 12, CheckpointEvery: 30},
		{Dataset: "regression-sin", Model: "mlp:48", Steps: 260, Batch: 10, Window: 40, ResetPolicy: PolicyImprove, ResetHorizon: 8},
		{Dataset: "regression-x2", Model: "linear", Steps: 300, Batch: 5, Strategy: StrategyMemo, ResetAt: []int{150}},
		{Dataset: "regression-abs", Model: "mlp:32", Steps: 240, Batch: 10, Strategy: StrategyMemo},
		{Dataset: "regression-sin", Model: "mlp:48", Steps: 240, Batch: 10, Strategy: StrategySliding, Window: 30, BackwardFrom: api.Ptr(25)},
	}
	// The seed fixes the backward frontiers at which the runs are stopped;
	// each case draws from its own stream, so that one case run alone
	// (-run 'TestResumeBitwise/^3-') stops where it did in the full run.
	rs := testseed.Seed(t)
	interruptions := 3
	if testing.Short() {
		interruptions = 2
	}
	for i, spec := range cases {
		spec.Name = "run"
		spec.Seed = seed(uint64(i + 1))
		t.Run(fmt.Sprintf("%d-%s", i, spec.Strategy), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(rs, uint64(i)))
			// Uninterrupted reference.
			ref := startHarness(t, openStore(t, t.TempDir()), testOptions().WithMaxLag(40))
			ref.create(spec)
			ref.wait("run", ckpt.StateDone)
			ref.stop()

			dir := t.TempDir()
			store := openStore(t, dir)
			h := startHarness(t, store, testOptions().WithMaxLag(40))
			h.create(spec)
			for k := range interruptions {
				target := rng.IntN(spec.Steps)
				h.waitUntil(fmt.Sprintf("backward step %d", target), func(st api.RunStatus) bool {
					return st.BackwardStep >= target || st.State != ckpt.StateRunning
				}, "run")
				h.stop()
				st, _ := h.s.Status("run")
				t.Logf("interruption %d (target backward step %d) at forward %d backward %d (%s)", k, target, st.ForwardStep, st.BackwardStep, st.State)
				if err := store.Close(); err != nil {
					t.Fatal(err)
				}
				store = openStore(t, dir)
				h = startHarness(t, store, testOptions().WithMaxLag(40).WithWorkers(1+k%2))
			}
			h.wait("run", ckpt.StateDone)
			compareRuns(t, ref, h, "run")
			h.stop()
			if err := store.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func compareRuns(t *testing.T, a, b *harness, name string) {
	t.Helper()
	for _, kind := range []string{"forward", "backward"} {
		ma, mb := metricsOf(t, a.store, name, kind, 0), metricsOf(t, b.store, name, kind, 0)
		if len(ma) != len(mb) {
			t.Fatalf("%s: %d vs %d metrics", kind, len(ma), len(mb))
		}
		for i := range ma {
			if !sameMetrics(ma[i], mb[i]) {
				t.Fatalf("%s step %d: %+v vs %+v", kind, ma[i].Step, ma[i], mb[i])
			}
		}
	}
	aa, err := a.store.Anchors(name)
	if err != nil {
		t.Fatal(err)
	}
	ab, err := b.store.Anchors(name)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(aa) != fmt.Sprint(ab) {
		t.Fatalf("anchors %v vs %v", aa, ab)
	}
	for seg := range aa {
		sa, sb := metricsOf(t, a.store, name, "segment", seg), metricsOf(t, b.store, name, "segment", seg)
		if len(sa) != len(sb) {
			t.Fatalf("segment %d: %d vs %d results", seg, len(sa), len(sb))
		}
		for i := range sa {
			if !sameMetrics(sa[i], sb[i]) {
				t.Fatalf("segment %d step %d: %+v vs %+v", seg, sa[i].Step, sa[i], sb[i])
			}
		}
	}
	st, err := a.s.Status(name)
	if err != nil {
		t.Fatal(err)
	}
	if sb, err := b.s.Status(name); err != nil || sb.ForwardStep != st.ForwardStep || sb.BackwardStep != st.BackwardStep || sb.Steps != st.Steps {
		t.Fatalf("status %+v vs %+v (%v)", st, sb, err)
	}
	for _, kind := range []string{KindForward, KindBackward} {
		_, pa, err := a.s.Params(context.Background(), name, kind, st.Steps)
		if err != nil {
			t.Fatal(err)
		}
		_, pb, err := b.s.Params(context.Background(), name, kind, st.Steps)
		if err != nil {
			t.Fatal(err)
		}
		for i := range pa {
			if math.Float32bits(pa[i]) != math.Float32bits(pb[i]) {
				t.Fatalf("final %s parameters differ at %d", kind, i)
			}
		}
	}
}

// TestResetTimingIndependent requests the same manual reset at different
// moments (after the run finished; mid-run behind the frontier, followed
// by interruptions): the stored trajectories agree bit for bit except for
// segment numbers, which count the superseded segments too.
func TestResetTimingIndependent(t *testing.T) {
	spec := api.RunSpec{Name: "run", Dataset: "regression-sin", Model: "mlp:32", Steps: 300, Batch: 10, LR: 0.002, Window: 32, Seed: seed(9), ResetFrom: FromForward}
	reset := api.ResetRequest{At: 100, From: FromForward}

	ref := startHarness(t, openStore(t, t.TempDir()), testOptions())
	ref.create(spec)
	ref.wait("run", ckpt.StateDone)
	if _, err := ref.s.Reset("run", reset); err != nil {
		t.Fatal(err)
	}
	ref.wait("run", ckpt.StateDone)

	dir := t.TempDir()
	store := openStore(t, dir)
	h := startHarness(t, store, testOptions())
	h.create(spec)
	h.waitUntil("backward step 150", func(st api.RunStatus) bool { return st.BackwardStep >= 150 }, "run")
	if _, err := h.s.Reset("run", reset); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		h.waitUntil("backward step 180", func(st api.RunStatus) bool {
			return st.BackwardStep >= 180 || st.State != ckpt.StateRunning
		}, "run")
		h.stop()
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
		store = openStore(t, dir)
		h = startHarness(t, store, testOptions())
	}
	h.wait("run", ckpt.StateDone)
	for _, kind := range []string{"forward", "backward"} {
		a, b := metricsOf(t, ref.store, "run", kind, 0), metricsOf(t, h.store, "run", kind, 0)
		if len(a) != len(b) {
			t.Fatalf("%s: %d vs %d", kind, len(a), len(b))
		}
		for i := range a {
			a[i].Segment, b[i].Segment = 0, 0
			if !sameMetrics(a[i], b[i]) {
				t.Fatalf("%s step %d: %+v vs %+v", kind, a[i].Step, a[i], b[i])
			}
		}
	}
	// And both equal the oracle with the reset configured from the start
	// (every anchor from the forward iterate, as replay.Config has one
	// source for all anchors).
	o := newOracle(t, h.store, "run")
	o.cfg.ResetAt, o.cfg.ResetFrom = []int{100}, FromForward
	s := o.strategy(t)
	dst := make([]float32, o.cfg.Dim)
	for _, m := range metricsOf(t, h.store, "run", "backward", 0) {
		res, err := s.Backward(dst, m.Step)
		if err != nil {
			t.Fatal(err)
		}
		if m.Anchor != res.Anchor || !sameBits(m.ParamNorm, norm(dst)) {
			t.Fatalf("step %d: stored %+v, oracle anchor %d norm %v", m.Step, m, res.Anchor, norm(dst))
		}
	}
	h.stop()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestFashionMNISTSmall runs a small classifier on the real data set:
// cross-entropy, accuracies, and replay.Direct recomputations from the
// stored anchors.
func TestFashionMNISTSmall(t *testing.T) {
	h := startHarness(t, openStore(t, t.TempDir()), testOptions())
	h.create(api.RunSpec{Name: "f", Dataset: "fashion-mnist", Model: "mlp:32", Steps: 60, Window: 16, Batch: 8, LR: 0.01, EvalSize: api.Ptr(200), EvalEvery: api.Ptr(5)})
	st := h.wait("f", ckpt.StateDone)
	if st.Spec.Loss != "cross-entropy" || st.ForwardLoss == nil || st.BackwardLoss == nil {
		t.Fatalf("status %+v", st)
	}
	checkAgainstOracle(t, h, "f")
	var evals int
	err := h.s.Trajectory(context.Background(), "f", "backward", 0, 0, 0, func(p api.Point) error {
		if p.Step%5 == 0 {
			evals++
			if !(p.TestAcc >= 0 && p.TestAcc <= 1) || !(p.Loss > 0) {
				return fmt.Errorf("step %d: loss %v acc %v", p.Step, p.Loss, p.TestAcc)
			}
		} else if !math.IsNaN(p.Loss) {
			return fmt.Errorf("step %d: loss measured off the evaluation steps", p.Step)
		}
		return nil
	})
	if err != nil || evals != 12 {
		t.Fatalf("trajectory: %d evaluations, %v", evals, err)
	}
	// replay.Direct from the stored anchor start of each result's segment.
	o := newOracle(t, h.store, "f")
	direct := replay.NewDirect(o.sgd)
	bwd := metricsOf(t, h.store, "f", "backward", 0)
	for _, n := range []int{1, 16, 17, 40, 60} {
		m := bwd[n-1]
		start := make([]float32, o.cfg.Dim)
		if err := h.store.AnchorStart("f", m.Segment, start); err != nil {
			t.Fatal(err)
		}
		want := make([]float32, o.cfg.Dim)
		if _, err := direct.Eval(context.Background(), want, replay.Anchor{Step: m.Anchor, Start: start}, n); err != nil {
			t.Fatal(err)
		}
		_, got, err := h.s.Params(context.Background(), "f", KindBackward, n)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if math.Float32bits(want[i]) != math.Float32bits(got[i]) {
				t.Fatalf("θ̃_%d differs from replay.Direct at %d", n, i)
			}
		}
	}
}

// TestCrashAfterResetAnchor builds by hand the store a crash leaves between
// storing a manual reset's anchor and the state that applies it (the reset
// still pending, the frontier not moved back), and checks that the resumed
// run ends exactly as one whose reset went through.
func TestCrashAfterResetAnchor(t *testing.T) {
	spec := api.RunSpec{Name: "run", Dataset: "regression-sin", Model: "mlp:16", Steps: 120, Batch: 10, LR: 0.002, Window: 30, Seed: seed(4)}
	reset := api.ResetRequest{At: 50, From: FromBackward}

	ref := startHarness(t, openStore(t, t.TempDir()), testOptions())
	ref.create(spec)
	ref.wait("run", ckpt.StateDone)
	if _, err := ref.s.Reset("run", reset); err != nil {
		t.Fatal(err)
	}
	ref.wait("run", ckpt.StateDone)

	store := openStore(t, t.TempDir())
	h := startHarness(t, store, testOptions())
	h.create(spec)
	h.wait("run", ckpt.StateDone)
	h.stop()
	// The crash: anchor of the next segment at 50 (θ̃_50 of the lineage),
	// state running with the reset pending and the frontier still at 120.
	as, err := store.Anchors("run")
	if err != nil {
		t.Fatal(err)
	}
	o := newOracle(t, store, "run")
	s := o.strategy(t)
	x := make([]float32, o.cfg.Dim)
	if _, err := s.Backward(x, 50); err != nil {
		t.Fatal(err)
	}
	if err := store.PutAnchor("run", ckpt.AnchorRec{Segment: len(as), Step: 50, From: FromBackward}, x); err != nil {
		t.Fatal(err)
	}
	_, st, err := store.Run("run")
	if err != nil {
		t.Fatal(err)
	}
	st.State = ckpt.StateRunning
	st.PendingResets = []ckpt.Reset{{Step: 50, From: FromBackward}}
	if err := store.PutState("run", st); err != nil {
		t.Fatal(err)
	}
	h = startHarness(t, store, testOptions())
	got := h.wait("run", ckpt.StateDone)
	if len(got.PendingReset) != 0 || got.Anchor.Step != 110 {
		t.Fatalf("after recovery: %+v", got)
	}
	compareRuns(t, ref, h, "run")
}
