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
	evs := collectEvents(t, h.s, "d")
	h.waitUntil("backward past a quarter", func(st api.RunStatus) bool { return st.BackwardStep >= steps/4 }, "d")
	free.Store(10 << 20) // below half the reserve: every write is refused
	st := h.waitUntil("the disk-full pause", func(st api.RunStatus) bool {
		if st.State == ckpt.StateFailed {
			t.Fatalf("run failed on a full disk instead of pausing: %s", st.Reason)
		}
		return st.State == ckpt.StatePaused
	}, "d")
	if !strings.HasPrefix(st.Reason, "disk full: 10 MiB free, need ") {
		t.Fatalf("paused run's reason %q, want \"disk full: 10 MiB free, need …\"", st.Reason)
	}
	// Both loops retry once a second: many refusals later the run is still
	// paused, and the backward frontier has stopped short of the trainer's
	// (it has results it could not write).
	h.waitUntil("refusals", func(st api.RunStatus) bool {
		if st.State != ckpt.StatePaused {
			t.Fatalf("run %s on a full disk (%s), want paused", st.State, st.Reason)
		}
		return askedLow.Load() >= 8
	}, "d")
	if st.BackwardStep >= spec.Steps {
		t.Fatalf("backward frontier %d: the disk filled too late to test anything", st.BackwardStep)
	}
	// Resume while the disk is still full: refused with the reason, and
	// the run stays paused.
	if _, err := h.s.Resume("d"); !isErr(err, ErrNoSpace) || !isErr(err, api.ErrNoSpace) || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("resume on a full disk: %v, want ErrNoSpace with the reason", err)
	}
	if st, _ := h.s.Status("d"); st.State != ckpt.StatePaused {
		t.Fatalf("after a refused resume: %s (%s)", st.State, st.Reason)
	}
	// Space is back: resume retries the writes at once and answers with
	// the status after the retry.
	free.Store(1 << 40)
	if st, err := h.s.Resume("d"); err != nil || st.State == ckpt.StatePaused {
		t.Fatalf("resume once space returned: %+v, %v; want the run going on", st, err)
	}
	h.wait("d", ckpt.StateDone)
	h.stop()
	// The event stream told the pause, with the reason, and its end.
	paused, resumed := -1, -1
	for i, ev := range evs() {
		switch {
		case ev.Kind == api.EventFailed:
			t.Fatalf("event %d: failed %v", i, ev.Fields)
		case ev.Kind == api.EventState && paused < 0 && ev.Status.State == ckpt.StatePaused:
			if !strings.HasPrefix(ev.Fields["reason"], "disk full: 10 MiB free") || ev.Status.Reason != ev.Fields["reason"] {
				t.Fatalf("paused event %v, status reason %q", ev.Fields, ev.Status.Reason)
			}
			paused = i
		case ev.Kind == api.EventState && ev.Fields["reason"] == "space" && resumed < 0:
			if ev.Status.State != ckpt.StateRunning {
				t.Fatalf("resumed event with the status %s (%s)", ev.Status.State, ev.Status.Reason)
			}
			resumed = i
		}
	}
	if paused < 0 || resumed < paused {
		t.Fatalf("events: paused at %d, resumed at %d; want a paused state event, then a resumed one", paused, resumed)
	}
	if ev := h.events.String(); !strings.Contains(ev, "event=paused reason=\"disk full: 10 MiB free") || !strings.Contains(ev, "event=resumed reason=space") {
		t.Fatalf("event log without the pause and its end:\n%s", ev)
	}

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

// collectEvents follows the events of run name until its done, failed or
// deleted event or the scheduler stops; the function it returns waits for
// that end and returns them.
func collectEvents(t *testing.T, s *Scheduler, name string) func() []api.Event {
	t.Helper()
	next, stop, err := s.Subscribe(name, "")
	if err != nil {
		t.Fatal(err)
	}
	var evs []api.Event
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer stop()
		for {
			batch, ok := next(t.Context())
			if !ok {
				return
			}
			evs = append(evs, batch...)
			for _, ev := range batch {
				switch ev.Kind {
				case api.EventDone, api.EventFailed, api.EventDeleted:
					return
				}
			}
		}
	}()
	return func() []api.Event {
		<-done
		return evs
	}
}
