package ckpt

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/replay-sgd/replay/internal/blocksum"
	"github.com/replay-sgd/replay/internal/testseed"
)

// storedBlocks returns the run's stored summaries by block index.
func storedBlocks(t *testing.T, s *Store, name string) map[int]blocksum.Summary {
	t.Helper()
	got := map[int]blocksum.Summary{}
	if err := s.ForwardBlocks(name, 0, math.MaxInt, func(i int, sum blocksum.Summary) error {
		got[i] = sum
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// fromMetrics summarises the stored metrics of block i.
func fromMetrics(t *testing.T, s *Store, name string, i int) blocksum.Summary {
	t.Helper()
	var sum blocksum.Summary
	if err := s.ForwardMetrics(name, i*blocksum.Steps+1, (i+1)*blocksum.Steps, func(m Metrics) error {
		sum.Add(m.Step, measures(&m))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return sum
}

// sameSummary compares bitwise (NaN equal to NaN).
func sameSummary(a, b blocksum.Summary) bool {
	eq := func(x, y [blocksum.M]float64) bool {
		for i := range x {
			if math.Float64bits(x[i]) != math.Float64bits(y[i]) && !(math.IsNaN(x[i]) && math.IsNaN(y[i])) {
				return false
			}
		}
		return true
	}
	return a.Last == b.Last && a.N == b.N && a.Count == b.Count && eq(a.Min, b.Min) && eq(a.Max, b.Max) && eq(a.End, b.End)
}

// TestForwardBlocks appends a run in random chunks (single steps, chunks
// across block boundaries, one too big for a Badger transaction), with
// steps without metrics and unmeasured (NaN) values, and checks after
// every append that exactly the complete blocks have a summary, each the
// summary of its stored metrics; then that DeleteRun drops them.
func TestForwardBlocks(t *testing.T) {
	seed := testseed.Seed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	s := openTest(t, t.TempDir())
	if err := s.CreateRun(testConfig("r", 10), testTheta0(seed, 10)); err != nil {
		t.Fatal(err)
	}
	const n = 9000
	for step := 1; step <= n; {
		size := 1 + rng.IntN(150)
		switch rng.IntN(4) {
		case 0:
			size = 1
		case 1:
			if step < 1000 {
				size = 6000 // split into several transactions (ErrTxnTooBig)
			}
		}
		size = min(size, n-step+1)
		var steps []ForwardStep
		for k := step; k < step+size; k++ {
			m := Metrics{Loss: rng.NormFloat64(), TestLoss: math.NaN(), TestAcc: math.NaN(), ParamNorm: rng.Float64(), StepDist: rng.Float64()}
			if k%10 == 0 {
				m.TestLoss, m.TestAcc = rng.Float64(), rng.Float64()
			}
			if rng.IntN(7) == 0 {
				m.Loss = math.NaN()
			}
			steps = append(steps, ForwardStep{Step: k, Batch: testBatch(seed, k, 8, 1000), Metrics: m, HasMetrics: rng.IntN(50) != 0 && (k < 3000 || k > 3200)})
		}
		if err := s.AppendForward("r", steps, RunState{State: StateRunning}); err != nil {
			t.Fatal(err)
		}
		step += size
		if rng.IntN(10) != 0 && step <= n {
			continue // check every tenth append and the last
		}
		got := storedBlocks(t, s, "r")
		complete := (step - 1) / blocksum.Steps
		if len(got) != complete {
			t.Fatalf("after step %d: %d block summaries, want %d", step-1, len(got), complete)
		}
		for i := range complete {
			sum, ok := got[i]
			if !ok {
				t.Fatalf("after step %d: no summary of block %d", step-1, i)
			}
			if want := fromMetrics(t, s, "r", i); !sameSummary(sum, want) {
				t.Fatalf("block %d: stored %+v, metrics give %+v", i, sum, want)
			}
		}
	}
	// A range: only blocks in [from, to).
	var idx []int
	if err := s.ForwardBlocks("r", 10, 13, func(i int, _ blocksum.Summary) error { idx = append(idx, i); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(idx) != 3 || idx[0] != 10 || idx[2] != 12 {
		t.Errorf("ForwardBlocks(10, 13) gave blocks %v", idx)
	}
	if err := s.DeleteRun("r"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRun(testConfig("r", 10), testTheta0(seed, 10)); err != nil {
		t.Fatal(err)
	}
	if got := storedBlocks(t, s, "r"); len(got) != 0 {
		t.Errorf("a run created again under a deleted one's name has %d block summaries", len(got))
	}
}

// TestBlockRecord: a summary record decodes to the same bits, and a cut,
// padded or misplaced one is a layout error (read as corruption).
func TestBlockRecord(t *testing.T) {
	var s blocksum.Summary
	for k := 65; k <= 128; k += 3 {
		v := [blocksum.M]float64{float64(k), math.NaN(), math.Inf(-1), math.Copysign(0, -1), 1e-300 * float64(k)}
		s.Add(k, &v)
	}
	b, err := encodeBlock(&s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeBlock(b, 1)
	if err != nil || !sameSummary(got, s) {
		t.Fatalf("decoded %+v, %v; want %+v", got, err, s)
	}
	for name, v := range map[string][]byte{"cut": b[:len(b)-3], "padded": append(b[:len(b):len(b)], 0), "empty": nil} {
		if _, err := decodeBlock(v, 1); !errors.Is(err, errLayout) {
			t.Errorf("%s record: %v, want a layout error", name, err)
		}
	}
	if _, err := decodeBlock(b, 2); !errors.Is(err, errLayout) {
		t.Errorf("the summary of block 1 under the key of block 2: %v, want a layout error", err)
	}
}

// TestForwardBlocksCorruptMetrics: a corrupt metrics record among a
// block's earlier steps never fails the append that completes the block;
// that block gets no summary (a reader falls back to the metrics and
// meets the corruption, as without summaries), the next ones do.
func TestForwardBlocksCorruptMetrics(t *testing.T) {
	s, err := Open(testOptions(t.TempDir())) // not openTest: its final Verify would report the damage
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateRun(testConfig("r", 10), testTheta0(1, 10)); err != nil {
		t.Fatal(err)
	}
	appendSteps(t, s, "r", 1, 1, 30)
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(runKey("r", kindFwdMetrics, 10), []byte{0xc1})
	}); err != nil {
		t.Fatal(err)
	}
	appendSteps(t, s, "r", 1, 31, 200)
	got := storedBlocks(t, s, "r")
	if _, ok := got[0]; ok || len(got) != 2 {
		t.Errorf("blocks %v stored, want 1 and 2 (not 0, whose step 10 is corrupt)", got)
	}
}
