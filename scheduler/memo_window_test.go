package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
)

// memoTol bounds |memo − window| / (1 + |window|) for the scalar quadratic
// (ρ = 1 − ηa = 0.9). Window applies each T_k in float32: each application
// rounds once or twice (unit roundoff u = 2⁻²⁴ ≈ 6e-8), so a segment of at
// most W = 16 applications carries at most ≈ 2·16·u ≈ 2e-6 relative error;
// the affine prefix composes in float64 and rounds once, at the end (u).
// A start from the backward iterate carries the previous segment's error
// into the next, contracted by ρ^16 ≈ 0.19, so the errors sum to at most
// 1/(1 − 0.19) ≈ 1.23 times one segment's. Forward starts are bitwise the
// same in both runs. 1e-5 (the bound replay's memo tests use) holds with a
// margin of 4.
const memoTol = 1e-5

// TestMemoMovesAnchorsAsWindow is defect 2 of issue 9: with strategy memo
// the anchor stayed at 0 whatever the window. Memo must move its anchors
// exactly as window does — periodic resets from the backward or the forward
// iterate, manual resets, backward_from, adaptive trials — with iterates
// equal to window's within memoTol.
func TestMemoMovesAnchorsAsWindow(t *testing.T) {
	h := startHarness(t, openStore(t, t.TempDir()), testOptions())
	cases := []api.RunSpec{
		{Preset: "quadratic", Steps: 100, Window: 16},
		{Preset: "quadratic", Steps: 100, Window: 16, ResetFrom: FromForward, ResetAt: []int{40}},
		{Preset: "quadratic", Steps: 60, Window: 10, ResetPolicy: PolicyImprove, ResetHorizon: 5, ResetAt: []int{33}, ResetFrom: FromForward},
		{Preset: "quadratic", Steps: 90, Window: 16},
	}
	backwardFrom := []int{0, 0, 0, 20}
	setBackwardFrom(t, &cases[3], backwardFrom[3])
	for i, spec := range cases {
		for _, s := range []string{StrategyWindow, StrategyMemo} {
			sp := spec
			sp.Name, sp.Strategy = fmt.Sprintf("%s-%d", s, i), s
			h.create(sp)
		}
	}
	for i, spec := range cases {
		win, memo := fmt.Sprintf("window-%d", i), fmt.Sprintf("memo-%d", i)
		h.wait(win, ckpt.StateDone)
		h.wait(memo, ckpt.StateDone)
		wa, ma := anchorsOf(t, h.store, win), anchorsOf(t, h.store, memo)
		if !slices.Equal(wa, ma) {
			t.Errorf("case %d: memo anchors %v, window anchors %v", i, ma, wa)
		}
		if i == 0 {
			want := []string{"0@0/init"}
			for r := 16; r < 100; r += 16 {
				want = append(want, fmt.Sprintf("%d@%d/backward", len(want), r))
			}
			if !slices.Equal(ma, want) {
				t.Errorf("memo, window 16, 100 steps: anchors %v, want %v", ma, want)
			}
		}
		wm, mm := metricsOf(t, h.store, win, "backward", 0), metricsOf(t, h.store, memo, "backward", 0)
		if len(wm) != len(mm) || len(wm) != spec.Steps-backwardFrom[i] {
			t.Fatalf("case %d: %d memo and %d window backward results", i, len(mm), len(wm))
		}
		for k := range wm {
			w, m := wm[k], mm[k]
			if w.Step != m.Step || w.Anchor != m.Anchor || w.Segment != m.Segment {
				t.Fatalf("case %d step %d: memo under anchor %d (segment %d), window under %d (segment %d)",
					i, w.Step, m.Anchor, m.Segment, w.Anchor, w.Segment)
			}
		}
		// The iterates themselves (not only norms): every backward
		// parameter vector.
		for n := backwardFrom[i] + 1; n <= spec.Steps; n++ {
			_, tw, err := h.s.Params(context.Background(), win, KindBackward, n)
			if err != nil {
				t.Fatal(err)
			}
			_, tm, err := h.s.Params(context.Background(), memo, KindBackward, n)
			if err != nil {
				t.Fatal(err)
			}
			if d := math.Abs(float64(tm[0]) - float64(tw[0])); d > memoTol*(1+math.Abs(float64(tw[0]))) {
				t.Fatalf("case %d step %d: memo θ̃ %v, window %v (|Δ| %g)", i, n, tm[0], tw[0], d)
			}
		}
		for k := range wm {
			w, m := wm[k].ParamNorm, mm[k].ParamNorm
			if math.Abs(m-w) > memoTol*(1+w) {
				t.Fatalf("case %d step %d: stored memo norm %v, window %v", i, wm[k].Step, m, w)
			}
		}
	}
	// The adaptive decisions are the same (the losses agree to rounding).
	decisions := func(run string) []string {
		var out []string
		for _, l := range strings.Split(h.events.String(), "\n") {
			if strings.HasPrefix(l, "run="+run+" event=adaptive") {
				f := strings.Fields(l)
				out = append(out, strings.Join(f[2:5], " "))
			}
		}
		return out
	}
	if w, m := decisions("window-2"), decisions("memo-2"); len(w) == 0 || !slices.Equal(w, m) {
		t.Errorf("adaptive decisions: memo %v, window %v", m, w)
	}
}

// anchorsOf lists a run's anchors as "segment@step/from".
func anchorsOf(t *testing.T, store *ckpt.Store, name string) []string {
	t.Helper()
	as, err := store.Anchors(name)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(as, func(x, y ckpt.AnchorRec) int { return x.Segment - y.Segment })
	var out []string
	for _, a := range as {
		out = append(out, fmt.Sprintf("%d@%d/%s", a.Segment, a.Step, a.From))
	}
	return out
}

// TestMemoWindowResumeBitwise: memo runs with periodic resets, adaptive
// trials and forward starts, stopped (and the store closed) three times at
// random frontiers, end bitwise identical to uninterrupted runs: the
// memoized evaluators (the affine prefix and the coalescence memo) give the
// same bits whether they continue or start over after a restart.
func TestMemoWindowResumeBitwise(t *testing.T) {
	cases := []api.RunSpec{
		{Dataset: "regression-x2", Model: "linear", Steps: 200, Batch: 5, Strategy: StrategyMemo, Window: 40, ResetPolicy: PolicyImprove, ResetHorizon: 8},
		{Dataset: "regression-abs", Model: "mlp:16", Steps: 160, Batch: 10, Strategy: StrategyMemo, Window: 30, ResetAt: []int{70}, ResetFrom: FromForward},
	}
	rs := uint64(rand.Uint32())
	t.Logf("interruption seed %d", rs)
	rng := rand.New(rand.NewPCG(rs, 2))
	for i, spec := range cases {
		spec.Name, spec.Seed = "run", seed(uint64(i+5))
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			ref := startHarness(t, openStore(t, t.TempDir()), testOptions().WithMaxLag(40))
			ref.create(spec)
			ref.wait("run", ckpt.StateDone)
			ref.stop()

			dir := t.TempDir()
			store := openStore(t, dir)
			h := startHarness(t, store, testOptions().WithMaxLag(40))
			h.create(spec)
			for k := range 3 {
				target := rng.IntN(spec.Steps)
				deadline := time.Now().Add(3 * time.Minute)
				for {
					st, _ := h.s.Status("run")
					if st.BackwardStep >= target || st.State != ckpt.StateRunning {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("frontier %d not reached: %+v", target, st)
					}
					time.Sleep(time.Millisecond)
				}
				h.stop()
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

// setBackwardFrom sets spec's backward_from through its JSON form, so that
// the test does not depend on how api.RunSpec spells an optional number.
func setBackwardFrom(t *testing.T, spec *api.RunSpec, n int) {
	t.Helper()
	if err := json.Unmarshal(fmt.Appendf(nil, `{"backward_from":%d}`, n), spec); err != nil {
		t.Fatal(err)
	}
}
