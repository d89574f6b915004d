package remote

import (
	"testing"

	"github.com/replay-sgd/replay/scheduler"
)

// TestFirstCheckPending: every result of a worker is checked until a check
// of the worker has completed, not only the first to arrive. Results are
// handled concurrently, and the first check can take long (an external
// model's child starting in the daemon); a worker wrong from its first
// result had the results that arrived meanwhile accepted unchecked, and
// its run then failed when its quarantine rechecked them (found by
// TestRemoteExtSpotCheck in cmd/replayd, about one run in four). Once a
// check has passed, only the share is checked (here none: share 0).
func TestFirstCheckPending(t *testing.T) {
	e := &Executor{cfg: Config{VerifyShare: 0}}
	e.mu.checked = map[string]bool{}
	e.mu.quar = map[string]bool{}
	id := func(step int) scheduler.JobID { return scheduler.JobID{Run: "r", Generation: 1 << 32, Step: step} }
	// Results 1 and 2 of w arrive; 1's check has not completed yet.
	if !e.shouldCheck("w", id(1)) {
		t.Fatal("the first result of a worker is not checked")
	}
	if !e.shouldCheck("w", id(2)) {
		t.Fatal("a result arriving while the worker's first check runs is accepted unchecked")
	}
	if !e.shouldCheck("v", id(2)) {
		t.Fatal("another worker's first result is not checked")
	}
	e.checkDone("w")
	for step := 3; step < 50; step++ {
		if e.shouldCheck("w", id(step)) {
			t.Fatalf("result %d checked after w's check passed, at share 0", step)
		}
	}
	if !e.shouldCheck("v", id(3)) {
		t.Fatal("v's results are trusted before a check of v completed")
	}
}
