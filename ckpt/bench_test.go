package ckpt

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// mlpDim is the parameter count of nn's "mlp:500x5" on Fashion-MNIST
// (784 → 5×500 → 10): 784·500+500 + 4·(500·500+500) + 500·10+10 = 1,399,510,
// hard-coded so that ckpt does not depend on nn.
const mlpDim = 784*500 + 500 + 4*(500*500+500) + 500*10 + 10

// benchStore opens a store with replayd's default options.
func benchStore(b *testing.B, dir string) *Store {
	b.Helper()
	opts := DefaultOptions(dir).WithGCInterval(0).WithLogger(testOptions(dir).Logger)
	s, err := Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func benchRun(b *testing.B, s *Store, dim int) []float32 {
	b.Helper()
	th := testTheta0(1, dim)
	if err := s.CreateRun(testConfig("r", dim), th); err != nil {
		b.Fatal(err)
	}
	if err := s.AppendForward("r", []ForwardStep{{Step: 1, Batch: make([]int32, 8)}}, RunState{State: StateRunning}); err != nil {
		b.Fatal(err)
	}
	return th
}

// BenchmarkCheckpointWrite: one mlp:500x5 checkpoint (5.6 MB), synced.
func BenchmarkCheckpointWrite(b *testing.B) {
	s := benchStore(b, b.TempDir())
	defer s.Close()
	th := benchRun(b, s, mlpDim)
	b.SetBytes(4 * mlpDim)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		th[i%mlpDim]++
		if err := s.PutCheckpoint("r", 1, th); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckpointRead: load one mlp:500x5 checkpoint, checksum included.
func BenchmarkCheckpointRead(b *testing.B) {
	s := benchStore(b, b.TempDir())
	defer s.Close()
	th := benchRun(b, s, mlpDim)
	if err := s.PutCheckpoint("r", 1, th); err != nil {
		b.Fatal(err)
	}
	dst := make([]float32, mlpDim)
	b.SetBytes(4 * mlpDim)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Checkpoint("r", 1, dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBatchLog: AppendForward of one step of batch 8 with metrics, as
// the trainer does, and the bytes it logs (keys and values).
func BenchmarkBatchLog(b *testing.B) {
	s := benchStore(b, b.TempDir())
	defer s.Close()
	benchRun(b, s, 10)
	batch := testBatch(1, 1, 8, 60000)
	m := Metrics{Loss: 2.3, TestLoss: 2.3, TestAcc: 0.1, ParamNorm: 40, StepDist: 0.01}
	mb, _ := encodeMetrics(m)
	logBytes := len(runKey("r", kindBatch, 1)) + len(encodeBatch(batch))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		err := s.AppendForward("r", []ForwardStep{{Step: i + 2, Batch: batch, Metrics: m, HasMetrics: true}}, RunState{State: StateRunning})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(logBytes), "log-B/step")
	b.ReportMetric(float64(logBytes+len(runKey("r", kindFwdMetrics, 1))+len(mb)), "log+metrics-B/step")
}

// BenchmarkPaperRunSize simulates the storage of the paper's run: 2000
// forward steps of batch 8 with metrics, an mlp:500x5 checkpoint every
// DefaultCheckpointEvery steps, backward metrics at every step (the frontier
// advanced with each), and reports the store's size on disk.
func BenchmarkPaperRunSize(b *testing.B) {
	const steps = 2000
	for i := 0; i < b.N; i++ {
		dir := filepath.Join(b.TempDir(), fmt.Sprint(i))
		s := benchStore(b, dir)
		th := testTheta0(1, mlpDim)
		cfg := testConfig("paper", mlpDim)
		cfg.Steps = steps
		if err := s.CreateRun(cfg, th); err != nil {
			b.Fatal(err)
		}
		st := RunState{State: StateRunning}
		m := Metrics{Loss: 2.3, TestLoss: 2.3, TestAcc: 0.1, ParamNorm: 40, StepDist: 0.01}
		for k := 1; k <= steps; k++ {
			m.Loss = 1 / float64(k)
			err := s.AppendForward("paper", []ForwardStep{{Step: k, Batch: testBatch(1, k, 8, 60000), Metrics: m, HasMetrics: true}}, st)
			if err != nil {
				b.Fatal(err)
			}
			st.ForwardStep = k
			th[k%mlpDim] += 1 // a distinct vector per checkpoint
			if k%DefaultCheckpointEvery == 0 {
				if err := s.PutCheckpoint("paper", k, th); err != nil {
					b.Fatal(err)
				}
			}
			st.BackwardStep = k
			m.Anchor = max(0, k-256)
			if err := s.PutBackward("paper", []BackwardResult{{Segment: 0, Step: k, Metrics: m}}, &st); err != nil {
				b.Fatal(err)
			}
		}
		// Resident memory with the store open: Badger maps its files, so
		// written value-log pages count as (reclaimable) file RSS.
		if anon, file, ok := procRSS(); ok {
			b.ReportMetric(float64(anon)/(1<<20), "rss-anon-MiB")
			b.ReportMetric(float64(file)/(1<<20), "rss-file-MiB")
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		lsm, vlog := s.Size() // the files as left on disk
		b.ReportMetric(float64(lsm+vlog)/(1<<20), "MiB")
		b.ReportMetric(float64(vlog)/(1<<20), "vlog-MiB")
		b.ReportMetric(float64(lsm)/steps, "lsm-B/step")
	}
}

// procRSS reads the process's anonymous and file-backed resident memory
// (Linux).
func procRSS() (anon, file int64, ok bool) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "RssAnon:":
			anon = kb << 10
		case "RssFile:":
			file = kb << 10
		}
	}
	return anon, file, true
}
