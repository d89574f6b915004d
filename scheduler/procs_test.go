package scheduler

import (
	"runtime"
	"testing"
	"time"

	"github.com/replay-sgd/replay/nn"
)

// TestWorkersReserveProcs: while Run runs, each of the pool's workers holds
// one extra P (with OpenBLAS; see nn.ReserveProc), so that two workers in
// BLAS calls on two cores do not have their Ps taken away on every call;
// when Run returns, GOMAXPROCS is what it was.
func TestWorkersReserveProcs(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	base := runtime.GOMAXPROCS(0)
	const workers = 3
	want := base
	if nn.BLASBackend() == "openblas" {
		want = base + workers
	}
	store := openStore(t, t.TempDir())
	defer store.Close()
	h := startHarness(t, store, DefaultOptions().WithFamilies(testFamilies...).WithWorkers(workers))
	// The workers start in the background: wait for them with a deadline.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.GOMAXPROCS(0) != want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := runtime.GOMAXPROCS(0); got != want {
		t.Fatalf("with %d workers running: GOMAXPROCS = %d, want %d", workers, got, want)
	}
	h.stop()
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Errorf("after Run returned: GOMAXPROCS = %d, want %d", got, base)
	}
}
