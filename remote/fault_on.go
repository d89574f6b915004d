//go:build replayfault

package remote

import (
	"context"
	"math"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// results counts the results corrupt has seen.
var results atomic.Int64

// corrupt, in a build with tag replayfault, changes the last bit of a
// result's first parameter: a worker returning wrong numbers, for the
// spot-check tests. REPLAY_FAULT_CORRUPT set: every result;
// REPLAY_FAULT_CORRUPT_AFTER=n: every result after the worker's first n
// (a worker that goes bad after its first results passed their checks).
func corrupt(theta []float32) {
	n := results.Add(1)
	after, err := strconv.ParseInt(os.Getenv("REPLAY_FAULT_CORRUPT_AFTER"), 10, 64)
	on := os.Getenv("REPLAY_FAULT_CORRUPT") != "" || err == nil && n > after
	if on && len(theta) > 0 {
		theta[0] = math.Float32frombits(math.Float32bits(theta[0]) ^ 1)
	}
}

// slow, with REPLAY_FAULT_SLOW set to a duration, makes every job take
// that long more (until ctx ends): a long job, for the heartbeat tests.
func slow(ctx context.Context) {
	d, err := time.ParseDuration(os.Getenv("REPLAY_FAULT_SLOW"))
	if err != nil || d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
