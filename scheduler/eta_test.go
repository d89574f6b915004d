package scheduler

import (
	"testing"

	"github.com/replay-sgd/replay/ckpt"
)

// TestRemainingOps checks the ETA's cost model against sums done by hand:
// full costs n at step n, window W restarts the count every W steps, a
// pending reset restarts it at its step, sliding costs min(n, W).
func TestRemainingOps(t *testing.T) {
	cases := []struct {
		name     string
		strategy string
		window   int
		frontier int
		anchor   int
		resets   []int
		want     float64
	}{
		{"full", StrategyFull, 4, 0, 0, nil, 55},                    // 1+…+10
		{"full from 7", StrategyFull, 4, 7, 0, nil, 27},             // 8+9+10
		{"full reset at 5", StrategyFull, 4, 0, 0, []int{5}, 30},    // (1+…+5) + (1+…+5)
		{"window", StrategyWindow, 4, 0, 0, nil, 23},                // 1,2,3,4,1,2,3,4,1,2
		{"window mid", StrategyWindow, 4, 5, 4, nil, 12},            // n=6..10 under anchors 4, 8: 2,3,4,1,2
		{"window reset", StrategyWindow, 4, 0, 0, []int{2}, 23},     // anchors 0,2,6: 1,2,1,2,3,4,1,2,3,4
		{"sliding", StrategySliding, 4, 0, 0, nil, 1 + 2 + 3 + 4*7}, // min(n, 4)
		{"memo", StrategyMemo, 4, 6, 0, nil, 4 * 2.5},               // observed mean × steps left
	}
	for _, c := range cases {
		cfg := ckpt.RunConfig{Strategy: c.strategy, Window: c.window, Steps: 10, ResetFrom: FromBackward, ResetPolicy: PolicyFixed}
		st := ckpt.RunState{BackwardStep: c.frontier}
		for _, p := range c.resets {
			st.PendingResets = append(st.PendingResets, ckpt.Reset{Step: p, From: FromBackward})
		}
		if got := remainingOps(cfg, st, c.anchor, 2.5); got != c.want {
			t.Errorf("%s: remainingOps = %g, want %g", c.name, got, c.want)
		}
	}
}

// TestRemainingOpsAfterRejection: under reset_policy improve, a rejected
// trial leaves the old anchor in place and the next trial comes W steps
// later. Anchor 0, W = 10, horizon 5, 40 steps, frontier 25 after the
// trials at 10 and 20 were rejected: steps 26..30 under anchor 0 (140), the
// trial at 30 with its old side 31..35 under 0 (165), then 31..40 under 30
// (55). Before the anchor policy, the ETA moved the anchor to 25 at once
// (70).
func TestRemainingOpsAfterRejection(t *testing.T) {
	cfg := ckpt.RunConfig{Strategy: StrategyWindow, Window: 10, Steps: 40, ResetFrom: FromBackward, ResetPolicy: PolicyImprove, ResetHorizon: 5}
	st := ckpt.RunState{BackwardStep: 25}
	if got, want := remainingOps(cfg, st, 0, 0), 140.0+165+55; got != want {
		t.Errorf("remainingOps after rejections = %g, want %g", got, want)
	}
}

// TestFlightLimit: a backward loop alone may fill its whole window of jobs;
// beside others it keeps at most its share of the workers, and never less
// than one job.
func TestFlightLimit(t *testing.T) {
	s := &Scheduler{opts: DefaultOptions().WithFamilies(testFamilies...).WithWorkers(4)}
	b := &bwdLoop{s: s, maxFlight: 8}
	for _, c := range []struct{ loops, want int }{{1, 8}, {2, 2}, {3, 1}, {4, 1}, {9, 1}} {
		s.loops.Store(int32(c.loops))
		if got := b.flightLimit(); got != c.want {
			t.Errorf("4 workers, %d loops: limit %d, want %d", c.loops, got, c.want)
		}
	}
	b.maxFlight = 1 // memo: sequential whatever the share
	s.loops.Store(1)
	if got := b.flightLimit(); got != 1 {
		t.Errorf("memo alone: limit %d, want 1", got)
	}
}
