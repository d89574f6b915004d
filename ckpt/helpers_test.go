package ckpt

import (
	"log/slog"
	"math"
	"os"
	"testing"
)

// testOptions keep Badger small so that tests are fast and exercise file
// rotation: 1 MiB memtables (150 KB transactions) and 1 MiB value-log files.
func testOptions(dir string) Options {
	return DefaultOptions(dir).
		WithMemTableSize(1 << 20).
		WithNumMemtables(2).
		WithValueLogFileSize(1 << 20).
		WithValueThreshold(512).
		WithBlockCacheSize(1 << 20).
		WithGCInterval(0).
		WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// openTest opens a store in dir whose every run is verified (the checker
// users get as `replayctl verify`) before it is closed at the end of the test.
func openTest(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		checkStore(t, s)
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// checkStore verifies every run of an open store with testReplay.
func checkStore(t testing.TB, s *Store) {
	t.Helper()
	s.mu.Lock()
	closed := s.mu.closed
	s.mu.Unlock()
	if closed {
		return
	}
	names, err := s.Runs()
	if err != nil {
		t.Errorf("consistency check: %v", err)
		return
	}
	for _, n := range names {
		rep, err := s.Verify(n, testReplay)
		if err != nil {
			t.Errorf("consistency check of run %q: %v", n, err)
			continue
		}
		for _, p := range rep.Problems {
			t.Errorf("consistency check of run %q: %s", n, p)
		}
	}
}

// testStep is the deterministic operator of the tests: θ ← θ/2 + g(batch),
// contractive and sensitive to every index of the batch, bitwise
// reproducible (the explicit float32 conversion forbids fused multiply-add).
func testStep(theta []float32, batch []int32) {
	for i := range theta {
		h := uint32(i) * 2654435761
		for _, b := range batch {
			h = (h ^ uint32(b)) * 16777619
			h ^= h >> 15 // mix high bits down: h%1024 must depend on all of i
		}
		theta[i] = float32(theta[i]*0.5) + float32(h%1024)/512 - 1
	}
}

// testReplay is the Replayer matching testStep.
func testReplay(theta []float32, from int, batches [][]int32) error {
	for _, b := range batches {
		testStep(theta, b)
	}
	return nil
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// testBatch is the batch of a step: a pure function of (seed, step).
func testBatch(seed uint64, step, size, n int) []int32 {
	b := make([]int32, size)
	for j := range b {
		b[j] = int32(splitmix(seed^splitmix(uint64(step)<<8|uint64(j))) % uint64(n))
	}
	return b
}

// testTheta0 is a deterministic θ0; vectors of different seeds share no
// run of values (their bytes are found once on disk in the bit-rot test).
func testTheta0(seed uint64, dim int) []float32 {
	th := make([]float32, dim)
	for i := range th {
		th[i] = float32(int64(splitmix(splitmix(seed)+uint64(i))%2001)-1000) / 1000
	}
	return th
}

// testConfig is a small run configuration.
func testConfig(name string, dim int) RunConfig {
	return RunConfig{Name: name, Model: "test", Dataset: "test", Loss: "test", LR: 0.1, Batch: 8, Steps: 100, Seed: 1, Window: 10, Strategy: "window", Dim: dim}
}

// forwardTo returns θ_n of the test run (seed, dim) by replaying from θ0.
func forwardTo(seed uint64, dim, n int) []float32 {
	th := testTheta0(seed, dim)
	for k := 1; k <= n; k++ {
		testStep(th, testBatch(seed, k, 8, 1000))
	}
	return th
}

func equalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}
