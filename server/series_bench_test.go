package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/nnfamily"
	"github.com/replay-sgd/replay/scheduler"
)

// seriesRun trains a quadratic run of n forward steps (no backward
// iterates: backward_from n) in a real scheduler over a real Badger store
// and returns it once its forward step is n (within ten minutes).
func seriesRun(tb testing.TB, n int) *scheduler.Scheduler {
	tb.Helper()
	store, err := ckpt.Open(ckpt.DefaultOptions(tb.TempDir()).WithGCInterval(0))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	sched, err := scheduler.New(store, scheduler.DefaultOptions().WithFamilies(nnfamily.New()).WithWorkers(1))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- sched.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-ran })
	t0 := time.Now()
	if _, err := sched.Create(api.RunSpec{Preset: "quadratic", Name: "q", Steps: n, BackwardFrom: api.Ptr(n - 1), EvalEvery: api.Ptr(10)}); err != nil {
		tb.Fatal(err)
	}
	deadline := t0.Add(10 * time.Minute)
	for {
		st, err := sched.Status("q")
		if err != nil {
			tb.Fatal(err)
		}
		if st.ForwardStep == n {
			break
		}
		if st.State == "failed" {
			tb.Fatal(st.Reason)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("forward step %d of %d after %v", st.ForwardStep, n, time.Since(t0))
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	tb.Logf("%d forward steps trained in %v", n, time.Since(t0))
	return sched
}

// BenchmarkSeriesStore measures GET /series of a forward series of 10⁵
// and 10⁶ steps from a real scheduler and Badger store, as the page asks
// for it (about 1200 buckets, the width on the 64-step block grid):
// cold is the first request to a fresh server (its block summaries read
// from the store's), cold-points the same reading every point (a store
// without summaries), warm a later one over the whole run (the cache),
// update a live update (the last bucket); the ema- ones the same with
// smooth=ema:0.9 (whose cold request reads every point: the store keeps
// no EMA state).
//
//	go test ./server/ -run '^$' -bench BenchmarkSeriesStore -benchtime 5x
func BenchmarkSeriesStore(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			sched := seriesRun(b, n)
			width := (n/1200 + seriesBlock) / seriesBlock * seriesBlock
			smooth := ""
			get := func(h http.Handler, from int) {
				req := httptest.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1/v1/runs/q/series?kind=forward&from=%d&to=%d&width=%d%s", from, n, width, smooth), nil)
				w := &discardWriter{h: http.Header{}}
				h.ServeHTTP(w, req)
				if w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
			}
			b.Run("cold", func(b *testing.B) {
				for b.Loop() {
					get(New(sched, Options{}), 1)
				}
			})
			// cold-points: the same over a backend without the store's
			// block summaries (every point read, as before the store
			// kept them, and as for a run stored without them).
			b.Run("cold-points", func(b *testing.B) {
				for b.Loop() {
					get(New(pointsOnly{sched}, Options{}), 1)
				}
			})
			h := New(sched, Options{})
			get(h, 1)
			b.Run("warm", func(b *testing.B) {
				for b.Loop() {
					get(h, 1)
				}
			})
			b.Run("update", func(b *testing.B) {
				for b.Loop() {
					get(h, 1+(n-1)/width*width)
				}
			})
			// The same with the server's EMA (ema:0.9): cold reads every
			// point; warm and update resume from the blocks' states.
			smooth = "&smooth=ema:0.9"
			b.Run("ema-cold", func(b *testing.B) {
				for b.Loop() {
					get(New(sched, Options{}), 1)
				}
			})
			get(h, 1)
			b.Run("ema-warm", func(b *testing.B) {
				for b.Loop() {
					get(h, 1)
				}
			})
			b.Run("ema-update", func(b *testing.B) {
				for b.Loop() {
					get(h, 1+(n-1)/width*width)
				}
			})
		})
	}
}
