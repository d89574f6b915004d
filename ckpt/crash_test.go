package ckpt

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/replay-sgd/replay/internal/blocksum"
	"github.com/replay-sgd/replay/internal/testseed"
)

// The crash-test run: a 20,000-parameter test run of 1000 steps, checkpoints
// every 10 steps, backward results (metrics, parameters every 25 steps)
// trailing the forward log.
const (
	crashRun   = "crash"
	crashSeed  = 7
	crashDim   = 20_000
	crashSteps = 1000
	crashEvery = 10
)

// crashBackward is the deterministic backward result of step n (the crash
// test checks storage, not the mathematics).
func crashBackward(n int) BackwardResult {
	r := BackwardResult{Segment: 0, Step: n, Metrics: Metrics{Loss: 1 / float64(n), ParamNorm: float64(n)}}
	if n%25 == 0 {
		r.Theta = testTheta0(uint64(n), crashDim)
	}
	return r
}

// crashWriter continues (or starts) the crash-test run in dir and prints a
// line after each write returns: "ack N" (forward log through N), "ckpt N",
// "back N" (backward frontier N), "done". Chunk sizes come from seed, so
// every life of the writer writes differently.
func crashWriter(dir, seed string) error {
	sd, err := strconv.ParseUint(seed, 10, 64)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(sd, 0))
	s, err := Open(testOptions(dir))
	if err != nil {
		return err
	}
	defer s.Close()
	_, st, err := s.Run(crashRun)
	if errors.Is(err, ErrRunNotFound) {
		cfg := testConfig(crashRun, crashDim)
		cfg.Steps = crashSteps
		if err := s.CreateRun(cfg, testTheta0(crashSeed, crashDim)); err != nil {
			return err
		}
		fmt.Println("created")
		_, st, err = s.Run(crashRun)
	}
	if err != nil {
		return err
	}
	// Resume: the nearest checkpoint, then the batch log.
	theta := make([]float32, crashDim)
	k, err := s.NearestCheckpoint(crashRun, st.ForwardStep, theta)
	if err != nil {
		return err
	}
	if k < st.ForwardStep {
		bs, err := s.Batches(crashRun, k+1, st.ForwardStep)
		if err != nil {
			return err
		}
		if err := testReplay(theta, k, bs); err != nil {
			return err
		}
	}
	for n := st.ForwardStep + 1; n <= crashSteps; {
		var chunk []ForwardStep
		for len(chunk) == 0 || (rng.IntN(3) > 0 && (n-1)%crashEvery != 0 && n <= crashSteps) {
			b := testBatch(crashSeed, n, 8, 1000)
			testStep(theta, b)
			chunk = append(chunk, ForwardStep{Step: n, Batch: b, HasMetrics: n%2 == 0,
				Metrics: Metrics{Loss: float64(n), ParamNorm: float64(theta[0])}})
			n++
		}
		st.State = StateRunning
		if err := s.AppendForward(crashRun, chunk, st); err != nil {
			return err
		}
		last := chunk[len(chunk)-1].Step
		st.ForwardStep = last
		fmt.Println("ack", last)
		if last%crashEvery == 0 {
			if err := s.PutCheckpoint(crashRun, last, theta); err != nil {
				return err
			}
			fmt.Println("ckpt", last)
		}
		if rng.IntN(2) == 0 && st.BackwardStep < st.ForwardStep {
			var res []BackwardResult
			for m := st.BackwardStep + 1; m <= min(st.ForwardStep, st.BackwardStep+3); m++ {
				res = append(res, crashBackward(m))
			}
			next := st
			next.BackwardStep = res[len(res)-1].Step
			if err := s.PutBackward(crashRun, res, &next); err != nil {
				return err
			}
			st = next
			fmt.Println("back", st.BackwardStep)
		}
	}
	st.State = StateDone
	if err := s.PutState(crashRun, st); err != nil {
		return err
	}
	fmt.Println("done")
	return nil
}

// life runs the writer once. kill < 0 lets it finish; otherwise it is killed
// with SIGKILL after kill output lines and a random pause. It returns the
// lines read.
func life(t *testing.T, dir string, rng *rand.Rand, kill int) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CKPT_HELPER=writer", "CKPT_DIR="+dir, "CKPT_SEED="+strconv.FormatUint(rng.Uint64(), 10))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// The sleeps below are not synchronisation: a random delay puts the
	// kill at a random point of the writer's work (in the first 40 ms, or
	// up to 3 ms after its kill-th acknowledgement).
	var got []string
	if kill == 0 {
		time.Sleep(time.Duration(rng.IntN(40_000)) * time.Microsecond)
		cmd.Process.Signal(syscall.SIGKILL)
	}
	for l := range lines {
		got = append(got, l)
		if len(got) == kill {
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
			cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	err = cmd.Wait()
	if kill < 0 && err != nil {
		t.Fatalf("writer: %v\n%s", err, stderr.String())
	}
	if kill >= 0 && err != nil && !strings.Contains(err.Error(), "killed") {
		t.Fatalf("writer died before the kill: %v\n%s", err, stderr.String())
	}
	return got
}

// TestCrashRecovery kills a writer at random points, 24 times (8 with
// -short, which the race run of make test uses), and
// checks after each kill that every acknowledged write is there and intact,
// nothing is half-written (Verify), and finally that the run completed across
// the kills is bitwise the run of a writer never killed.
func TestCrashRecovery(t *testing.T) {
	// The seed fixes the kill points and the writers' chunk sizes; where a
	// kill lands inside a write still depends on timing.
	seed := testseed.Seed(t)
	rng := rand.New(rand.NewPCG(seed, 1))

	refDir := t.TempDir()
	if l := life(t, refDir, rng, -1); l[len(l)-1] != "done" {
		t.Fatalf("seed %d: reference writer ended with %q", seed, l[len(l)-1])
	}
	ref := make(map[int][]float32)
	th := testTheta0(crashSeed, crashDim)
	ref[0] = append([]float32{}, th...)
	for k := 1; k <= crashSteps; k++ {
		testStep(th, testBatch(crashSeed, k, 8, 1000))
		if k%crashEvery == 0 {
			ref[k] = append([]float32{}, th...)
		}
	}

	maxKills := 24
	if testing.Short() {
		maxKills = 8
	}
	dir := t.TempDir()
	ack, back, kills, ahead := 0, 0, 0, 0
	ckpts := map[int]bool{}
	for kills < maxKills {
		kill := rng.IntN(16)
		lines := life(t, dir, rng, kill)
		done := false
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) == 2 {
				n, _ := strconv.Atoi(f[1])
				switch f[0] {
				case "ack":
					ack = n
				case "ckpt":
					ckpts[n] = true
				case "back":
					back = n
				}
			}
			done = done || l == "done"
		}
		if done {
			t.Fatalf("seed %d: the run finished after %d kills; the test needs more steps", seed, kills)
		}
		kills++
		if checkCrashed(t, seed, kills, dir, ack, back, ckpts, ref) {
			ahead++
		}
	}
	if l := life(t, dir, rng, -1); l[len(l)-1] != "done" {
		t.Fatalf("seed %d: final writer ended with %q", seed, l[len(l)-1])
	}
	// Kills that found unacknowledged writes landed inside a call or
	// between its return and the print: the interesting ones.
	t.Logf("seed %d: %d kills, the last at forward step %d; %d found writes not yet acknowledged", seed, kills, ack, ahead)

	// Bitwise the never-killed run: every checkpoint and the final state.
	a, b := openTest(t, dir), openTest(t, refDir)
	_, sa, _ := a.Run(crashRun)
	_, sb, _ := b.Run(crashRun)
	if sa.State != StateDone || sa.ForwardStep != crashSteps || sb.ForwardStep != crashSteps {
		t.Fatalf("seed %d: final states %+v and %+v", seed, sa, sb)
	}
	x, y := make([]float32, crashDim), make([]float32, crashDim)
	for k := 0; k <= crashSteps; k += crashEvery {
		// A checkpoint whose writer was killed before writing it is
		// legitimately absent (the next life resumed from an earlier one).
		if err := a.Checkpoint(crashRun, k, x); err == nil && !equalBits(x, ref[k]) {
			t.Fatalf("seed %d: checkpoint %d of the killed run is not θ_%d", seed, k, k)
		} else if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if err := b.Checkpoint(crashRun, k, y); err != nil {
			t.Fatalf("seed %d: reference: %v", seed, err)
		}
		if !equalBits(y, ref[k]) {
			t.Fatalf("seed %d: reference checkpoint %d is not θ_%d", seed, k, k)
		}
		if k == crashSteps && !equalBits(x, y) {
			t.Fatalf("seed %d: final parameters differ from the never-killed run", seed)
		}
	}
	if ks, _ := a.Checkpoints(crashRun); len(ks) < crashSteps/crashEvery-kills {
		t.Fatalf("seed %d: only checkpoints %v", seed, ks)
	}
}

// checkCrashed reopens the store after a kill and checks it. It reports
// whether the store holds more than the writer acknowledged.
func checkCrashed(t *testing.T, seed uint64, kills int, dir string, ack, back int, ckpts map[int]bool, ref map[int][]float32) bool {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d, kill %d: "+format, append([]any{seed, kills}, args...)...)
	}
	s, err := Open(testOptions(dir))
	if err != nil {
		fail("reopen: %v", err)
	}
	defer s.Close()
	_, st, err := s.Run(crashRun)
	if errors.Is(err, ErrRunNotFound) && ack == 0 {
		return false // killed before CreateRun returned
	}
	if err != nil {
		fail("%v", err)
	}
	if st.ForwardStep < ack || st.BackwardStep < back {
		fail("state %+v lost acknowledged forward step %d or backward step %d", st, ack, back)
	}
	if st.ForwardStep > 0 {
		bs, err := s.Batches(crashRun, 1, st.ForwardStep)
		if err != nil {
			fail("%v", err)
		}
		for i, b := range bs {
			want := testBatch(crashSeed, i+1, 8, 1000)
			for j := range b {
				if b[j] != want[j] {
					fail("batch %d = %v, want %v", i+1, b, want)
				}
			}
		}
	}
	x := make([]float32, crashDim)
	for k := range ckpts {
		if err := s.Checkpoint(crashRun, k, x); err != nil {
			fail("acknowledged checkpoint %d: %v", k, err)
		}
		if !equalBits(x, ref[k]) {
			fail("checkpoint %d is not θ_%d", k, k)
		}
	}
	n := 0
	err = s.BackwardMetrics(crashRun, 1, st.BackwardStep, func(m Metrics) error {
		n++
		if want := crashBackward(m.Step).Metrics; m.Step != n || m.Loss != want.Loss || m.ParamNorm != want.ParamNorm {
			return fmt.Errorf("backward metrics %+v at position %d", m, n)
		}
		if m.Step%25 == 0 {
			if ok, err := s.BackwardTheta(crashRun, 0, m.Step, x); !ok || err != nil || !equalBits(x, crashBackward(m.Step).Theta) {
				return fmt.Errorf("backward parameters at step %d: %v, %v", m.Step, ok, err)
			}
		}
		return nil
	})
	if err != nil || n != st.BackwardStep {
		fail("backward results through %d: %d found, %v", st.BackwardStep, n, err)
	}
	// Block summaries: written with the block's last step, so exactly the
	// complete blocks have one, each the summary of the stored metrics.
	nb := 0
	err = s.ForwardBlocks(crashRun, 0, math.MaxInt, func(i int, sum blocksum.Summary) error {
		var want blocksum.Summary
		if err := s.ForwardMetrics(crashRun, i*blocksum.Steps+1, (i+1)*blocksum.Steps, func(m Metrics) error {
			want.Add(m.Step, measures(&m))
			return nil
		}); err != nil {
			return err
		}
		if i != nb || !sameSummary(sum, want) {
			return fmt.Errorf("block %d (position %d): stored %+v, metrics give %+v", i, nb, sum, want)
		}
		nb++
		return nil
	})
	if err != nil || nb != st.ForwardStep/blocksum.Steps {
		fail("block summaries through forward step %d: %d found, %v", st.ForwardStep, nb, err)
	}
	rep, err := s.Verify(crashRun, testReplay)
	if err != nil || !rep.OK() {
		fail("verify: %v %q", err, rep.Problems)
	}
	ks, err := s.Checkpoints(crashRun)
	if err != nil {
		fail("%v", err)
	}
	return st.ForwardStep > ack || st.BackwardStep > back || len(ks) > len(ckpts)+1
}
