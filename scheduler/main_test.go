package scheduler

import (
	"fmt"
	"github.com/replay-sgd/replay/internal/oploop"
	"os"
	"testing"
)

// Helper modes: the test binary re-executes itself with SCHED_HELPER set to
// play another process (the operator loop whose two copies give
// BenchmarkBackwardFashionMNIST its ceiling).
func TestMain(m *testing.M) {
	switch os.Getenv("SCHED_HELPER") {
	case "":
		os.Exit(m.Run())
	case "oploop":
		if err := oploop.Child(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "oploop:", err)
			os.Exit(1)
		}
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "unknown SCHED_HELPER")
		os.Exit(2)
	}
}
