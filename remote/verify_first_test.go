package remote

import (
	"testing"
	"time"

	"github.com/replay-sgd/replay/scheduler"
)

// TestFirstCheckPending: a result of a worker that arrives while the
// worker's first check runs is not accepted unchecked: it waits for that
// check's verdict, then is checked if the worker was quarantined, and
// otherwise follows the share (here none: share 0). Results are handled
// concurrently, and the first check can take long (an external model's
// child starting in the daemon); a worker wrong from its first result had
// the results that arrived meanwhile accepted unchecked, and its run then
// failed when its quarantine rechecked them (found by
// TestRemoteExtSpotCheck in cmd/replayd: 3 failures in 8 runs).
func TestFirstCheckPending(t *testing.T) {
	e := &Executor{cfg: Config{VerifyShare: 0}}
	e.mu.checked = map[string]bool{}
	e.mu.quar = map[string]bool{}
	id := func(step int) scheduler.JobID { return scheduler.JobID{Run: "r", Generation: 1 << 32, Step: step} }
	// later asks shouldCheck from another handler and returns its answer.
	later := func(worker string, step int) <-chan bool {
		c := make(chan bool, 1)
		go func() { c <- e.shouldCheck(worker, worker, id(step)) }()
		return c
	}
	for _, verdict := range []string{"passes", "quarantines"} {
		w := "w-" + verdict
		if !e.shouldCheck(w, w, id(1)) {
			t.Fatalf("%s: the first result of a worker is not checked", w)
		}
		second := later(w, 2)
		// A decision before the verdict is the defect (timing can only
		// hide it here, never invent it).
		select {
		case got := <-second:
			t.Fatalf("%s: result 2 decided (checked: %v) while result 1's check runs", w, got)
		case <-time.After(100 * time.Millisecond):
		}
		if verdict == "quarantines" {
			e.mu.Lock()
			e.mu.quar[w] = true
			e.mu.Unlock()
		}
		e.checkDone(w)
		if got, want := <-second, verdict == "quarantines"; got != want {
			t.Fatalf("%s: result 2 checked %v after the first check's verdict, want %v", w, got, want)
		}
		if got, want := e.shouldCheck(w, w, id(3)), verdict == "quarantines"; got != want {
			t.Fatalf("%s: result 3 checked %v, want %v", w, got, want)
		}
	}
	// A check that was not a worker's first releases nothing and waits for
	// nothing.
	e.checkDone("w-passes")
	if e.shouldCheck("w-passes", "w-passes", id(4)) {
		t.Fatal("result 4 of a trusted worker checked at share 0")
	}
}

// TestRestartedWorkerCheckedAgain: the first result of a worker process is
// checked, also when a process of the same name came before (a worker
// restarted, perhaps as another binary or on another machine); the rest
// of one process's results follow the share. Before, the check was keyed
// by name, so a restarted worker was never checked again.
func TestRestartedWorkerCheckedAgain(t *testing.T) {
	e := &Executor{cfg: Config{VerifyShare: 0}}
	e.mu.checked = map[string]bool{}
	e.mu.quar = map[string]bool{}
	id := func(step int) scheduler.JobID { return scheduler.JobID{Run: "r", Generation: 1 << 32, Step: step} }
	first, second := checkKey("w", newInstance()), checkKey("w", newInstance())
	if first == second {
		t.Fatalf("two instances named alike: %q", first)
	}
	for i, c := range []struct {
		key  string
		want bool
	}{{first, true}, {first, false}, {second, true}, {second, false}, {first, false}} {
		got := e.shouldCheck("w", c.key, id(i+1))
		if got != c.want {
			t.Fatalf("result %d (instance %d): checked %v, want %v", i+1, map[string]int{first: 1, second: 2}[c.key], got, c.want)
		}
		if got {
			e.checkDone(c.key)
		}
	}
}
