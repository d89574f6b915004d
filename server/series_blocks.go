package server

import (
	"container/list"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync"

	"github.com/replay-sgd/replay/api"
)

// Block summaries of forward series. A forward point, once stored, never
// changes (the trainer writes step n once, and a resumed run writes the
// same bits: DESIGN §6), so the server keeps, per run, the min, max, last
// and counts of every complete block of seriesBlock steps below the
// forward step, and answers a bucket made of whole blocks from them: a
// request whose buckets are aligned on blocks (width a multiple of
// seriesBlock, from ≡ 1 mod seriesBlock — the page asks so) costs
// O(buckets + seriesBlock) rather than O(steps). The summaries are built
// on the first request that needs them, from the first block not yet
// summarised on, and extended by later ones: a run's forward points are
// read once per daemon lifetime.
//
// Invariants: a merged summary is exactly the bucket the raw points would
// give (min and max are exact; last is the last measured value; counts
// add), so answers are the same bits with and without the cache
// (TestSeriesBlocksSameAnswer). Backward series are not cached: their
// points change (out-of-order completion, rollbacks after a reset). A run
// is identified by its name and its forward-relevant spec, so a run
// deleted and created again under the same name with another spec never
// sees the old summaries; the server also drops them on DELETE. The cache
// holds at most seriesCacheBlocks blocks over all runs, least recently used
// runs first out.

const (
	// seriesBlock is the steps per block summary.
	seriesBlock = 64
	// seriesCacheBlocks bounds the summaries kept (~140 B each: ≈ 36 MiB,
	// 16 runs of 10⁶ steps).
	seriesCacheBlocks = 1 << 18
)

// summary is the bucket of one block's points (raw values only).
type summary struct {
	last, n       int32
	min, max, end [len(seriesMeasures)]float64
	count         [len(seriesMeasures)]int32
}

func summarise(b *bucket) summary {
	s := summary{last: int32(b.last), n: int32(b.n), min: b.min, max: b.max, end: b.end}
	for i, c := range b.count {
		s.count[i] = int32(c)
	}
	return s
}

// merge folds a block summary into b, as b.add would fold its points.
func (b *bucket) merge(s *summary) {
	if s.n == 0 {
		return
	}
	for i := range seriesMeasures {
		if b.n == 0 {
			b.min[i], b.max[i], b.end[i] = s.min[i], s.max[i], s.end[i]
			b.smin[i], b.smax[i], b.send[i] = math.NaN(), math.NaN(), math.NaN()
			b.count[i] = int(s.count[i])
			continue
		}
		if !math.IsNaN(s.min[i]) && (math.IsNaN(b.min[i]) || s.min[i] < b.min[i]) {
			b.min[i] = s.min[i]
		}
		if !math.IsNaN(s.max[i]) && (math.IsNaN(b.max[i]) || s.max[i] > b.max[i]) {
			b.max[i] = s.max[i]
		}
		if s.count[i] > 0 {
			b.end[i] = s.end[i]
		}
		b.count[i] += int(s.count[i])
	}
	b.last = int(s.last)
	b.n += int(s.n)
}

// blockCache holds the summaries of the runs' forward series.
type blockCache struct {
	mu    sync.Mutex
	runs  map[string]*list.Element // of *runBlocks, most recently used first
	lru   list.List
	total int // blocks held
}

// runBlocks is one run's summaries: blocks[i] covers steps
// [1+i·seriesBlock, (i+1)·seriesBlock]. The slice only grows (appends);
// its elements are never modified, so a reader may keep a copy of the
// slice header after unlocking.
type runBlocks struct {
	name, key string
	fill      sync.Mutex // held while the blocks are extended
	blocks    []summary  // guarded by blockCache.mu
}

func newBlockCache() *blockCache { return &blockCache{runs: map[string]*list.Element{}} }

// runKey is a run's identity for the cache: its spec without the settings
// that only concern the backward pass.
func runKey(st api.RunStatus) string {
	sp := st.Spec
	sp.Window, sp.Strategy, sp.ResetAt, sp.ResetFrom, sp.ResetPolicy, sp.ResetHorizon, sp.BackwardFrom = 0, "", nil, "", "", 0, nil
	b, _ := json.Marshal(sp)
	return string(b)
}

// entry returns the run's summaries, creating (or replacing) them.
func (c *blockCache) entry(st api.RunStatus) *runBlocks {
	key := runKey(st)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.runs[st.Name]; ok {
		rb := el.Value.(*runBlocks)
		if rb.key == key {
			c.lru.MoveToFront(el)
			return rb
		}
		c.removeLocked(el)
	}
	rb := &runBlocks{name: st.Name, key: key}
	c.runs[st.Name] = c.lru.PushFront(rb)
	return rb
}

func (c *blockCache) removeLocked(el *list.Element) {
	rb := el.Value.(*runBlocks)
	c.total -= len(rb.blocks)
	c.lru.Remove(el)
	delete(c.runs, rb.name)
}

// drop forgets a run's summaries (it was deleted).
func (c *blockCache) drop(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.runs[name]; ok {
		c.removeLocked(el)
	}
}

// snapshot returns the run's summaries so far.
func (c *blockCache) snapshot(rb *runBlocks) []summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	return rb.blocks
}

// add appends summaries to a run's and evicts other runs beyond the bound.
func (c *blockCache) add(rb *runBlocks, s []summary) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.runs[rb.name]
	if !ok || el.Value.(*runBlocks) != rb {
		return // dropped or replaced meanwhile
	}
	rb.blocks = append(rb.blocks, s...)
	c.total += len(s)
	for c.total > seriesCacheBlocks && c.lru.Len() > 1 {
		last := c.lru.Back()
		if last == el {
			break
		}
		c.removeLocked(last)
	}
}

// forwardBlocks returns the summaries of every complete block up to the
// forward step fwd, reading the points of the blocks not summarised yet.
func (s *server) forwardBlocks(ctx context.Context, st api.RunStatus, fwd int) ([]summary, error) {
	rb := s.blocks.entry(st)
	want := fwd / seriesBlock
	if have := s.blocks.snapshot(rb); len(have) >= want {
		return have[:want], nil
	}
	rb.fill.Lock()
	defer rb.fill.Unlock()
	have := s.blocks.snapshot(rb) // another request may have filled them
	if len(have) >= want {
		return have[:want], nil
	}
	from := len(have)*seriesBlock + 1
	to := want * seriesBlock
	add := make([]summary, 0, want-len(have))
	var cur bucket
	cur.start = from
	err := s.b.Trajectory(ctx, st.Name, "forward", from, to, 1, func(p api.Point) error {
		if p.Kind != "forward" || p.Step < from || p.Step > to {
			return nil
		}
		start := 1 + (p.Step-1)/seriesBlock*seriesBlock
		for cur.start < start { // close the blocks before p's (a block with no point is empty)
			add = append(add, summarise(&cur))
			cur = bucket{start: cur.start + seriesBlock}
		}
		if start < cur.start {
			return fmt.Errorf("server: series: forward step %d after step %d (backend out of order)", p.Step, cur.last)
		}
		cur.add(p, nil)
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	for cur.start <= to {
		add = append(add, summarise(&cur))
		cur = bucket{start: cur.start + seriesBlock}
	}
	s.blocks.add(rb, add)
	return append(have[:len(have):len(have)], add...), nil
}

// forwardSeries feeds the forward points of [from, to] to the buckets:
// every block lying whole inside [from, to] and inside one bucket as its
// summary (into gives the bucket), the other steps as raw points (add),
// read in as few runs as there are gaps between such blocks.
func (s *server) forwardSeries(ctx context.Context, st api.RunStatus, from, to int, bucketAt func(int) int,
	into func(start, step int) (*bucket, error), add func(api.Point) error) error {
	blocks, err := s.forwardBlocks(ctx, st, st.ForwardStep)
	if err != nil {
		return err
	}
	whole := func(i int) bool {
		a := i*seriesBlock + 1
		e := a + seriesBlock - 1
		return i < len(blocks) && a >= from && e <= to && bucketAt(a) == bucketAt(e)
	}
	for step := from; step <= to; {
		i := (step - 1) / seriesBlock
		if step == i*seriesBlock+1 && whole(i) {
			if b := &blocks[i]; b.n > 0 {
				bk, err := into(bucketAt(step), step)
				if err != nil {
					return err
				}
				bk.merge(b)
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
		if err := s.b.Trajectory(ctx, st.Name, "forward", lo, end, 1, func(p api.Point) error {
			if p.Step < lo || p.Step > end {
				return nil // the backend already filters; a summarised block must not count twice
			}
			return add(p)
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
