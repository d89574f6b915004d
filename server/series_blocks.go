package server

import (
	"container/list"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/internal/blocksum"
)

// Block summaries of forward series. A forward point, once stored, never
// changes (the trainer writes step n once, and a resumed run writes the
// same bits: DESIGN §6), so the server keeps, per run, the min, max, last
// and counts of every complete block of seriesBlock steps below the
// forward step, and answers a bucket made of whole blocks from them: a
// request whose buckets are aligned on blocks (width a multiple of
// seriesBlock, from ≡ 1 mod seriesBlock — the page asks so) costs
// O(buckets + seriesBlock) rather than O(steps). The summaries are filled
// on the first request that needs them, from the first block not yet
// summarised on, and extended by later ones. The store writes the same
// summary (blocksum.Summary, the same function) of every complete block
// with the block's last step (ckpt/blocks.go), and a backend with
// ForwardBlocks (BlockBackend) hands them over, so the raw entries are
// filled from those, O(blocks), reading points only for blocks the store
// has no summary of (runs stored before it kept them); without that
// capability, and for EMA entries, a run's forward points are read once
// per daemon lifetime (and per EMA weight, below).
//
// With smooth=ema:K the summaries of (run, K) also hold the min, max and
// last of the smoothed values of each block and the EMA's state at each
// block's start, from which a read of raw points resumes the smoothing
// exactly (the same operations in the same order as from step 1). A
// moving average's state is its last N measured values, too big to keep
// per block: ma:N requests read the series from step 1.
//
// Invariants: a merged summary is exactly the bucket the raw points would
// give (min and max are exact; last is the last measured value; counts
// add), so answers are the same bits with and without the cache
// (TestSeriesBlocksSameAnswer). Backward series are not cached: their
// points change (out-of-order completion, rollbacks after a reset). A run
// is identified by its name and its forward-relevant spec, so a run
// deleted and created again under the same name with another spec never
// sees the old summaries; the server also drops them on DELETE. The cache
// holds at most seriesCacheBytes in seriesCacheEntries entries, least
// recently used entries first out.

const (
	// seriesBlock is the steps per block summary: the store's
	// (blocksum.Steps), so that its summaries fill the cache.
	seriesBlock = blocksum.Steps
	// seriesCacheBytes bounds the summaries kept: ≈ 14 runs of 10⁶ steps
	// without smoothing, 6 with.
	seriesCacheBytes = 32 << 20
	// seriesCacheEntries bounds the entries (runs × smoothings) kept.
	seriesCacheEntries = 256
	// Approximate sizes of one block's summary, for the bound.
	rawBlockBytes    = 140
	smoothBlockBytes = rawBlockBytes + 200
)

const nMeasures = len(seriesMeasures)

// summary is the bucket of one block's points: raw values (the
// blocksum.Summary the store also keeps per block), and the smoothed ones'
// min, max, last when the entry is smoothed.
type summary struct {
	blocksum.Summary
	smin, smax, send [nMeasures]float64
}

func summarise(b *bucket) summary {
	return summary{Summary: b.Summary, smin: b.smin, smax: b.smax, send: b.send}
}

// merge folds a block summary into b, as b.add would fold its points
// (smoothed values too when smoothed).
func (b *bucket) merge(s *summary, smoothed bool) {
	if s.N == 0 {
		return
	}
	if b.N == 0 {
		b.smin, b.smax, b.send = s.smin, s.smax, s.send
		if !smoothed {
			for i := range seriesMeasures {
				b.smin[i], b.smax[i], b.send[i] = math.NaN(), math.NaN(), math.NaN()
			}
		}
	} else if smoothed {
		for i := range seriesMeasures {
			if !math.IsNaN(s.smin[i]) && (math.IsNaN(b.smin[i]) || s.smin[i] < b.smin[i]) {
				b.smin[i] = s.smin[i]
			}
			if !math.IsNaN(s.smax[i]) && (math.IsNaN(b.smax[i]) || s.smax[i] > b.smax[i]) {
				b.smax[i] = s.smax[i]
			}
			if !math.IsNaN(s.send[i]) {
				b.send[i] = s.send[i]
			}
		}
	}
	b.Summary.Merge(&s.Summary)
}

// emaState is the EMA smoother's state between two points.
type emaState struct {
	started bool
	m, w    [nMeasures]float64
}

func (e emaState) smoother(sp smoothing) *smoother {
	sm := newSmoother(sp)
	sm.started, sm.m, sm.w = e.started, e.m, e.w
	return sm
}

func stateOf(sm *smoother) emaState { return emaState{started: sm.started, m: sm.m, w: sm.w} }

// blockCache holds the summaries of the runs' forward series.
type blockCache struct {
	mu      sync.Mutex
	entries map[string]*list.Element // of *runBlocks by name and smoothing, most recently used first
	lru     list.List
	bytes   int // held, approximately
}

// runBlocks is one run's summaries for one smoothing (none or ema:K):
// blocks[i] covers steps [1+i·seriesBlock, (i+1)·seriesBlock] and, when
// smoothed, states[i] is the EMA's state before block i (len(blocks)+1
// states). The slices only grow (appends); their elements are never
// modified, so a reader may keep copies of the slice headers after
// unlocking.
type runBlocks struct {
	name, key, mapKey string
	sp                smoothing
	fill              sync.Mutex // held while the blocks are extended
	blocks            []summary  // guarded by blockCache.mu
	states            []emaState // guarded by blockCache.mu
}

func (rb *runBlocks) blockBytes() int {
	if rb.sp.how != "" {
		return smoothBlockBytes
	}
	return rawBlockBytes
}

func newBlockCache() *blockCache { return &blockCache{entries: map[string]*list.Element{}} }

// runKey is a run's identity for the cache: its spec without the settings
// that only concern the backward pass.
func runKey(st api.RunStatus) string {
	sp := st.Spec
	sp.Window, sp.Strategy, sp.ResetAt, sp.ResetFrom, sp.ResetPolicy, sp.ResetHorizon, sp.BackwardFrom = 0, "", nil, "", "", 0, nil
	b, _ := json.Marshal(sp)
	return string(b)
}

// entry returns the run's summaries for sp, creating (or replacing) them.
func (c *blockCache) entry(st api.RunStatus, sp smoothing) *runBlocks {
	key, mapKey := runKey(st), st.Name+"\x00"+sp.text
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[mapKey]; ok {
		rb := el.Value.(*runBlocks)
		if rb.key == key {
			c.lru.MoveToFront(el)
			return rb
		}
		c.removeLocked(el)
	}
	rb := &runBlocks{name: st.Name, key: key, mapKey: mapKey, sp: sp}
	if sp.how != "" {
		rb.states = []emaState{{}}
	}
	c.entries[mapKey] = c.lru.PushFront(rb)
	// Entries of short runs hold no block and so no bytes: bound their
	// number too (one per run and EMA weight a client asked for).
	for c.lru.Len() > seriesCacheEntries {
		c.removeLocked(c.lru.Back())
	}
	return rb
}

func (c *blockCache) removeLocked(el *list.Element) {
	rb := el.Value.(*runBlocks)
	c.bytes -= len(rb.blocks) * rb.blockBytes()
	c.lru.Remove(el)
	delete(c.entries, rb.mapKey)
}

// drop forgets a run's summaries (it was deleted).
func (c *blockCache) drop(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, el := range c.entries {
		if el.Value.(*runBlocks).name == name {
			c.removeLocked(el)
		}
	}
}

// snapshot returns the run's summaries so far.
func (c *blockCache) snapshot(rb *runBlocks) ([]summary, []emaState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return rb.blocks, rb.states
}

// add appends summaries (and states) to an entry and evicts others beyond
// the bound.
func (c *blockCache) add(rb *runBlocks, s []summary, st []emaState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[rb.mapKey]
	if !ok || el.Value.(*runBlocks) != rb {
		return // dropped or replaced meanwhile
	}
	rb.blocks = append(rb.blocks, s...)
	rb.states = append(rb.states, st...)
	c.bytes += len(s) * rb.blockBytes()
	for c.bytes > seriesCacheBytes && c.lru.Len() > 1 {
		last := c.lru.Back()
		if last == el {
			break
		}
		c.removeLocked(last)
	}
}

// forwardBlocks returns the summaries of every complete block up to the
// forward step fwd (and, smoothed, the EMA states before each block and
// after the last), reading the points of the blocks not summarised yet.
func (s *server) forwardBlocks(ctx context.Context, st api.RunStatus, sp smoothing, fwd int) ([]summary, []emaState, error) {
	rb := s.blocks.entry(st, sp)
	want := fwd / seriesBlock
	cut := func(b []summary, e []emaState) ([]summary, []emaState) {
		if sp.how != "" {
			e = e[:want+1]
		}
		return b[:want], e
	}
	if have, states := s.blocks.snapshot(rb); len(have) >= want {
		b, e := cut(have, states)
		return b, e, nil
	}
	rb.fill.Lock()
	defer rb.fill.Unlock()
	have, states := s.blocks.snapshot(rb) // another request may have filled them
	if len(have) >= want {
		b, e := cut(have, states)
		return b, e, nil
	}
	var add []summary
	var addStates []emaState
	var err error
	if bb, ok := s.b.(BlockBackend); ok && sp.how == "" {
		add, err = s.storedBlocks(ctx, bb, st.Name, len(have), want)
	} else {
		var sm *smoother
		if sp.how != "" {
			sm = states[len(have)].smoother(sp)
		}
		add, addStates, err = s.scanBlocks(ctx, st.Name, sm, len(have), want)
	}
	if err != nil {
		return nil, nil, err
	}
	s.blocks.add(rb, add, addStates)
	blocks := append(have[:len(have):len(have)], add...)
	if sp.how != "" {
		states = append(states[:len(states):len(states)], addStates...)
	}
	return blocks, states, nil
}

// BlockBackend is an optional capability of a Backend (checked by type
// assertion; *scheduler.Scheduler has it): the summaries the store keeps
// of the forward series' blocks of seriesBlock steps, so that a cold
// server fills its cache from them, O(blocks), instead of reading every
// point. It calls fn in order for the blocks in [from, to) that have a
// summary and skips the others (not complete, or stored before the store
// kept summaries), whose points the server then reads.
type BlockBackend interface {
	ForwardBlocks(ctx context.Context, name string, from, to int, fn func(i int, sum blocksum.Summary) error) error
}

// storedBlocks returns the raw summaries of blocks [lo, hi): the stored
// ones, and for the blocks without one, the summaries of their points.
func (s *server) storedBlocks(ctx context.Context, bb BlockBackend, name string, lo, hi int) ([]summary, error) {
	out := make([]summary, 0, hi-lo)
	type gap struct{ lo, hi, at int } // blocks [lo, hi) go to out[at:]
	var gaps []gap
	if err := bb.ForwardBlocks(ctx, name, lo, hi, func(i int, sum blocksum.Summary) error {
		if i < lo+len(out) || i >= hi {
			return fmt.Errorf("server: series: block summary %d after %d (backend out of order)", i, lo+len(out)-1)
		}
		if next := lo + len(out); i > next {
			gaps = append(gaps, gap{next, i, len(out)})
			out = append(out, make([]summary, i-next)...)
		}
		out = append(out, summary{Summary: sum})
		return nil
	}); err != nil {
		return nil, err
	}
	if next := lo + len(out); next < hi {
		gaps = append(gaps, gap{next, hi, len(out)})
		out = append(out, make([]summary, hi-next)...)
	}
	for _, g := range gaps {
		b, _, err := s.scanBlocks(ctx, name, nil, g.lo, g.hi)
		if err != nil {
			return nil, err
		}
		copy(out[g.at:], b)
	}
	return out, nil
}

// scanBlocks reads the forward points of blocks [lo, hi) and returns their
// summaries and, when sm is not nil (smoothing from the state before block
// lo), the EMA's state after each block.
func (s *server) scanBlocks(ctx context.Context, name string, sm *smoother, lo, hi int) ([]summary, []emaState, error) {
	from, to := lo*seriesBlock+1, hi*seriesBlock
	add := make([]summary, 0, hi-lo)
	var addStates []emaState
	var cur bucket
	cur.start = from
	closeBlock := func() {
		add = append(add, summarise(&cur))
		if sm != nil {
			addStates = append(addStates, stateOf(sm))
		}
		cur = bucket{start: cur.start + seriesBlock}
	}
	err := s.b.Trajectory(ctx, name, "forward", from, to, 1, func(p api.Point) error {
		if p.Kind != "forward" || p.Step < from || p.Step > to {
			return nil
		}
		start := 1 + (p.Step-1)/seriesBlock*seriesBlock
		for cur.start < start { // close the blocks before p's (a block with no point is empty)
			closeBlock()
		}
		if start < cur.start {
			return fmt.Errorf("server: series: forward step %d after step %d (backend out of order)", p.Step, cur.Last)
		}
		var sv *[nMeasures]float64
		if sm != nil {
			v := sm.next(p)
			sv = &v
		}
		cur.add(p, sv)
		return ctx.Err()
	})
	if err != nil {
		return nil, nil, err
	}
	for cur.start <= to {
		closeBlock()
	}
	return add, addStates, nil
}

// forwardSeries feeds the forward points of [from, to] to the buckets:
// every block lying whole inside [from, to] and inside one bucket as its
// summary (into gives the bucket), the other steps as raw points (place),
// read in as few runs as there are gaps between such blocks. Smoothed
// (ema only), a run of raw points starts at a block's start, from that
// block's EMA state; the points before from only feed the smoother.
func (s *server) forwardSeries(ctx context.Context, st api.RunStatus, sp smoothing, from, to int, bucketAt func(int) int,
	into func(start, step int) (*bucket, error), place func(api.Point, *[nMeasures]float64) error) error {
	blocks, states, err := s.forwardBlocks(ctx, st, sp, st.ForwardStep)
	if err != nil {
		return err
	}
	smoothed := sp.how != ""
	whole := func(i int) bool {
		a := i*seriesBlock + 1
		e := a + seriesBlock - 1
		return i < len(blocks) && a >= from && e <= to && bucketAt(a) == bucketAt(e)
	}
	for step := from; step <= to; {
		i := (step - 1) / seriesBlock
		if step == i*seriesBlock+1 && whole(i) {
			if b := &blocks[i]; b.N > 0 {
				bk, err := into(bucketAt(step), step)
				if err != nil {
					return err
				}
				bk.merge(b, smoothed)
			}
			step += seriesBlock
			continue
		}
		j := i + 1
		for j*seriesBlock+1 <= to && !whole(j) {
			j++
		}
		end := min(to, j*seriesBlock)
		lo := step
		var sm *smoother
		if smoothed {
			// Resume the smoothing at the start of step's block (the
			// last summarised one's end if step is past them).
			i = min(i, len(blocks))
			sm, lo = states[i].smoother(sp), i*seriesBlock+1
		}
		if err := s.b.Trajectory(ctx, st.Name, "forward", lo, end, 1, func(p api.Point) error {
			if p.Kind != "forward" || p.Step < lo || p.Step > end {
				return nil // the backend already filters; a summarised block must not count twice
			}
			var sv *[nMeasures]float64
			if sm != nil {
				v := sm.next(p)
				sv = &v
			}
			if p.Step < step {
				return nil // fed the smoother only
			}
			return place(p, sv)
		}); err != nil {
			return err
		}
		step = end + 1
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}
