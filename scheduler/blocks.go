package scheduler

import (
	"context"

	"github.com/replay-sgd/replay/internal/blocksum"
)

// ForwardBlocks calls fn, in order, with the stored summary of every block
// of blocksum.Steps forward steps with index in [from, to) that has one
// (block i covers steps [1+i·blocksum.Steps, (i+1)·blocksum.Steps]).
// Blocks that are not complete, or were logged before the store wrote
// summaries, are skipped: their points come from Trajectory. The web
// view's series fill their block cache from these instead of reading
// every point (server/series_blocks.go).
func (s *Scheduler) ForwardBlocks(ctx context.Context, name string, from, to int, fn func(i int, sum blocksum.Summary) error) error {
	if _, err := s.get(name); err != nil {
		return err
	}
	if err := s.store.ForwardBlocks(name, from, to, func(i int, sum blocksum.Summary) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(i, sum)
	}); err != nil {
		return storeErr(name, err)
	}
	return nil
}
