package remote

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/internal/oploop"
	"github.com/replay-sgd/replay/nnfamily"
)

// Helper modes: the test binary re-executes itself with REMOTE_HELPER set
// to play another process — a remote worker (BenchmarkTwoWorkers' worker
// processes) or the operator loop (its 2-core ceiling).
func TestMain(m *testing.M) {
	var err error
	switch os.Getenv("REMOTE_HELPER") {
	case "":
		os.Exit(m.Run())
	case "worker":
		err = workerChild(os.Getenv("REMOTE_HELPER_URL"), os.Getenv("REMOTE_HELPER_NAME"), os.Stdin)
	case "oploop":
		err = oploop.Child(os.Stdin, os.Stdout)
	default:
		err = fmt.Errorf("unknown REMOTE_HELPER %q", os.Getenv("REMOTE_HELPER"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "remote helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// workerChild is a remote worker process (one slot, the built-in family)
// until its stdin closes.
func workerChild(url, name string, stdin io.Reader) error {
	w, err := NewWorker(WorkerConfig{URL: url, Name: name, Jobs: 1, Families: []family.Family{nnfamily.New()}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()
	return w.Run(ctx)
}
