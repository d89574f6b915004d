//go:build replayfault

package remote

import (
	"math"
	"os"
	"strconv"
	"sync/atomic"
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
