package replay

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// AnchorRule is the one statement of "when does the anchor move": the
// window's periodic resets and the manual resets. Windowed, Memo and Full
// ask it for their anchor sequence; Policy asks it before every step it
// dispatches, and Policy.Project (the scheduler's ETA) for the steps still
// to come. Nothing else decides where an anchor goes.
//
// Under the anchor at step a, a periodic reset falls at every m > a with
// m − a a multiple of Window (and m < Steps when Steps > 0: a reset at the
// last step would anchor nothing). When the anchor moves at a + Window, as
// it does unless an adaptive trial rejects the move, this is "every Window
// steps"; after a rejection the old anchor runs on and the reset is tried
// again Window steps later. A manual reset at m moves the anchor to m.
type AnchorRule struct {
	// Window is W; 0 means no periodic reset.
	Window int
	// Steps bounds the periodic resets (0: unbounded).
	Steps int
}

// Next returns the first step m > after at which the anchor at step a
// moves, given the sorted manual reset steps, or −1 if there is none.
func (r AnchorRule) Next(a, after int, resets []int) int {
	nx := -1
	if r.Window > 0 {
		m := a + r.Window
		if after >= a {
			m = a + r.Window*((after-a)/r.Window+1)
		}
		if r.Steps <= 0 || m < r.Steps {
			nx = m
		}
	}
	i, _ := slices.BinarySearch(resets, after+1)
	if i < len(resets) && (nx < 0 || resets[i] < nx) {
		nx = resets[i]
	}
	return nx
}

// Reset is a requested anchor move to Step from the iterate named by From
// (SourceBackward or SourceForward).
type Reset struct {
	Step int
	From Source
}

// PolicyConfig configures a Policy.
type PolicyConfig struct {
	// Steps is the run's last step.
	Steps int
	// Window is the periodic reset interval (0: none; the scheduler
	// passes 0 for the strategies without periodic resets).
	Window int
	// From is the start of periodic resets: SourceBackward or SourceForward.
	From Source
	// Improve makes every reset an adaptive trial over Horizon steps: the
	// candidate anchor is kept only if TrialKeeps says so.
	Improve bool
	Horizon int
	// BackwardFrom S > 0: no iterates for n ≤ S; the first anchor after
	// the initial one is (S, θ_S forward), placed when the trainer has
	// logged step S.
	BackwardFrom int
}

func (c PolicyConfig) rule() AnchorRule { return AnchorRule{Window: c.Window, Steps: c.Steps} }

// AnchorRef names an anchor: its segment (unique in a run, increasing), its
// step and the source of its start point.
type AnchorRef struct {
	Segment, Step int
	From          Source
}

// Sides of an adaptive trial. SideNone is an ordinary job.
const (
	SideNone = 0
	SideOld  = 1 // the old anchor continued
	SideNew  = 2 // the candidate anchor
)

// ActionKind says what a Policy asks its executor to do.
type ActionKind int

// Action kinds.
const (
	// ActWait: nothing to do until an event (Hungry: for forward steps).
	ActWait ActionKind = iota
	// ActDispatch: compute θ̃_Step under the anchor (Segment, AnchorStep).
	ActDispatch
	// ActMove: make Anchor the current anchor (its start point is θ̃ or θ
	// at Anchor.Step; the frontier is at Anchor.Step).
	ActMove
	// ActTrial: start an adaptive trial of the move to Anchor over the
	// steps Anchor.Step+1 … Anchor.Step+Horizon.
	ActTrial
	// ActRollback: a manual reset at To is at or before a dispatched
	// step: drop every job in flight and every result after the
	// frontier; if To is before the frontier, the frontier goes back to To.
	ActRollback
	// ActDone: every step has its iterate and nothing is pending.
	ActDone
)

// Action is one thing to do. Next returns it without changing the policy;
// the executor performs it and then reports it with Advance.
type Action struct {
	Kind ActionKind
	// ActDispatch.
	Step, Segment, AnchorStep, Side int
	// ActMove, ActTrial: the new (candidate) anchor, why, and the manual
	// reset it applies (nil for window and backward-from).
	Anchor  AnchorRef
	Reason  string
	Manual  *Reset
	Horizon int
	// ActRollback.
	To int
	// ActWait.
	Hungry bool
}

func (a Action) String() string {
	switch a.Kind {
	case ActWait:
		if a.Hungry {
			return "wait forward"
		}
		return "wait"
	case ActDispatch:
		s := fmt.Sprintf("dispatch step=%d segment=%d anchor=%d", a.Step, a.Segment, a.AnchorStep)
		if a.Side != SideNone {
			s += fmt.Sprintf(" side=%s", sideName(a.Side))
		}
		return s
	case ActMove, ActTrial:
		kind := "move"
		if a.Kind == ActTrial {
			kind = "trial"
		}
		s := fmt.Sprintf("%s segment=%d step=%d from=%s reason=%s", kind, a.Anchor.Segment, a.Anchor.Step, a.Anchor.From, a.Reason)
		if a.Kind == ActTrial {
			s += fmt.Sprintf(" horizon=%d", a.Horizon)
		}
		return s
	case ActRollback:
		return fmt.Sprintf("rollback to=%d", a.To)
	case ActDone:
		return "done"
	}
	return fmt.Sprintf("action(%d)", a.Kind)
}

func sideName(s int) string {
	switch s {
	case SideOld:
		return "old"
	case SideNew:
		return "new"
	}
	return "none"
}

// Reason values of moves and trials.
const (
	ReasonWindow       = "window"
	ReasonManual       = "manual"
	ReasonBackwardFrom = "backward-from"
)

type policyTrial struct {
	n, h   int
	cand   AnchorRef
	old    AnchorRef
	reason string
	manual *Reset
	next   [2]int // next step to dispatch per side
}

// Policy is the anchor policy of one run's backward iterates: a pure,
// deterministic state machine in the style of etcd-raft. Events come in
// (Logged, SetPending, Advance of a dispatched job, Received, Committed,
// Decide); Next says what to do. Next never changes the policy: an
// executor may ask again, and performs the action before reporting it
// with Advance. The same events in the same order give the same actions,
// whatever the timing, which is what keeps stored numbers a pure function
// of the run's configuration.
//
// The state: the current anchor, the next segment number, the committed
// frontier b (every step ≤ b has its result), the last dispatched step d,
// the jobs in flight (dispatched, not yet received), the last logged
// forward step, the pending manual resets and the adaptive trial in
// progress. Not safe for concurrent use: one goroutine owns it.
type Policy struct {
	cfg      PolicyConfig
	rule     AnchorRule
	anchor   AnchorRef
	nextSeg  int
	b, d     int
	inflight int
	forward  int
	pending  []Reset
	trial    *policyTrial
}

// NewPolicy returns the policy of a run whose current anchor is anchor,
// whose next segment number is nextSeg and whose committed frontier is
// frontier (a fresh run: AnchorRef{0, 0, SourceInit}, 1, 0). Everything it
// needs to resume is stored: the rule depends only on the anchor's step,
// never on how many trials were rejected.
func NewPolicy(cfg PolicyConfig, anchor AnchorRef, nextSeg, frontier int) *Policy {
	if cfg.From == "" {
		cfg.From = SourceBackward
	}
	return &Policy{cfg: cfg, rule: cfg.rule(), anchor: anchor, nextSeg: nextSeg, b: frontier, d: frontier}
}

// Anchor is the current anchor.
func (p *Policy) Anchor() AnchorRef { return p.anchor }

// Frontier is the committed frontier b.
func (p *Policy) Frontier() int { return p.b }

// InFlight is the number of dispatched jobs not yet received.
func (p *Policy) InFlight() int { return p.inflight }

// Trial reports whether an adaptive trial is in progress.
func (p *Policy) Trial() bool { return p.trial != nil }

// Logged records that the forward steps up to f are logged.
func (p *Policy) Logged(f int) { p.forward = max(p.forward, f) }

// SetPending records the manual resets not yet applied (any order).
func (p *Policy) SetPending(rs []Reset) {
	p.pending = append(p.pending[:0], rs...)
	slices.SortStableFunc(p.pending, func(x, y Reset) int { return x.Step - y.Step })
}

// Received records that a dispatched job came back (a result, stale or
// not: it is no longer in flight).
func (p *Policy) Received() { p.inflight-- }

// Committed records that the result of step n (= frontier + 1) is
// committed under the current anchor.
func (p *Policy) Committed(n int) {
	if n != p.b+1 || p.trial != nil {
		panic(fmt.Sprintf("replay: policy: commit of step %d at frontier %d (trial %v)", n, p.b, p.trial != nil))
	}
	p.b = n
	p.d = max(p.d, n)
}

// Measured reports whether the losses of step n under the anchor at
// anchorStep must be measured for the adaptive policy: the first Horizon
// steps of every anchor are, as in the trial that kept it, so that stored
// losses do not depend on whether a step was computed in its trial or (after
// a restart between storing an anchor and its results) afterwards.
func (c PolicyConfig) Measured(n, anchorStep int) bool {
	return c.Improve && n-anchorStep <= c.Horizon
}

// TrialKeeps is the adaptive decision: the candidate is kept when the mean
// training loss of its horizon is lower than the old anchor's, or the old
// one diverged (NaN) and the candidate did not.
func TrialKeeps(newLoss, oldLoss float64) bool {
	return newLoss < oldLoss || math.IsNaN(oldLoss) && !math.IsNaN(newLoss)
}

// Decide ends the trial, whose two sides are committed over the whole
// horizon: the candidate becomes the anchor if keep; the winner's results
// are the frontier's. It returns the trial's move (what ActMove would have
// said) and whether the candidate was kept.
func (p *Policy) Decide(keep bool) (Action, bool) {
	t := p.trial
	if t == nil {
		panic("replay: policy: decision without a trial")
	}
	p.trial = nil
	p.dropPending(t.manual)
	mv := Action{Kind: ActMove, Anchor: t.cand, Reason: t.reason, Manual: t.manual}
	if keep {
		p.anchor = t.cand
		p.nextSeg++
	}
	p.b, p.d = t.n+t.h, t.n+t.h
	return mv, keep
}

// Advance records that a has been performed.
func (p *Policy) Advance(a Action) {
	switch a.Kind {
	case ActDispatch:
		p.inflight++
		if a.Side != SideNone {
			p.trial.next[a.Side-1] = a.Step + 1
		}
		p.d = max(p.d, a.Step)
	case ActMove:
		p.anchor = a.Anchor
		p.nextSeg = a.Anchor.Segment + 1
		p.b, p.d = a.Anchor.Step, a.Anchor.Step
		p.dropPending(a.Manual)
	case ActTrial:
		n := a.Anchor.Step
		p.trial = &policyTrial{
			n: n, h: a.Horizon, cand: a.Anchor, old: p.anchor, reason: a.Reason, manual: a.Manual,
			next: [2]int{n + 1, n + 1},
		}
	case ActRollback:
		p.trial = nil
		p.d = p.b
		if a.To < p.b {
			p.b, p.d = a.To, a.To
		}
	}
}

func (p *Policy) dropPending(m *Reset) {
	if m == nil {
		return
	}
	if i := slices.Index(p.pending, *m); i >= 0 {
		p.pending = slices.Delete(p.pending, i, i+1)
	}
}

func (p *Policy) resetSteps() []int {
	steps := make([]int, len(p.pending))
	for i, r := range p.pending {
		steps[i] = r.Step
	}
	return steps
}

// due reports whether the anchor moves to m before step m+1 is computed,
// and how.
func (p *Policy) due(m int) (from Source, reason string, manual *Reset, ok bool) {
	if p.rule.Next(p.anchor.Step, m-1, p.resetSteps()) != m {
		return "", "", nil, false
	}
	for i := range p.pending {
		if p.pending[i].Step == m {
			r := p.pending[i]
			return r.From, ReasonManual, &r, true
		}
	}
	return p.cfg.From, ReasonWindow, nil, true
}

// Next is what to do now, with at most limit jobs in flight.
func (p *Policy) Next(limit int) Action {
	if p.trial != nil {
		return p.trialNext(limit)
	}
	if s := p.cfg.BackwardFrom; s > 0 && p.anchor.Step < s {
		if p.forward < s {
			return Action{Kind: ActWait, Hungry: true}
		}
		return Action{Kind: ActMove, Anchor: AnchorRef{Segment: p.nextSeg, Step: s, From: SourceForward}, Reason: ReasonBackwardFrom}
	}
	if len(p.pending) > 0 && p.pending[0].Step < p.d {
		return Action{Kind: ActRollback, To: p.pending[0].Step}
	}
	next := p.d + 1
	if from, reason, manual, ok := p.due(next - 1); ok {
		if p.inflight > 0 || p.b < next-1 {
			return Action{Kind: ActWait}
		}
		a := Action{Kind: ActMove, Anchor: AnchorRef{Segment: p.nextSeg, Step: next - 1, From: from}, Reason: reason, Manual: manual}
		if h := min(p.cfg.Horizon, p.cfg.Steps-(next-1)); p.cfg.Improve && h > 0 {
			a.Kind, a.Horizon = ActTrial, h
		}
		return a
	}
	switch {
	case next > p.cfg.Steps:
		if p.inflight == 0 && p.b == p.cfg.Steps && len(p.pending) == 0 && p.forward >= p.cfg.Steps {
			return Action{Kind: ActDone}
		}
		return Action{Kind: ActWait}
	case p.inflight >= limit:
		return Action{Kind: ActWait}
	case next > p.forward:
		return Action{Kind: ActWait, Hungry: true}
	}
	return Action{Kind: ActDispatch, Step: next, Segment: p.anchor.Segment, AnchorStep: p.anchor.Step}
}

// trialNext dispatches the trial's jobs, alternating sides step by step.
func (p *Policy) trialNext(limit int) Action {
	t := p.trial
	if p.inflight >= limit {
		return Action{Kind: ActWait}
	}
	side := SideOld
	if t.next[SideNew-1] < t.next[SideOld-1] {
		side = SideNew
	}
	n := t.next[side-1]
	if n > t.n+t.h {
		side = 3 - side
		n = t.next[side-1]
	}
	if n > t.n+t.h {
		return Action{Kind: ActWait}
	}
	if n > p.forward {
		return Action{Kind: ActWait, Hungry: true}
	}
	a := t.old
	if side == SideNew {
		a = t.cand
	}
	return Action{Kind: ActDispatch, Step: n, Segment: a.Segment, AnchorStep: a.Step, Side: side}
}

// Project calls fn(n, anchor) for every job the run still needs, from the
// frontier to the last step, in step order, assuming every adaptive trial
// keeps its candidate (the old side of each trial is reported too, with
// its old anchor): what the ETA sums. The policy is not changed.
func (p *Policy) Project(fn func(n, anchor int)) {
	a, from := p.anchor.Step, p.b
	if s := p.cfg.BackwardFrom; s > 0 && a < s {
		a, from = s, s
	}
	resets := p.resetSteps()
	if len(resets) > 0 && resets[0] < from {
		from = resets[0] // a rollback: recomputed from there
	}
	for n := from + 1; n <= p.cfg.Steps; n++ {
		if m := n - 1; p.rule.Next(a, m-1, resets) == m {
			if p.cfg.Improve {
				for k := n; k <= min(p.cfg.Steps, m+p.cfg.Horizon); k++ {
					fn(k, a)
				}
			}
			a = m
		}
		fn(n, a)
	}
}

// String is a one-line summary of the state, for golden logs.
func (p *Policy) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "anchor=%d@%d/%s b=%d d=%d inflight=%d forward=%d", p.anchor.Segment, p.anchor.Step, p.anchor.From, p.b, p.d, p.inflight, p.forward)
	if len(p.pending) > 0 {
		fmt.Fprintf(&b, " pending=%v", p.pending)
	}
	if t := p.trial; t != nil {
		fmt.Fprintf(&b, " trial=%d+%d next=%v", t.n, t.h, t.next)
	}
	return b.String()
}
