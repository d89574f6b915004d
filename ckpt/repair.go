package ckpt

import (
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// ExpectedCheckpoints returns the steps ≥ 1 at which a run with cfg, logged
// up to forward step f, has a checkpoint when nothing was lost: every
// cfg.CheckpointEvery-th step up to f, and cfg.Steps once f reached it (the
// trainer's schedule). A config without a schedule (CheckpointEvery ≤ 0)
// expects none. θ0 (step 0) is always expected and not listed.
func ExpectedCheckpoints(cfg RunConfig, f int) []int {
	if cfg.CheckpointEvery <= 0 {
		return nil
	}
	var out []int
	for k := cfg.CheckpointEvery; k <= f; k += cfg.CheckpointEvery {
		out = append(out, k)
	}
	if cfg.Steps > 0 && f >= cfg.Steps && (len(out) == 0 || out[len(out)-1] != cfg.Steps) {
		out = append(out, cfg.Steps)
	}
	return out
}

// missingCheckpoints lists the expected checkpoints (ExpectedCheckpoints)
// that are not among have (sorted).
func missingCheckpoints(cfg RunConfig, st RunState, have []int) []int {
	var out []int
	for _, k := range ExpectedCheckpoints(cfg, st.ForwardStep) {
		if _, ok := slices.BinarySearch(have, k); !ok {
			out = append(out, k)
		}
	}
	return out
}

// RepairCheckpoints recomputes every expected checkpoint the run lacks
// (ExpectedCheckpoints) or holds damaged (a CorruptionError) by replaying the batch log from the nearest stored
// checkpoint before it, and stores it (synced, as PutCheckpoint); replay must
// be the run's operator, deterministic, so the result is bitwise the
// checkpoint the run would have written. It returns the steps it stored, in
// order. θ0 cannot be recomputed (a damaged one stays reported by Verify).
func (s *Store) RepairCheckpoints(name string, replay Replayer) ([]int, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	var (
		cfg     RunConfig
		missing []int
	)
	err := s.view(func(txn *badger.Txn) error {
		var err error
		if cfg, err = readConfig(txn, name); err != nil {
			return err
		}
		st, err := readState(txn, name)
		if err != nil {
			return err
		}
		have := keySteps(txn, runKey(name, kindCheckpoint))
		missing = missingCheckpoints(cfg, st, have)
		// Damaged scheduled checkpoints are recomputed as well.
		theta := make([]float32, cfg.Dim)
		for _, k := range have {
			if k == 0 || k > st.ForwardStep || !slices.Contains(ExpectedCheckpoints(cfg, st.ForwardStep), k) {
				continue
			}
			if err := readParams(txn, name, "checkpoint", runKey(name, kindCheckpoint, k), k, theta); errors.Is(err, ErrCorrupt) {
				missing = append(missing, k)
			}
		}
		slices.Sort(missing)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ckpt: repair checkpoints of %q: %w", name, err)
	}
	var done []int
	theta := make([]float32, cfg.Dim)
	for _, k := range missing {
		// The previous missing one, if any, is stored by now: each
		// replay spans at most one checkpoint interval.
		from, err := s.goodCheckpointBefore(name, k, theta)
		if err != nil {
			return done, fmt.Errorf("ckpt: repair checkpoint %d of %q: %w", k, name, err)
		}
		bs, err := s.Batches(name, from+1, k)
		if err != nil {
			return done, fmt.Errorf("ckpt: repair checkpoint %d of %q: %w", k, name, err)
		}
		if err := replay(theta, from, bs); err != nil {
			return done, fmt.Errorf("ckpt: repair checkpoint %d of %q: replay of steps %d..%d: %w", k, name, from+1, k, err)
		}
		if err := s.PutCheckpoint(name, k, theta); err != nil {
			return done, fmt.Errorf("ckpt: repair: %w", err)
		}
		done = append(done, k)
	}
	return done, nil
}

// goodCheckpointBefore loads the readable checkpoint with the largest step
// below k into dst and returns its step.
func (s *Store) goodCheckpointBefore(name string, k int, dst []float32) (int, error) {
	steps, err := s.Checkpoints(name)
	if err != nil {
		return 0, err
	}
	for i := len(steps) - 1; i >= 0; i-- {
		if steps[i] >= k {
			continue
		}
		err := s.Checkpoint(name, steps[i], dst)
		if err == nil {
			return steps[i], nil
		}
		if !errors.Is(err, ErrCorrupt) {
			return 0, err
		}
	}
	return 0, fmt.Errorf("%w: run %q: no readable checkpoint before step %d", ErrNotFound, name, k)
}
