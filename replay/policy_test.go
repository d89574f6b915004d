package replay_test

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/replay"
	"github.com/replay-sgd/replay/replay/replaytest"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the golden files in testdata/")

func TestAnchorRuleNext(t *testing.T) {
	for _, c := range []struct {
		rule     replay.AnchorRule
		a, after int
		resets   []int
		want     int
		why      string
	}{
		{replay.AnchorRule{}, 0, 0, nil, -1, "no window, no reset: anchor 0 for ever"},
		{replay.AnchorRule{}, 0, 0, []int{7}, 7, "a manual reset"},
		{replay.AnchorRule{}, 7, 7, []int{7}, -1, "a reset at the anchor itself is behind"},
		{replay.AnchorRule{Window: 5}, 0, 0, nil, 5, "every W steps"},
		{replay.AnchorRule{Window: 5}, 5, 5, nil, 10, "from the anchor"},
		{replay.AnchorRule{Window: 5}, 0, 4, nil, 5, "due at 5 when asked before it"},
		{replay.AnchorRule{Window: 5}, 0, 5, nil, 10, "a rejected move at 5 is tried at 10"},
		{replay.AnchorRule{Window: 5}, 0, 12, nil, 15, "… and at 15"},
		{replay.AnchorRule{Window: 5}, 0, 0, []int{3}, 3, "a manual reset before the window's"},
		{replay.AnchorRule{Window: 5}, 0, 3, []int{3}, 5, "after it, the window's"},
		{replay.AnchorRule{Window: 5, Steps: 10}, 5, 5, nil, -1, "no periodic reset at the last step"},
		{replay.AnchorRule{Window: 5, Steps: 10}, 5, 5, []int{10}, 10, "but a manual one"},
		{replay.AnchorRule{Window: 1}, 0, 0, nil, 1, "W = 1"},
	} {
		if got := c.rule.Next(c.a, c.after, c.resets); got != c.want {
			t.Errorf("%+v.Next(%d, %d, %v) = %d, want %d (%s)", c.rule, c.a, c.after, c.resets, got, c.want, c.why)
		}
	}
}

// TestWindowedFollowsRule: Windowed's anchors are the rule's, applied in
// turn: 0, W, 2W, … with the manual resets in between.
func TestWindowedFollowsRule(t *testing.T) {
	rng := newRand(t)
	f := replaytest.NewQuadraticFamily(rng, 50, 1, 0.1, 100)
	for _, cfg := range []replay.Config{{Window: 1}, {Window: 3}, {Window: 7, ResetAt: []int{12, 40, 41}}, {Window: 100}, {ResetAt: []int{9}}} {
		s := mustWindowed(t, f, cfg)
		rule := replay.AnchorRule{Window: cfg.Window}
		resets := slices.Sorted(slices.Values(cfg.ResetAt))
		r := 0
		dst := make([]float32, 1)
		for n := 1; n <= 100; n++ {
			if m := rule.Next(r, r, resets); m >= 0 && m < n {
				r = m
			}
			res, err := s.Backward(dst, n)
			if err != nil {
				t.Fatal(err)
			}
			if res.Anchor != r {
				t.Fatalf("%+v step %d: strategy anchor %d, rule %d", cfg, n, res.Anchor, r)
			}
		}
	}
}

// driver executes a Policy's actions the way the scheduler does, with a
// fake executor: jobs are completed newest first (so results arrive out of
// order and must be reordered), trials are decided from a script, and
// events can be injected when the frontier reaches a step. Every event and
// every action goes to the log.
type driver struct {
	t     *testing.T
	p     *replay.Policy
	cfg   replay.PolicyConfig
	log   strings.Builder
	limit int
	chunk int // forward steps logged per "hungry" wait

	forward  int
	flight   []job
	gen      int
	buf      map[[2]int]bool // (side, step) received, not committed
	trial    *replay.Action
	done     [2]int // trial: last step committed per side
	decide   []bool // trial decisions, in order
	at       map[int][]replay.Reset
	anchors  []replay.AnchorRef
	commits  map[int]int // step → anchor step of the committed result
	maxSteps int
}

type job struct {
	a   replay.Action
	gen int
}

func newDriver(t *testing.T, cfg replay.PolicyConfig) *driver {
	d := &driver{
		t: t, cfg: cfg, limit: 2, chunk: 7, buf: map[[2]int]bool{}, at: map[int][]replay.Reset{},
		commits: map[int]int{}, maxSteps: 100000,
	}
	d.p = replay.NewPolicy(cfg, replay.AnchorRef{Segment: 0, Step: 0, From: replay.SourceInit}, 1, 0)
	d.anchors = []replay.AnchorRef{d.p.Anchor()}
	return d
}

func (d *driver) logf(format string, a ...any) { fmt.Fprintf(&d.log, format+"\n", a...) }

func (d *driver) run() {
	var pending []replay.Reset
	for i := 0; ; i++ {
		if i > d.maxSteps {
			d.t.Fatalf("policy does not finish:\n%s", d.log.String())
		}
		for _, k := range slices.Sorted(maps.Keys(d.at)) {
			if k <= d.p.Frontier() {
				rs := d.at[k]
				delete(d.at, k)
				pending = append(pending, rs...)
				d.p.SetPending(pending)
				d.logf("event reset-requested %v", rs)
			}
		}
		a := d.p.Next(d.limit)
		switch a.Kind {
		case replay.ActDone:
			d.logf("%s", a)
			return
		case replay.ActDispatch:
			d.logf("%s", a)
			d.p.Advance(a)
			d.flight = append(d.flight, job{a, d.gen})
		case replay.ActMove:
			d.logf("%s", a)
			d.p.Advance(a)
			d.anchors = append(d.anchors, a.Anchor)
			pending = drop(pending, a.Manual)
		case replay.ActTrial:
			d.logf("%s", a)
			d.p.Advance(a)
			d.trial = &a
			d.done = [2]int{a.Anchor.Step, a.Anchor.Step}
		case replay.ActRollback:
			d.logf("%s", a)
			d.p.Advance(a)
			d.gen++
			clear(d.buf)
			d.trial = nil
		case replay.ActWait:
			switch {
			case len(d.flight) > 0:
				j := d.flight[len(d.flight)-1]
				d.flight = d.flight[:len(d.flight)-1]
				d.p.Received()
				if j.gen != d.gen {
					d.logf("event received step=%d stale", j.a.Step)
					continue
				}
				d.logf("event received step=%d side=%d", j.a.Step, j.a.Side)
				d.buf[[2]int{j.a.Side, j.a.Step}] = true
				pending = d.commit(pending)
			case a.Hungry && d.forward < d.cfg.Steps:
				d.forward = min(d.cfg.Steps, d.forward+d.chunk)
				d.p.Logged(d.forward)
				d.logf("event logged forward=%d", d.forward)
			default:
				d.t.Fatalf("policy waits for nothing (%s):\n%s", d.p, d.log.String())
			}
		}
	}
}

func drop(rs []replay.Reset, m *replay.Reset) []replay.Reset {
	if m == nil {
		return rs
	}
	if i := slices.Index(rs, *m); i >= 0 {
		return slices.Delete(rs, i, i+1)
	}
	return rs
}

// commit moves the results that continue the frontier (or a trial side's
// chain) out of the reorder buffer, as the scheduler's committer does.
func (d *driver) commit(pending []replay.Reset) []replay.Reset {
	if t := d.trial; t != nil {
		for i := range 2 {
			for d.buf[[2]int{i + 1, d.done[i] + 1}] {
				delete(d.buf, [2]int{i + 1, d.done[i] + 1})
				d.done[i]++
			}
		}
		end := t.Anchor.Step + t.Horizon
		if d.done[0] < end || d.done[1] < end {
			return pending
		}
		if len(d.decide) == 0 {
			d.t.Fatalf("no decision scripted for the trial at %d", t.Anchor.Step)
		}
		keep := d.decide[0]
		d.decide = d.decide[1:]
		old := d.p.Anchor()
		mv, kept := d.p.Decide(keep)
		d.logf("event decided keep=%v", keep)
		a := old
		if kept {
			d.anchors = append(d.anchors, mv.Anchor)
			a = mv.Anchor
		}
		for n := t.Anchor.Step + 1; n <= end; n++ {
			d.commits[n] = a.Step
		}
		d.trial = nil
		return drop(pending, mv.Manual)
	}
	for n := d.p.Frontier() + 1; d.buf[[2]int{0, n}]; n++ {
		delete(d.buf, [2]int{0, n})
		d.p.Committed(n)
		d.commits[n] = d.p.Anchor().Step
	}
	return pending
}

func checkPolicyGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *rewrite {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -rewrite to create it)", err)
	}
	if string(want) != got {
		t.Errorf("action log differs from %s (rerun with -rewrite and review the diff):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// TestPolicyGolden: (event, action) logs of the policy for the cases the
// scheduler meets. Review every diff of testdata/policy-*.golden.
func TestPolicyGolden(t *testing.T) {
	cases := []struct {
		name   string
		cfg    replay.PolicyConfig
		at     map[int][]replay.Reset
		decide []bool
		// anchors: the steps of the anchors moved to, in order.
		anchors []int
	}{
		{name: "window", cfg: replay.PolicyConfig{Steps: 20, Window: 6}, anchors: []int{0, 6, 12, 18}},
		{name: "full-manual", cfg: replay.PolicyConfig{Steps: 16},
			at:      map[int][]replay.Reset{0: {{Step: 5, From: replay.SourceForward}}, 12: {{Step: 8, From: replay.SourceBackward}}, 14: {{Step: 14, From: replay.SourceBackward}}},
			anchors: []int{0, 5, 8, 14}},
		{name: "window-manual-ahead-behind", cfg: replay.PolicyConfig{Steps: 24, Window: 10, From: replay.SourceForward},
			at:      map[int][]replay.Reset{3: {{Step: 7, From: replay.SourceBackward}}, 20: {{Step: 4, From: replay.SourceForward}}},
			anchors: []int{0, 7, 17, 4, 14}},
		{name: "backward-from", cfg: replay.PolicyConfig{Steps: 20, Window: 5, BackwardFrom: 9}, anchors: []int{0, 9, 14, 19}},
		{name: "improve", cfg: replay.PolicyConfig{Steps: 30, Window: 8, Improve: true, Horizon: 3},
			at:      map[int][]replay.Reset{0: {{Step: 11, From: replay.SourceForward}}},
			decide:  []bool{false, false, true, false},
			anchors: []int{0, 16}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newDriver(t, c.cfg)
			d.at, d.decide = c.at, c.decide
			d.run()
			checkPolicyGolden(t, "policy-"+c.name, d.log.String())
			var got []int
			for _, a := range d.anchors {
				got = append(got, a.Step)
			}
			if !slices.Equal(got, c.anchors) {
				t.Errorf("anchors %v, want %v", got, c.anchors)
			}
			if len(d.decide) != 0 {
				t.Errorf("%d trial decisions not used", len(d.decide))
			}
			for n := c.cfg.BackwardFrom + 1; n <= c.cfg.Steps; n++ {
				if _, ok := d.commits[n]; !ok {
					t.Errorf("step %d never committed", n)
				}
			}
		})
	}
}

// TestPolicyMatchesWindowed: without trials, the anchor of every step the
// policy commits is the anchor replay.Windowed uses for that step, for
// random windows, resets and flight limits: the strategies and the
// scheduler share the rule.
func TestPolicyMatchesWindowed(t *testing.T) {
	rng := newRand(t)
	f := replaytest.NewQuadraticFamily(rng, 50, 1, 0.1, 60)
	for range 30 {
		steps := 60
		cfg := replay.PolicyConfig{Steps: steps, Window: rng.IntN(12)}
		var resets []replay.Reset
		var at []int
		for range rng.IntN(3) {
			s := 1 + rng.IntN(steps-1)
			resets = append(resets, replay.Reset{Step: s, From: replay.SourceBackward})
			at = append(at, s)
		}
		d := newDriver(t, cfg)
		d.limit = 1 + rng.IntN(4)
		d.chunk = 1 + rng.IntN(10)
		if len(resets) > 0 {
			d.at[0] = resets // all known at the start, as configured resets are
		}
		d.run()
		w := mustWindowed(t, f, replay.Config{Window: cfg.Window, ResetAt: at})
		dst := make([]float32, 1)
		for n := 1; n <= steps; n++ {
			res, err := w.Backward(dst, n)
			if err != nil {
				t.Fatal(err)
			}
			if d.commits[n] != res.Anchor {
				t.Fatalf("W=%d resets=%v: step %d committed under anchor %d, Windowed uses %d", cfg.Window, at, n, d.commits[n], res.Anchor)
			}
		}
	}
}

// TestPolicyProject: the projection of the remaining jobs follows the rule,
// after a rejected trial too (the old anchor runs on and the reset is tried
// W steps later).
func TestPolicyProject(t *testing.T) {
	cfg := replay.PolicyConfig{Steps: 30, Window: 8, Improve: true, Horizon: 3}
	// A policy resumed after the rejection at 8, at frontier 11: the next
	// trial is at 16 (not at 11).
	p := replay.NewPolicy(cfg, replay.AnchorRef{Segment: 0, Step: 0, From: replay.SourceInit}, 1, 11)
	var got []string
	p.Project(func(n, a int) { got = append(got, fmt.Sprintf("%d@%d", n, a)) })
	want := "12@0 13@0 14@0 15@0 16@0 17@0 18@0 19@0 17@16 18@16 19@16 20@16 21@16 22@16 23@16 24@16 " +
		"25@16 26@16 27@16 25@24 26@24 27@24 28@24 29@24 30@24"
	if s := strings.Join(got, " "); s != want {
		t.Errorf("projection\n got %s\nwant %s", s, want)
	}
}

func TestPolicyMeasured(t *testing.T) {
	c := replay.PolicyConfig{Improve: true, Horizon: 5}
	for _, x := range []struct {
		n, a int
		want bool
	}{{11, 10, true}, {15, 10, true}, {16, 10, false}, {3, 0, true}} {
		if got := c.Measured(x.n, x.a); got != x.want {
			t.Errorf("Measured(%d, %d) = %v, want %v", x.n, x.a, got, x.want)
		}
	}
	if (replay.PolicyConfig{Horizon: 5}).Measured(11, 10) {
		t.Error("the fixed policy measures the horizon")
	}
}
