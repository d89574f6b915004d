//go:build replayfault

package remote

import (
	"math"
	"os"
)

// corrupt, in a build with tag replayfault and REPLAY_FAULT_CORRUPT set,
// changes the last bit of a result's first parameter: a worker returning
// wrong numbers, for the spot-check tests.
func corrupt(theta []float32) {
	if os.Getenv("REPLAY_FAULT_CORRUPT") != "" && len(theta) > 0 {
		theta[0] = math.Float32frombits(math.Float32bits(theta[0]) ^ 1)
	}
}
