package ckpt

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func TestExpectedCheckpoints(t *testing.T) {
	for _, c := range []struct {
		every, steps, f int
		want            []int
	}{
		{50, 120, 120, []int{50, 100, 120}},
		{50, 120, 99, []int{50}},
		{50, 100, 100, []int{50, 100}},
		{50, 100, 49, nil},
		{0, 100, 100, nil}, // no schedule stored: nothing expected
		{1, 3, 3, []int{1, 2, 3}},
	} {
		got := ExpectedCheckpoints(RunConfig{CheckpointEvery: c.every, Steps: c.steps}, c.f)
		if !slices.Equal(got, c.want) {
			t.Errorf("every %d, steps %d, forward %d: %v, want %v", c.every, c.steps, c.f, got, c.want)
		}
	}
}

// scheduledRun stores run "r" (dim 300, 40 steps, a checkpoint every 10)
// the way the trainer does: each checkpoint in the AppendForward of its step.
func scheduledRun(t *testing.T, s *Store) RunConfig {
	t.Helper()
	const seed, dim = 7, 300
	cfg := testConfig("r", dim)
	cfg.Seed, cfg.Steps, cfg.CheckpointEvery = seed, 40, 10
	if err := s.CreateRun(cfg, testTheta0(seed, dim)); err != nil {
		t.Fatal(err)
	}
	theta := testTheta0(seed, dim)
	for k := 1; k <= cfg.Steps; k++ {
		b := testBatch(seed, k, 8, 1000)
		testStep(theta, b)
		fs := ForwardStep{Step: k, Batch: b}
		if k%cfg.CheckpointEvery == 0 {
			fs.Checkpoint = theta
		}
		if err := s.AppendForward("r", []ForwardStep{fs}, RunState{State: StateRunning}); err != nil {
			t.Fatal(err)
		}
	}
	return cfg
}

// AppendForward stores a step's checkpoint with the step; a checkpoint of
// the wrong length refuses the whole append.
func TestAppendForwardCheckpoint(t *testing.T) {
	s := openTest(t, t.TempDir())
	cfg := scheduledRun(t, s)
	steps, err := s.Checkpoints("r")
	if err != nil || !slices.Equal(steps, []int{0, 10, 20, 30, 40}) {
		t.Fatalf("checkpoints %v %v, want 0 10 20 30 40", steps, err)
	}
	got := make([]float32, cfg.Dim)
	if err := s.Checkpoint("r", 30, got); err != nil || !equalBits(got, forwardTo(cfg.Seed, cfg.Dim, 30)) {
		t.Fatalf("checkpoint 30 is not θ30 (%v)", err)
	}
	err = s.AppendForward("r", []ForwardStep{{Step: 41, Batch: testBatch(7, 41, 8, 1000), Checkpoint: make([]float32, 3)}}, RunState{State: StateRunning})
	if !errors.Is(err, ErrDim) {
		t.Fatalf("short checkpoint: %v, want ErrDim", err)
	}
	if _, st, _ := s.Run("r"); st.ForwardStep != 40 {
		t.Fatalf("refused append moved the forward step to %d", st.ForwardStep)
	}
}

// A run that lost checkpoints 20 and 30 (as stores written before the commit
// order was fixed did): Verify names both, RepairCheckpoints recomputes them
// bitwise, and Verify passes again.
func TestRepairMissingCheckpoints(t *testing.T) {
	s := openTest(t, t.TempDir())
	cfg := scheduledRun(t, s)
	err := s.db.Update(func(txn *badger.Txn) error {
		for _, k := range []int{20, 30} {
			if err := txn.Delete(runKey("r", kindCheckpoint, k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.Verify("r", testReplay)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 2 || !strings.Contains(rep.Problems[0], "checkpoint 20 missing") || !strings.Contains(rep.Problems[1], "checkpoint 30 missing") {
		t.Fatalf("verify of a run without checkpoints 20, 30: %q", rep.Problems)
	}
	done, err := s.RepairCheckpoints("r", testReplay)
	if err != nil || !slices.Equal(done, []int{20, 30}) {
		t.Fatalf("repair: %v %v, want [20 30]", done, err)
	}
	got := make([]float32, cfg.Dim)
	for _, k := range done {
		if err := s.Checkpoint("r", k, got); err != nil || !equalBits(got, forwardTo(cfg.Seed, cfg.Dim, k)) {
			t.Fatalf("repaired checkpoint %d is not θ%d (%v)", k, k, err)
		}
	}
	if done, err := s.RepairCheckpoints("r", testReplay); err != nil || len(done) != 0 {
		t.Fatalf("second repair: %v %v, want nothing to do", done, err)
	}
	// openTest's cleanup verifies the run: no problem left.
}
