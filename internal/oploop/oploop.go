// Package oploop measures the two-core ceiling the worker benchmarks are
// compared with: child processes of the test binary, each applying the
// paper's SGD operator (mlp:500x5 on Fashion-MNIST, batch 8, η = 0.001) in a
// loop for a window it is told, so that N children show what N separate
// processes reach on this machine in the same run as the benchmark.
//
// The scheduler's and the remote workers' benchmarks both use it: the test
// binary's TestMain runs Child when its helper variable says "oploop", and
// the benchmark starts the children with Start. Test support only.
package oploop

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/replay-sgd/replay/nn"
)

// Loops are the children, each warm and waiting for a window on its stdin.
type Loops []struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// Start re-executes the test binary n times with env (e.g.
// "SCHED_HELPER=oploop") added, and waits until every child has built its
// operator.
func Start(tb testing.TB, env string, n int) Loops {
	tb.Helper()
	kids := make(Loops, n)
	for i := range kids {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), env)
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			tb.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			tb.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		kids[i].cmd, kids[i].in, kids[i].out = cmd, in, bufio.NewReader(out)
	}
	for _, k := range kids {
		if line, err := k.out.ReadString('\n'); err != nil || line != "ready\n" {
			tb.Fatalf("operator loop child: %q, %v", line, err)
		}
	}
	return kids
}

// Run has the first n children apply operators over the same window d and
// returns their total operator applications per second.
func (kids Loops) Run(tb testing.TB, n int, d time.Duration) float64 {
	tb.Helper()
	for _, k := range kids[:n] {
		if _, err := fmt.Fprintf(k.in, "%g\n", d.Seconds()); err != nil {
			tb.Fatal(err)
		}
	}
	var total float64
	for _, k := range kids[:n] {
		line, err := k.out.ReadString('\n')
		var ops int
		var secs float64
		if err == nil {
			_, err = fmt.Sscanf(line, "ops %d secs %g", &ops, &secs)
		}
		if err != nil {
			tb.Fatalf("operator loop child: %q: %v", line, err)
		}
		total += float64(ops) / secs
	}
	return total
}

// Close ends the children (EOF on their stdin) and waits for them.
func (kids Loops) Close(tb testing.TB) {
	tb.Helper()
	for _, k := range kids {
		k.in.Close()
	}
	for _, k := range kids {
		if err := k.cmd.Wait(); err != nil {
			tb.Error(err)
		}
	}
}

// Child is the body of a child: it builds the paper's operator and reports
// "ready"; then, for every line on in (a window in seconds), applies
// operators for that long and reports how many. It returns at EOF.
func Child(in io.Reader, out io.Writer) error {
	const steps = 256
	sgd, m, err := PaperOperator(steps)
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

// PaperOperator returns the paper's SGD operator (mlp:500x5 on
// Fashion-MNIST, batch 8, η = 0.001) over steps batches of the daemon's
// sampler (seed 1).
func PaperOperator(steps int) (*nn.SGD, *nn.Model, error) {
	train, _, err := nn.LoadDataset("fashion-mnist", "", 1)
	if err != nil {
		return nil, nil, err
	}
	m, err := nn.NewModel("mlp:500x5", train.In, train.Out)
	if err != nil {
		return nil, nil, err
	}
	log := make(nn.BatchLog, steps)
	s := nn.NewSampler(train.N, 8, 1)
	for i := range log {
		log[i] = make([]int32, 8)
		s.Batch(i+1, log[i])
	}
	sgd, err := nn.NewSGD(m, nn.CrossEntropy, train, 0.001, log)
	return sgd, m, err
}
