package remote

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/nn"
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
		err = operatorLoopChild(os.Stdin, os.Stdout)
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

// operatorLoopChild is scheduler's operator loop (its bench_test.go): the
// paper's SGD operator built and warm, "ready"; then, for every line on in
// (a window in seconds), operators applied for that long and how many
// reported. It returns at EOF.
func operatorLoopChild(in io.Reader, out io.Writer) error {
	train, _, err := nn.LoadDataset("fashion-mnist", "", 1)
	if err != nil {
		return err
	}
	m, err := nn.NewModel("mlp:500x5", train.In, train.Out)
	if err != nil {
		return err
	}
	const steps = 256
	log := make(nn.BatchLog, steps)
	s := nn.NewSampler(train.N, 8, 1)
	for i := range log {
		log[i] = make([]int32, 8)
		s.Batch(i+1, log[i])
	}
	sgd, err := nn.NewSGD(m, nn.CrossEntropy, train, 0.001, log)
	if err != nil {
		return err
	}
	th := make([]float32, m.Dim())
	if err := m.Init(th, "he", 1); err != nil {
		return err
	}
	sgd.Apply(1, th) // size the scratch space
	fmt.Fprintln(out, "ready")
	sc := bufio.NewScanner(in)
	k := 0
	for sc.Scan() {
		var secs float64
		if _, err := fmt.Sscanf(sc.Text(), "%g", &secs); err != nil {
			return err
		}
		d := time.Duration(secs * float64(time.Second))
		t0 := time.Now()
		n := 0
		for time.Since(t0) < d {
			sgd.Apply(k%steps+1, th)
			k++
			n++
		}
		if _, err := fmt.Fprintf(out, "ops %d secs %.6f\n", n, time.Since(t0).Seconds()); err != nil {
			return err
		}
	}
	return sc.Err()
}
