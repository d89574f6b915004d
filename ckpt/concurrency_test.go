package ckpt

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestConcurrentRuns writes several runs from parallel goroutines while
// another goroutine creates and deletes runs (DropPrefix blocks Badger's
// writes: the store must hold them back, not fail them) and the GC timer
// runs. Every run must verify afterwards.
func TestConcurrentRuns(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(testOptions(dir).WithGCInterval(20 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { checkStore(t, s); s.Close() })
	const dim, steps = 3000, 60
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 3 {
		name := fmt.Sprint("w", w)
		seed := uint64(w + 1)
		wg.Go(func() {
			if err := s.CreateRun(testConfig(name, dim), testTheta0(seed, dim)); err != nil {
				errs <- err
				return
			}
			th := testTheta0(seed, dim)
			for k := 1; k <= steps; k++ {
				b := testBatch(seed, k, 8, 1000)
				testStep(th, b)
				if err := s.AppendForward(name, []ForwardStep{{Step: k, Batch: b}}, RunState{State: StateRunning}); err != nil {
					errs <- err
					return
				}
				if k%5 == 0 {
					if err := s.PutCheckpoint(name, k, th); err != nil {
						errs <- err
						return
					}
				}
				if err := s.PutBackward(name, []BackwardResult{{Step: k, Theta: th}}, &RunState{State: StateRunning, BackwardStep: k}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 15 {
			name := fmt.Sprint("tmp", i%2)
			if err := s.CreateRun(testConfig(name, dim), testTheta0(9, dim)); err != nil {
				errs <- err
				return
			}
			if err := s.DeleteRun(name); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for w := range 3 {
		name := fmt.Sprint("w", w)
		dst := make([]float32, dim)
		if err := s.Checkpoint(name, steps, dst); err != nil || !equalBits(dst, forwardTo(uint64(w+1), dim, steps)) {
			t.Errorf("run %s: final checkpoint: %v", name, err)
		}
	}
}

// TestGCTimerReclaims checks the GC timer (not an explicit GC call) reclaims
// a deleted run's value log.
func TestGCTimerReclaims(t *testing.T) {
	s, err := Open(testOptions(t.TempDir()).WithGCInterval(10 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { checkStore(t, s); s.Close() })
	const dim = 100_000
	if err := s.CreateRun(testConfig("big", dim), testTheta0(1, dim)); err != nil {
		t.Fatal(err)
	}
	appendSteps(t, s, "big", 1, 1, 20)
	for k := 1; k <= 20; k++ {
		if err := s.PutCheckpoint("big", k, forwardTo(1, dim, k)); err != nil {
			t.Fatal(err)
		}
	}
	_, before := s.Size()
	if err := s.DeleteRun("big"); err != nil {
		t.Fatal(err)
	}
	// The deadline only guards against a timer that never reclaims: GC
	// rounds take about a second each under the race detector on a loaded
	// 2-core machine (9.5 s in all measured there), so it is far above that.
	const patience = 2 * time.Minute
	deadline := time.Now().Add(patience)
	start := time.Now()
	for {
		_, after := s.Size()
		if after < before/2 {
			t.Logf("value log %d bytes, %d after the timer's GC (%v)", before, after, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("value log still %d bytes (%d before deleting) after %v of GC timer", after, before, patience)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}
