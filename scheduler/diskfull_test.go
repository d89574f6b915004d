package scheduler

import (
	"math"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
)

// A disk that fills while both loops write pauses the run — the trainer and
// the backward loop keep what they have to write in memory and retry — and
// the run, once space returns, is bitwise the run of a roomy disk. Before
// the backward loop retried, its first refused flush failed the run.
func TestDiskFullPausesBothLoops(t *testing.T) {
	const reserve = 100 << 20
	var free atomic.Int64 // bytes the "file system" has left
	var askedLow atomic.Int64
	free.Store(1 << 40)
	opts := ckpt.DefaultOptions(t.TempDir()).WithGCInterval(0).WithMinFreeDisk(reserve).
		WithFreeSpace(func(string) (int64, bool) {
			f := free.Load()
			if f < reserve {
				askedLow.Add(1)
			}
			return f, true
		})
	store, err := ckpt.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// Strategy full: the backward loop lags the trainer (job n costs n
	// applications), so it always has results to write when the disk fills.
	// Its cost is quadratic in the steps: -short (the race run) takes fewer.
	steps := 150
	if testing.Short() {
		steps = 80
	}
	spec := api.RunSpec{Name: "d", Preset: "regression", Steps: steps, Strategy: StrategyFull, EvalEvery: api.Ptr(10)}
	h := startHarness(t, store, testOptions())
	h.create(spec)
	h.waitUntil("backward past a quarter", func(st api.RunStatus) bool { return st.BackwardStep >= steps/4 }, "d")
	free.Store(10 << 20) // below half the reserve: every write is refused
	st := h.waitUntil("the disk-full reason", func(st api.RunStatus) bool {
		if st.State == ckpt.StateFailed {
			t.Fatalf("run failed on a full disk instead of pausing: %s", st.Reason)
		}
		return strings.Contains(st.Reason, "disk full")
	}, "d")
	// Both loops retry once a second: many refusals later the run is still
	// running, and the backward frontier has stopped short of the trainer's
	// (it has results it could not write).
	h.waitUntil("refusals", func(st api.RunStatus) bool {
		if st.State != ckpt.StateRunning {
			t.Fatalf("run %s on a full disk (%s), want running", st.State, st.Reason)
		}
		return askedLow.Load() >= 8
	}, "d")
	if st.BackwardStep >= spec.Steps {
		t.Fatalf("backward frontier %d: the disk filled too late to test anything", st.BackwardStep)
	}
	free.Store(1 << 40)
	h.wait("d", ckpt.StateDone)
	h.stop()

	// The same run on a roomy disk.
	store2 := openStore(t, t.TempDir())
	defer store2.Close()
	h2 := startHarness(t, store2, testOptions())
	h2.create(spec)
	h2.wait("d", ckpt.StateDone)
	h2.stop()
	for _, kind := range []string{"forward", "backward"} {
		a, b := metricsOf(t, store, "d", kind, 0), metricsOf(t, store2, "d", kind, 0)
		if len(a) != len(b) || len(a) != spec.Steps {
			t.Fatalf("%s: %d and %d steps, want %d", kind, len(a), len(b), spec.Steps)
		}
		for i := range a {
			if !sameMetrics(a[i], b[i]) {
				t.Fatalf("%s step %d after a full disk %+v, on a roomy disk %+v", kind, a[i].Step, a[i], b[i])
			}
		}
	}
	// And the parameters: the last forward checkpoint and the kept last
	// backward iterate, bit for bit.
	cfg, _, err := store.Run("d")
	if err != nil {
		t.Fatal(err)
	}
	vec := func(s *ckpt.Store, kind string) []float32 {
		v := make([]float32, cfg.Dim)
		if kind == "forward" {
			if err := s.Checkpoint("d", spec.Steps, v); err != nil {
				t.Fatal(err)
			}
		} else if ok, err := s.BackwardTheta("d", 0, spec.Steps, v); err != nil || !ok {
			t.Fatalf("backward θ of step %d: kept %v, %v", spec.Steps, ok, err)
		}
		return v
	}
	for _, kind := range []string{"forward", "backward"} {
		a, b := vec(store, kind), vec(store2, kind)
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				t.Fatalf("%s θ_%d[%d]: %v after a full disk, %v on a roomy disk", kind, spec.Steps, i, a[i], b[i])
			}
		}
	}
}
