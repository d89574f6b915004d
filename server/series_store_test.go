package server

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/internal/blocksum"
	"github.com/replay-sgd/replay/scheduler"
)

// TestSeriesMeasuresOrder: the answer's measures are in the order of the
// store's block summaries.
func TestSeriesMeasuresOrder(t *testing.T) {
	for i, m := range seriesMeasures {
		if m.name != blocksum.Names[i] {
			t.Errorf("measure %d is %q in the answer, %q in the block summaries", i, m.name, blocksum.Names[i])
		}
	}
}

// countingBackend counts the points the server reads.
type countingBackend struct {
	*scheduler.Scheduler
	points atomic.Int64
}

func (c *countingBackend) Trajectory(ctx context.Context, name, kind string, from, to, every int, fn func(api.Point) error) error {
	return c.Scheduler.Trajectory(ctx, name, kind, from, to, every, func(p api.Point) error {
		c.points.Add(1)
		return fn(p)
	})
}

// pointsOnly hides a backend's ForwardBlocks: a server over it reads the
// points, as over a store without block summaries.
type pointsOnly struct{ Backend }

// TestSeriesColdFromStoredBlocks: over a real scheduler and Badger store,
// a fresh server answers an aligned request from the block summaries the
// store wrote while the run trained, reading no point of a complete block
// (only the steps after the last one), with exactly the bits a server
// that reads every point gives, and every bucket exact against the raw
// series.
func TestSeriesColdFromStoredBlocks(t *testing.T) {
	const n = 3000 // 46 complete blocks and 56 steps
	sched := seriesRun(t, n)
	var raw []api.Point
	if err := sched.Trajectory(context.Background(), "q", "forward", 1, n, 1, func(p api.Point) error {
		raw = append(raw, p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	lastBlock := n / seriesBlock * seriesBlock
	tail := 0 // points after the last complete block
	for _, p := range raw {
		if p.Step > lastBlock {
			tail++
		}
	}
	if tail == 0 || len(raw) < n/2 {
		t.Fatalf("%d points, %d after step %d: the run does not test what it should", len(raw), tail, lastBlock)
	}
	get := func(b Backend, path string) []byte {
		t.Helper()
		w := httptest.NewRecorder()
		New(b, Options{}).ServeHTTP(w, httptest.NewRequest("GET", "http://127.0.0.1"+path, nil))
		if w.Code != 200 {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
		return w.Body.Bytes()
	}
	for _, q := range []struct{ from, to, width, read int }{
		{1, n, 4 * seriesBlock, tail},
		{65, n, seriesBlock, tail},
		{129, lastBlock, 2 * seriesBlock, 0},
		{1, lastBlock, 1000 * seriesBlock, 0},
	} {
		path := fmt.Sprintf("/v1/runs/q/series?kind=forward&from=%d&to=%d&width=%d", q.from, q.to, q.width)
		cold := &countingBackend{Scheduler: sched}
		body := get(cold, path)
		if got := cold.points.Load(); got != int64(q.read) {
			t.Errorf("%s: a cold server read %d points, want %d (the steps after the last complete block in range)", path, got, q.read)
		}
		checkSeries(t, raw, q.from, q.to, q.width, decodeSeries(t, body))
		scan := &countingBackend{Scheduler: sched}
		if ref := get(pointsOnly{scan}, path); string(ref) != string(body) {
			t.Errorf("%s: the answer from the stored summaries differs from the one from the points:\n%.300s\n%.300s", path, body, ref)
		}
		all := 0 // the points of the blocks and of the range
		for _, p := range raw {
			if p.Step <= max(q.to, lastBlock) {
				all++
			}
		}
		if got := scan.points.Load(); got < int64(all) {
			t.Errorf("%s: a server without ForwardBlocks read %d points, want all %d", path, got, all)
		}
	}
}

// storedFake is the fake backend with block summaries, as a store keeps
// them, computed with blocksum from its points; the blocks missing() are
// absent, as in a store that wrote part of the run before summaries
// existed.
type storedFake struct {
	*fakeBackend
	missing func(i int) bool
}

func (f storedFake) ForwardBlocks(ctx context.Context, name string, from, to int, fn func(int, blocksum.Summary) error) error {
	st, err := f.Status(name)
	if err != nil {
		return err
	}
	to = min(to, st.ForwardStep/blocksum.Steps)
	if to <= from {
		return nil
	}
	f.mu.Lock()
	points := f.points
	f.mu.Unlock()
	sums := make([]blocksum.Summary, to-from)
	for _, p := range points {
		if i := (p.Step - 1) / blocksum.Steps; i >= from && i < to {
			sums[i-from].Add(p.Step, &[blocksum.M]float64{p.Loss, p.TestLoss, p.TestAcc, p.StepDist, p.ParamNorm})
		}
	}
	for i := from; i < to; i++ {
		if f.missing(i) {
			continue
		}
		if err := fn(i, sums[i-from]); err != nil {
			return err
		}
	}
	return nil
}
