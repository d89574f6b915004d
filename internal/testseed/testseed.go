// Package testseed gives every randomised test of the project its seed, one
// convention for all packages: the environment variable REPLAYTEST_SEED when
// it is set (to replay a failure), else the clock. The seed is logged with
// the command line that replays it, so a failure in CI can be repeated:
//
//	REPLAYTEST_SEED=123 go test ./ckpt -run TestCrashRecovery
//
// An environment variable rather than a flag because `go test ./... -args
// -seed=1` fails in every package that does not define the flag; it is the
// variable replay/replaytest.Seed already reads.
package testseed

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// Env is the environment variable that fixes the seed.
const Env = "REPLAYTEST_SEED"

// Seed returns the seed of a randomised test and logs it.
func Seed(t testing.TB) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(Env); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", Env, s, err)
		}
		seed = v
	}
	t.Logf("seed %d (%s=%d go test -run '^%s$' to repeat)", seed, Env, seed, t.Name())
	return seed
}
