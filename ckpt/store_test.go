package ckpt

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// appendSteps logs steps from..to of the test run (seed) with metrics on
// every step and returns the state written.
func appendSteps(t testing.TB, s *Store, name string, seed uint64, from, to int) RunState {
	t.Helper()
	var steps []ForwardStep
	for k := from; k <= to; k++ {
		steps = append(steps, ForwardStep{Step: k, Batch: testBatch(seed, k, 8, 1000),
			Metrics: Metrics{Loss: float64(k), TestAcc: 0.5}, HasMetrics: true})
	}
	st := RunState{State: StateRunning}
	if err := s.AppendForward(name, steps, st); err != nil {
		t.Fatal(err)
	}
	_, got, err := s.Run(name)
	if err != nil {
		t.Fatal(err)
	}
	if got.ForwardStep != to {
		t.Fatalf("ForwardStep %d after appending to %d", got.ForwardStep, to)
	}
	return got
}

func TestCreateRunAndRead(t *testing.T) {
	s := openTest(t, t.TempDir())
	cfg := testConfig("a", 300)
	th0 := testTheta0(1, 300)
	if err := s.CreateRun(cfg, th0); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRun(cfg, th0); !errors.Is(err, ErrRunExists) {
		t.Fatalf("second CreateRun: %v, want ErrRunExists", err)
	}
	if err := s.CreateRun(testConfig("b", 3), th0); !errors.Is(err, ErrDim) {
		t.Fatalf("CreateRun with Dim 3 and 300 parameters: %v, want ErrDim", err)
	}
	if err := s.CreateRun(testConfig("", 300), th0); !errors.Is(err, ErrBadName) {
		t.Fatalf("CreateRun without a name: %v, want ErrBadName", err)
	}
	gotCfg, st, err := s.Run("a")
	if err != nil {
		t.Fatal(err)
	}
	if gotCfg.Name != "a" || gotCfg.Dim != 300 || gotCfg.Window != 10 || st.State != StateRunning || st.ForwardStep != 0 {
		t.Fatalf("Run = %+v, %+v", gotCfg, st)
	}
	if _, _, err := s.Run("nope"); !errors.Is(err, ErrRunNotFound) {
		t.Fatalf("Run(nope): %v", err)
	}
	dst := make([]float32, 300)
	if err := s.Checkpoint("a", 0, dst); err != nil || !equalBits(dst, th0) {
		t.Fatalf("checkpoint 0: %v, equal %v", err, equalBits(dst, th0))
	}
	if err := s.Checkpoint("a", 0, make([]float32, 5)); !errors.Is(err, ErrDim) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("Checkpoint into a short slice: %v, want ErrDim and no corruption", err)
	}
	anchors, err := s.Anchors("a")
	if err != nil || len(anchors) != 1 || anchors[0] != (AnchorRec{0, 0, FromInit}) {
		t.Fatalf("Anchors = %v, %v", anchors, err)
	}
	clear(dst)
	if err := s.AnchorStart("a", 0, dst); err != nil || !equalBits(dst, th0) {
		t.Fatalf("AnchorStart(0): %v", err)
	}
	for _, n := range []string{"b", "a b", "ab", "a\x01"} {
		if err := s.CreateRun(testConfig(n, 1), []float32{1}); err != nil {
			t.Fatal(err)
		}
	}
	names, err := s.Runs()
	if want := []string{"a", "a\x01", "a b", "ab", "b"}; err != nil || !slices.Equal(names, want) {
		t.Fatalf("Runs = %q, %v; want %q", names, err, want)
	}
}

func TestAppendForward(t *testing.T) {
	s := openTest(t, t.TempDir())
	if err := s.CreateRun(testConfig("r", 10), testTheta0(1, 10)); err != nil {
		t.Fatal(err)
	}
	appendSteps(t, s, "r", 1, 1, 5)
	for _, tc := range []struct {
		steps []ForwardStep
		want  error
	}{
		{[]ForwardStep{{Step: 7, Batch: []int32{1}}}, ErrNotContiguous},
		{[]ForwardStep{{Step: 5, Batch: []int32{1}}}, ErrNotContiguous},
		{[]ForwardStep{{Step: 6, Batch: []int32{1}}, {Step: 8, Batch: []int32{1}}}, ErrNotContiguous},
		{[]ForwardStep{{Step: 6}}, ErrInvalid},
	} {
		if err := s.AppendForward("r", tc.steps, RunState{State: StateRunning}); !errors.Is(err, tc.want) {
			t.Errorf("AppendForward(%v) = %v, want %v", tc.steps, err, tc.want)
		}
	}
	if err := s.AppendForward("r", nil, RunState{State: "sleeping"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad state: %v", err)
	}
	if err := s.AppendForward("zz", nil, RunState{State: StateRunning}); !errors.Is(err, ErrRunNotFound) {
		t.Errorf("unknown run: %v", err)
	}
	// More steps than one 150 KB transaction holds: split, still ordered.
	appendSteps(t, s, "r", 1, 6, 4000)
	bs, err := s.Batches("r", 1, 4000)
	if err != nil {
		t.Fatal(err)
	}
	for k, b := range bs {
		if !slices.Equal(b, testBatch(1, k+1, 8, 1000)) {
			t.Fatalf("batch %d = %v", k+1, b)
		}
	}
	if _, err := s.Batches("r", 3990, 4001); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Batches past the log: %v", err)
	}
	var steps []int
	err = s.ForwardMetrics("r", 10, 20, func(m Metrics) error {
		if m.Loss != float64(m.Step) {
			t.Errorf("metrics of step %d: %+v", m.Step, m)
		}
		steps = append(steps, m.Step)
		return nil
	})
	if err != nil || len(steps) != 11 || steps[0] != 10 || steps[10] != 20 {
		t.Fatalf("ForwardMetrics: %v %v", steps, err)
	}
	// PutState keeps the forward step it does not own.
	if err := s.PutState("r", RunState{State: StatePaused, Reason: "user", ForwardStep: 3}); err != nil {
		t.Fatal(err)
	}
	if _, st, _ := s.Run("r"); st.ForwardStep != 4000 || st.State != StatePaused || st.Reason != "user" {
		t.Fatalf("state after PutState: %+v", st)
	}
	if err := s.PutState("r", RunState{State: StateRunning, BackwardStep: 4001}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("backward frontier past the log: %v", err)
	}
}

func TestCheckpoints(t *testing.T) {
	s := openTest(t, t.TempDir())
	const dim = 2000
	if err := s.CreateRun(testConfig("r", dim), testTheta0(1, dim)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCheckpoint("r", 10, forwardTo(1, dim, 10)); !errors.Is(err, ErrBeyondForward) {
		t.Fatalf("checkpoint before its step is logged: %v", err)
	}
	appendSteps(t, s, "r", 1, 1, 35)
	if err := s.PutCheckpoint("r", 10, make([]float32, 3)); !errors.Is(err, ErrDim) {
		t.Fatalf("short checkpoint: %v", err)
	}
	for _, k := range []int{10, 20, 30} {
		if err := s.PutCheckpoint("r", k, forwardTo(1, dim, k)); err != nil {
			t.Fatal(err)
		}
	}
	if ks, err := s.Checkpoints("r"); err != nil || !slices.Equal(ks, []int{0, 10, 20, 30}) {
		t.Fatalf("Checkpoints = %v, %v", ks, err)
	}
	dst := make([]float32, dim)
	for _, tc := range []struct{ step, want int }{{0, 0}, {9, 0}, {10, 10}, {29, 20}, {35, 30}, {1 << 40, 30}} {
		k, err := s.NearestCheckpoint("r", tc.step, dst)
		if err != nil || k != tc.want || !equalBits(dst, forwardTo(1, dim, k)) {
			t.Errorf("NearestCheckpoint(%d) = %d, %v; want %d", tc.step, k, err, tc.want)
		}
	}
	if err := s.Checkpoint("r", 15, dst); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Checkpoint(15): %v", err)
	}
	rep, err := s.Verify("r", testReplay)
	if err != nil || !rep.OK() || rep.Checkpoints != 4 || rep.Steps != 30 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	// A checkpoint that is not the forward iterate is a problem.
	bad := forwardTo(1, dim, 20)
	bad[dim-1] += 1
	if err := s.PutCheckpoint("r", 20, bad); err != nil {
		t.Fatal(err)
	}
	rep, err = s.Verify("r", testReplay)
	if err != nil || len(rep.Problems) != 2 || !strings.Contains(rep.Problems[0], "checkpoint 20 differs") {
		t.Fatalf("Verify of a wrong checkpoint = %q, %v", rep.Problems, err)
	}
	if err := s.PutCheckpoint("r", 20, forwardTo(1, dim, 20)); err != nil {
		t.Fatal(err)
	}
}

func TestBackwardSegments(t *testing.T) {
	s := openTest(t, t.TempDir())
	const dim = 50
	if err := s.CreateRun(testConfig("r", dim), testTheta0(1, dim)); err != nil {
		t.Fatal(err)
	}
	appendSteps(t, s, "r", 1, 1, 30)
	res := func(seg, from, to int, keep bool) []BackwardResult {
		var out []BackwardResult
		for n := from; n <= to; n++ {
			r := BackwardResult{Segment: seg, Step: n, Metrics: Metrics{Loss: float64(100*seg + n)}}
			if keep {
				r.Theta = testTheta0(uint64(100*seg+n), dim)
			}
			out = append(out, r)
		}
		return out
	}
	if err := s.PutBackward("r", res(1, 1, 2, false), nil); !errors.Is(err, ErrNoAnchor) {
		t.Fatalf("result of a segment without anchor: %v", err)
	}
	if err := s.PutBackward("r", res(0, 31, 31, false), nil); !errors.Is(err, ErrBeyondForward) {
		t.Fatalf("result past the log: %v", err)
	}
	if err := s.PutBackward("r", res(0, 1, 20, true), &RunState{State: StateRunning, BackwardStep: 20}); err != nil {
		t.Fatal(err)
	}
	if _, st, _ := s.Run("r"); st.BackwardStep != 20 || st.ForwardStep != 30 {
		t.Fatalf("state after PutBackward: %+v", st)
	}
	// A reset at 12 from the forward iterate: segment 1 recomputes 13..25.
	if err := s.PutAnchor("r", AnchorRec{Segment: 1, Step: 12, From: FromForward}, forwardTo(1, dim, 12)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAnchor("r", AnchorRec{Segment: 1, Step: 12, From: FromForward}, forwardTo(1, dim, 12)); err != nil {
		t.Fatalf("rewriting the same anchor: %v", err)
	}
	if err := s.PutAnchor("r", AnchorRec{Segment: 1, Step: 13, From: FromForward}, forwardTo(1, dim, 13)); !errors.Is(err, ErrAnchorExists) {
		t.Fatalf("moving an existing anchor: %v", err)
	}
	if err := s.PutAnchor("r", AnchorRec{Segment: 2, Step: 31, From: FromBackward}, make([]float32, dim)); !errors.Is(err, ErrBeyondForward) {
		t.Fatalf("anchor past the log: %v", err)
	}
	if err := s.PutBackward("r", res(1, 13, 25, false), &RunState{State: StateRunning, BackwardStep: 25}); err != nil {
		t.Fatal(err)
	}
	var got []Metrics
	collect := func(m Metrics) error { got = append(got, m); return nil }
	if err := s.BackwardMetrics("r", 1, 30, collect); err != nil {
		t.Fatal(err)
	}
	if len(got) != 25 {
		t.Fatalf("BackwardMetrics: %d steps", len(got))
	}
	for i, m := range got {
		wantSeg := 0
		if m.Step > 12 {
			wantSeg = 1
		}
		if m.Step != i+1 || m.Segment != wantSeg || m.Loss != float64(100*wantSeg+m.Step) {
			t.Fatalf("BackwardMetrics[%d] = %+v", i, m)
		}
	}
	// The earlier segment is intact.
	got = nil
	if err := s.SegmentMetrics("r", 0, 15, 100, collect); err != nil || len(got) != 6 || got[0].Step != 15 || got[0].Segment != 0 {
		t.Fatalf("SegmentMetrics(0) = %v, %v", got, err)
	}
	dst := make([]float32, dim)
	if ok, err := s.BackwardTheta("r", 0, 15, dst); !ok || err != nil || !equalBits(dst, testTheta0(15, dim)) {
		t.Fatalf("BackwardTheta(0, 15) = %v, %v", ok, err)
	}
	if ok, err := s.BackwardTheta("r", 1, 15, dst); ok || err != nil {
		t.Fatalf("BackwardTheta(1, 15) not kept = %v, %v", ok, err)
	}
	// An anchor from the forward iterate that is not the forward iterate.
	wrong := forwardTo(1, dim, 5)
	wrong[0] = 7
	if err := s.PutAnchor("r", AnchorRec{Segment: 2, Step: 5, From: FromForward}, wrong); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Verify("r", testReplay)
	if err != nil || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "anchor of segment 2 differs") {
		t.Fatalf("Verify with a wrong anchor: %q, %v", rep.Problems, err)
	}
	// Leave a consistent store for the cleanup check.
	if err := s.DeleteRun("r"); err != nil {
		t.Fatal(err)
	}
}

func TestDeleteRunReclaimsSpace(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	const dim = 100_000 // 400 KB per vector: 2-3 per 1 MiB value-log file
	for _, n := range []string{"big", "small"} {
		if err := s.CreateRun(testConfig(n, dim), testTheta0(1, dim)); err != nil {
			t.Fatal(err)
		}
	}
	appendSteps(t, s, "big", 1, 1, 40)
	th := testTheta0(1, dim)
	for k := 1; k <= 40; k++ {
		testStep(th, testBatch(1, k, 8, 1000))
		if err := s.PutCheckpoint("big", k, th); err != nil {
			t.Fatal(err)
		}
	}
	appendSteps(t, s, "small", 1, 1, 3)
	if err := s.PutCheckpoint("small", 3, forwardTo(1, dim, 3)); err != nil {
		t.Fatal(err)
	}
	_, before := s.Size()
	if err := s.DeleteRun("big"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRun("big"); !errors.Is(err, ErrRunNotFound) {
		t.Fatalf("second DeleteRun: %v", err)
	}
	if err := s.GC(); err != nil {
		t.Fatal(err)
	}
	_, after := s.Size()
	t.Logf("value log %d bytes before deleting 41 checkpoints of 400 KB, %d after GC", before, after)
	if after > before/2 {
		t.Errorf("value log %d bytes before deleting, %d after GC: not reclaimed", before, after)
	}
	if names, _ := s.Runs(); !slices.Equal(names, []string{"small"}) {
		t.Fatalf("Runs after delete = %v", names)
	}
	// Not one key of the run is left.
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: runPrefix("big")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			t.Errorf("key %q survived DeleteRun", it.Item().Key())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The name can be reused and starts empty.
	if err := s.CreateRun(testConfig("big", 10), testTheta0(2, 10)); err != nil {
		t.Fatal(err)
	}
	if ks, _ := s.Checkpoints("big"); !slices.Equal(ks, []int{0}) {
		t.Fatalf("recreated run has checkpoints %v", ks)
	}
	dst := make([]float32, dim)
	if err := s.Checkpoint("small", 3, dst); err != nil || !equalBits(dst, forwardTo(1, dim, 3)) {
		t.Fatalf("other run damaged by GC: %v", err)
	}
}

func TestInterruptedDeleteIsFinished(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRun(testConfig("r", 10), testTheta0(1, 10)); err != nil {
		t.Fatal(err)
	}
	appendSteps(t, s, "r", 1, 1, 10)
	// The first half of DeleteRun, as a crash would leave it.
	err = s.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(deletingKey("r"), nil); err != nil {
			return err
		}
		return txn.Delete(runKey("r", kindConfig))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if k := it.Item().Key(); !bytes.Equal(k, formatKey) {
				t.Errorf("key %q survived the interrupted delete", k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSecondProcessIsRefused(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CKPT_HELPER=hold", "CKPT_DIR="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	buf := make([]byte, 6)
	if _, err := stdout.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("holder did not start: %q, %v", buf, err)
	}
	_, err = Open(testOptions(dir))
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Open of a held store: %v, want ErrLocked", err)
	}
	if want := "ckpt: store " + dir + " is in use by another process"; err.Error() != want {
		t.Fatalf("error text %q, want %q", err, want)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("holder: %v", err)
	}
	// Released: the store opens now.
	openTest(t, dir)
}

func TestNewerFormatIsRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(txn *badger.Txn) error { return txn.Set(formatKey, []byte{0x02}) })
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(testOptions(dir))
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "format 2") {
		t.Fatalf("Open of a format-2 store: %v", err)
	}
	t.Log(err)
}

func TestOptionsValidate(t *testing.T) {
	if err := DefaultOptions("/tmp/x").Validate(); err != nil {
		t.Fatal(err)
	}
	err := Options{ValueThreshold: 1 << 30, GCInterval: -1}.Validate()
	if err == nil {
		t.Fatal("zero options validated")
	}
	for _, w := range []string{"Dir", "ValueLogFileSize", "MemTableSize", "NumMemtables", "ValueThreshold", "GCInterval"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Validate does not report %s: %v", w, err)
		}
	}
}

func TestCorruptionErrorWraps(t *testing.T) {
	cause := errors.New("x")
	var err error = &CorruptionError{Run: "r", Kind: "checkpoint", Step: 50, Err: cause}
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, cause) {
		t.Fatal("CorruptionError does not unwrap")
	}
	if got, want := err.Error(), `ckpt: run "r": checkpoint at step 50 is corrupt: x`; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}
