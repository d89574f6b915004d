package extmodel

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/internal/fakechild"
	"github.com/replay-sgd/replay/nn"
	"github.com/replay-sgd/replay/nnfamily"
	"github.com/replay-sgd/replay/scheduler"
)

// The whole system over a fake external model: the in-process scheduler on
// a real Badger store, the fake child over real pipes.

const (
	runSteps = 30
	runBatch = 2
	runLR    = 0.05
	runSeed  = 3
)

// startScheduler runs a scheduler over fams on a fresh store; it is
// stopped (and its store closed) before the family's cleanup closes the
// children.
func startScheduler(t *testing.T, fams ...family.Family) *scheduler.Scheduler {
	t.Helper()
	store, err := ckpt.Open(ckpt.DefaultOptions(t.TempDir()).WithGCInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.New(store, scheduler.DefaultOptions().WithFamilies(append([]family.Family{nnfamily.New()}, fams...)...).
		WithWorkers(2).WithMaxLag(8).WithWindow(8).WithEvents(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("scheduler: %v", err)
		}
		if err := store.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// waitState waits (deadline 2 min: a loaded 2-core machine) until run
// name is done or failed and returns its status.
func waitState(t *testing.T, s *scheduler.Scheduler, name string) api.RunStatus {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := s.Status(name)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == "done" && st.BackwardStep == st.Steps || st.State == "failed" {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s still %s at forward %d backward %d", name, st.State, st.ForwardStep, st.BackwardStep)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reference recomputes the forward iterates and the full backward
// iterates of the fake model with the daemon's sampler: θ̃_n =
// T_1∘…∘T_n(θ_0), T_n applied first.
func reference(steps int) (fwd, bwd [][]float32) {
	sampler := nn.NewSampler(fakechild.Train, runBatch, runSeed)
	batches := make([][]int32, steps+1)
	for k := 1; k <= steps; k++ {
		batches[k] = make([]int32, runBatch)
		sampler.Batch(k, batches[k])
	}
	o := fakechild.Optim{Name: "sgd"}
	th := fakechild.Init(runSeed)
	fwd = append(fwd, append([]float32(nil), th...))
	bwd = append(bwd, append([]float32(nil), th...))
	for n := 1; n <= steps; n++ {
		fakechild.Step(th, n, batches[n], runLR, o)
		fwd = append(fwd, append([]float32(nil), th...))
		b := fakechild.Init(runSeed)
		for k := n; k >= 1; k-- {
			fakechild.Step(b, k, batches[k], runLR, o)
		}
		bwd = append(bwd, b)
	}
	return fwd, bwd
}

func applyCount(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

func params(t *testing.T, s *scheduler.Scheduler, name, kind string, n int) []float32 {
	t.Helper()
	_, theta, err := s.Params(context.Background(), name, kind, n)
	if err != nil {
		t.Fatalf("%s %s %d: %v", name, kind, n, err)
	}
	return theta
}

// TestSchedulerRun: a full-strategy run of the fake model gives exactly
// the recomputed forward and backward iterates, with one apply round trip
// per forward step and per backward job; Verify replays it.
func TestSchedulerRun(t *testing.T) {
	count := filepath.Join(t.TempDir(), "count")
	f := newFamily(t, testOptions(io.Discard), fakeCmd(t, "", fakechild.EnvCount+"="+count))
	s := startScheduler(t, f)
	_, err := s.Create(api.RunSpec{Name: "r", Model: "ext:fake", LR: runLR, Batch: runBatch, Steps: runSteps,
		Seed: api.Ptr(uint64(runSeed)), Strategy: scheduler.StrategyFull, EvalEvery: api.Ptr(5)})
	if err != nil {
		t.Fatal(err)
	}
	st := waitState(t, s, "r")
	if st.State != "done" {
		t.Fatalf("run %s: %s", st.State, st.Reason)
	}
	if st.Spec.Dataset != "ext:fake" {
		t.Errorf("dataset %q, want the model's own, ext:fake", st.Spec.Dataset)
	}
	// Every forward step and every backward job is one apply request.
	if got := applyCount(t, count); got != 2*runSteps {
		t.Errorf("%d apply round trips for %d forward steps and %d backward jobs, want %d", got, runSteps, runSteps, 2*runSteps)
	}
	fwd, bwd := reference(runSteps)
	for _, n := range []int{1, 2, 7, 16, runSteps} {
		if got := params(t, s, "r", "forward", n); !equalBits(got, fwd[n]) {
			t.Errorf("forward %d: %v, want %v", n, got, fwd[n])
		}
		if got := params(t, s, "r", "backward", n); !equalBits(got, bwd[n]) {
			t.Errorf("backward %d: %v, want %v", n, got, bwd[n])
		}
	}
	rep, err := s.Verify(context.Background(), "r")
	if err != nil || len(rep.Problems) > 0 || rep.Steps == 0 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}

// TestSchedulerChildKilled: a child SIGKILLed mid-reply during a run is
// replaced and the run finishes bitwise equal to an uninterrupted one; a
// model whose child always crashes fails its run with the reason while the
// daemon goes on serving the other.
func TestSchedulerChildKilled(t *testing.T) {
	dir := t.TempDir()
	once := filepath.Join(dir, "once")
	os.WriteFile(once, nil, 0o600)
	count := filepath.Join(dir, "count")
	f := newFamily(t, testOptions(io.Discard), fakeCmd(t, "sigkill",
		fakechild.EnvOnce+"="+once, fakechild.EnvCount+"="+count, fakechild.EnvAt+"=25"))
	if err := f.Register(context.Background(), "bad", fakeCmd(t, "crash")); err != nil {
		t.Fatal(err)
	}
	if err := f.Register(context.Background(), "ok", fakeCmd(t, "")); err != nil {
		t.Fatal(err)
	}
	s := startScheduler(t, f)
	spec := func(name, model string) api.RunSpec {
		return api.RunSpec{Name: name, Model: model, LR: runLR, Batch: runBatch, Steps: runSteps,
			Seed: api.Ptr(uint64(runSeed)), Strategy: scheduler.StrategySliding, Window: 5, EvalEvery: api.Ptr(5)}
	}
	for _, r := range [][2]string{{"killed", "ext:fake"}, {"clean", "ext:ok"}, {"failing", "ext:bad"}} {
		if _, err := s.Create(spec(r[0], r[1])); err != nil {
			t.Fatal(err)
		}
	}
	bad := waitState(t, s, "failing")
	if bad.State != "failed" || !strings.Contains(bad.Reason, "segmentation fault (simulated)") || !strings.Contains(bad.Reason, "failed 3 times in a row") {
		t.Errorf("failing run: %s, %q: want failed with the child's stderr and the attempts", bad.State, bad.Reason)
	}
	for _, name := range []string{"killed", "clean"} {
		if st := waitState(t, s, name); st.State != "done" {
			t.Fatalf("run %s: %s %q", name, st.State, st.Reason)
		}
	}
	if _, err := os.Stat(once); !os.IsNotExist(err) {
		t.Fatalf("the child was never killed (the fault's marker is still there)")
	}
	if started := f.Models()[0].Started; started < 2 {
		t.Fatalf("%d children of the killed model started, want a fresh one after the kill", started)
	}
	for n := 1; n <= runSteps; n++ {
		for _, kind := range []string{"forward", "backward"} {
			if a, b := params(t, s, "killed", kind, n), params(t, s, "clean", kind, n); !equalBits(a, b) {
				t.Fatalf("%s %d: the run with a killed child has %v, the clean one %v", kind, n, a, b)
			}
		}
	}
	if _, err := s.Status("clean"); err != nil {
		t.Fatal(err)
	}
}

// TestSchedulerEvalFails: a model whose evaluation always fails fails its
// run with the child's reason, not as a divergence (the NaNs of a failed
// measure are not losses).
func TestSchedulerEvalFails(t *testing.T) {
	f := newFamily(t, testOptions(io.Discard), fakeCmd(t, "evalcrash"))
	s := startScheduler(t, f)
	if _, err := s.Create(api.RunSpec{Name: "e", Model: "ext:fake", LR: runLR, Batch: runBatch, Steps: runSteps, EvalEvery: api.Ptr(5)}); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, s, "e")
	if st.State != "failed" || !strings.Contains(st.Reason, "out of memory in evaluate (simulated)") || strings.Contains(st.Reason, "NaN") {
		t.Fatalf("run %s, %q: want failed with the child's stderr line", st.State, st.Reason)
	}
}

// TestSchedulerResume: a run stopped mid-way (the scheduler cancelled, the
// store closed and reopened, fresh children) resumes to the iterates of
// an uninterrupted run, bitwise.
func TestSchedulerResume(t *testing.T) {
	f := newFamily(t, testOptions(io.Discard), fakeCmd(t, ""))
	dir := t.TempDir()
	open := func() (*scheduler.Scheduler, func()) {
		store, err := ckpt.Open(ckpt.DefaultOptions(dir).WithGCInterval(0))
		if err != nil {
			t.Fatal(err)
		}
		s, err := scheduler.New(store, scheduler.DefaultOptions().WithFamilies(nnfamily.New(), f).
			WithWorkers(2).WithMaxLag(4).WithEvents(io.Discard))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		return s, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("scheduler: %v", err)
			}
			if err := store.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	s, stop := open()
	if _, err := s.Create(api.RunSpec{Name: "r", Model: "ext:fake", LR: runLR, Batch: runBatch, Steps: runSteps,
		Seed: api.Ptr(uint64(runSeed)), Strategy: scheduler.StrategyFull, CheckpointEvery: 7, EvalEvery: api.Ptr(5)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := s.Status("r")
		if err != nil {
			t.Fatal(err)
		}
		if st.BackwardStep >= 10 {
			t.Logf("stopping at forward %d, backward %d", st.ForwardStep, st.BackwardStep)
			if st.BackwardStep == runSteps {
				t.Logf("the run finished before the stop (backward %d): the resume is of a done run", st.BackwardStep)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run at backward %d after 2 min", st.BackwardStep)
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	s, stop = open()
	defer stop()
	if st := waitState(t, s, "r"); st.State != "done" {
		t.Fatalf("resumed run %s: %s", st.State, st.Reason)
	}
	fwd, bwd := reference(runSteps)
	for n := 1; n <= runSteps; n++ {
		if got := params(t, s, "r", "forward", n); !equalBits(got, fwd[n]) {
			t.Fatalf("forward %d after the resume: %v, want %v", n, got, fwd[n])
		}
		if got := params(t, s, "r", "backward", n); !equalBits(got, bwd[n]) {
			t.Fatalf("backward %d after the resume: %v, want %v", n, got, bwd[n])
		}
	}
}

// TestPresetsRegistered: with the model registered under the preset's
// name, the presets of external models resolve to their settings, the
// model's own data set and evaluation subsets.
func TestPresetsRegistered(t *testing.T) {
	f := newFamily(t, testOptions(io.Discard), fakeCmd(t, ""))
	if err := f.Register(context.Background(), "fmnist-cnn", fakeCmd(t, "")); err != nil {
		t.Fatal(err)
	}
	fams := []family.Family{nnfamily.New(), f}
	cfg, err := scheduler.Resolve(fams, api.RunSpec{Preset: "fmnist-cnn"}, 256)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Model != "ext:fmnist-cnn" || cfg.Dataset != "ext:fmnist-cnn" || cfg.LR != 0.01 || cfg.Batch != 8 || cfg.Steps != 2000 ||
		cfg.Window != 128 || cfg.EvalEvery != 10 || cfg.EvalSize != 1000 || cfg.Dim != fakechild.Theta {
		t.Errorf("fmnist-cnn: %+v", cfg)
	}
	// The other preset's model is not registered: refused with its flag.
	if _, err := scheduler.Resolve(fams, api.RunSpec{Preset: "fmnist-resnet18"}, 256); err == nil ||
		!strings.Contains(err.Error(), "--torch-model fmnist-resnet18=examples/resnet18_fmnist.py") {
		t.Errorf("fmnist-resnet18 without its model: %v", err)
	}
	// Without a preset, an external model evaluates like Fashion-MNIST: every
	// 10 steps on 1000 examples (here: the whole split of 100).
	cfg, err = scheduler.Resolve(fams, api.RunSpec{Model: "ext:fake"}, 256)
	if err != nil || cfg.EvalEvery != 10 || cfg.EvalSize != 1000 || cfg.Batch != scheduler.DefaultBatch {
		t.Errorf("ext:fake defaults: %+v, %v", cfg, err)
	}
}
