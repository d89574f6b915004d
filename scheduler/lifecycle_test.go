package scheduler

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
)

func TestCreateNamesAndConflicts(t *testing.T) {
	store := openStore(t, t.TempDir())
	s, err := New(store, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	// Created before Run: stored, started when Run begins.
	a, err := s.Create(api.RunSpec{Preset: "quadratic", Steps: 50})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Create(api.RunSpec{Preset: "quadratic", Steps: 50})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Create(api.RunSpec{Dataset: "regression-sin", Model: "mlp:4", Steps: 50})
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "quadratic-1" || b.Name != "quadratic-2" || c.Name != "mlp-4-1" {
		t.Fatalf("names %s %s %s", a.Name, b.Name, c.Name)
	}
	if _, err := s.Create(api.RunSpec{Preset: "quadratic", Name: "quadratic-1"}); !isErr(err, ErrConflict) {
		t.Fatalf("duplicate name: %v", err)
	}
	if _, err := s.Create(api.RunSpec{Preset: "fmnist-mlp", DataPath: t.TempDir()}); !isErr(err, ErrInvalid) {
		t.Fatalf("missing data: %v", err)
	}
	if a.State != ckpt.StateRunning || a.ForwardStep != 0 {
		t.Fatalf("status before Run: %+v", a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	h := &harness{t: t, s: s, store: store}
	for _, n := range []string{a.Name, b.Name, c.Name} {
		h.wait(n, ckpt.StateDone)
	}
	if got := s.List(); len(got) != 3 || got[0].Name != "mlp-4-1" {
		t.Fatalf("list: %+v", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPauseResumeDelete(t *testing.T) {
	h := startHarness(t, openStore(t, t.TempDir()), testOptions())
	h.create(api.RunSpec{Dataset: "regression-sin", Model: "mlp:64x2", Name: "p", Steps: 3000, Batch: 10, LR: 0.001, Window: 64})
	h.waitUntil("backward progress", func(st api.RunStatus) bool { return st.BackwardStep > 0 }, "p")
	st, err := h.s.Pause("p")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != ckpt.StatePaused {
		t.Fatalf("after pause: %+v", st)
	}
	_, stored, err := h.store.Run("p")
	if err != nil || stored.State != ckpt.StatePaused || stored.ForwardStep != st.ForwardStep || stored.BackwardStep != st.BackwardStep {
		t.Fatalf("stored state %+v vs status %+v (%v)", stored, st, err)
	}
	// While p is paused, a whole other run goes through the same workers:
	// had p kept a job or its trainer going, it would have progressed.
	h.create(api.RunSpec{Preset: "quadratic", Name: "other", Steps: 200, Window: 16})
	h.wait("other", ckpt.StateDone)
	if again, _ := h.s.Status("p"); again.ForwardStep != st.ForwardStep || again.BackwardStep != st.BackwardStep {
		t.Fatalf("a paused run progressed: %+v then %+v", st, again)
	}
	if err := h.s.Delete("other"); err != nil {
		t.Fatal(err)
	}
	if st.BackwardStep > st.ForwardStep || st.ForwardStep-max(st.BackwardStep, 0) > 64+forwardChunk {
		t.Fatalf("lag bound broken: forward %d backward %d", st.ForwardStep, st.BackwardStep)
	}
	if _, err := h.s.Resume("p"); err != nil {
		t.Fatal(err)
	}
	// Delete a run that is computing again, not one still paused.
	h.waitUntil("progress after resume", func(again api.RunStatus) bool {
		return again.State == ckpt.StateRunning && again.BackwardStep > st.BackwardStep
	}, "p")
	if err := h.s.Delete("p"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.s.Status("p"); !isErr(err, ErrNotFound) {
		t.Fatalf("status after delete: %v", err)
	}
	if names, _ := h.store.Runs(); len(names) != 0 {
		t.Fatalf("store still has %v", names)
	}
	if _, err := h.s.Pause("p"); !isErr(err, ErrNotFound) {
		t.Fatalf("pause after delete: %v", err)
	}
	// The name is free again.
	h.create(api.RunSpec{Preset: "quadratic", Name: "p", Steps: 20})
	h.wait("p", ckpt.StateDone)
}

func TestRegisterMetrics(t *testing.T) {
	h := startHarness(t, openStore(t, t.TempDir()), testOptions())
	reg := prometheus.NewRegistry()
	if err := h.s.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := h.s.Register(reg); err == nil {
		t.Fatal("registering twice succeeded")
	}
	h.create(api.RunSpec{Preset: "quadratic", Name: "m", Steps: 100, Window: 10})
	h.wait("m", ckpt.StateDone)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetValue() + "}"
			}
			switch {
			case m.Counter != nil:
				got[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				got[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				got[key] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	// 100 forward steps; 100 backward results; window 10 costs
	// 1+2+…+10 per segment of 10 steps: 10·55 applications backward.
	if got["replay_steps_total{forward}"] != 100 || got["replay_steps_total{backward}"] != 100 ||
		got["replay_operator_applications_total"] != 100+550 || got["replay_job_seconds"] != 100 ||
		got["replay_queue_depth"] != 0 || got["replay_store_bytes"] <= 0 || got["replay_runs"] != 1 {
		t.Fatalf("metrics: %v", got)
	}
}
