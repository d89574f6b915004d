package main

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
)

const fashionDir = "/usr/share/datasets/fashion-mnist"

// changedFashionCopy writes the Fashion-MNIST IDX files uncompressed (the
// loader reads both forms) into a new directory, with the last pixel of
// the training images changed: the same files but for one byte.
func changedFashionCopy(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	for _, base := range []string{"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"} {
		f, err := os.Open(filepath.Join(fashionDir, base+".gz"))
		if err != nil {
			t.Fatal(err)
		}
		gz, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(gz)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if base == "train-images-idx3-ubyte" {
			b[len(b)-1]++
		}
		if err := os.WriteFile(filepath.Join(dst, base), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// fashionSpec is a small Fashion-MNIST run (the data set is what matters).
func fashionSpec() api.RunSpec {
	return api.RunSpec{
		Name: "f", Dataset: "fashion-mnist", Model: "linear", Loss: "mse", LR: 0.001, Batch: 8, Steps: 40,
		Seed: seed(3), Window: 8, EvalEvery: api.Ptr(10), EvalSize: api.Ptr(100), CheckpointEvery: 10,
	}
}

// TestRemoteDataHash: a worker whose Fashion-MNIST copy differs in one
// byte refuses the run's jobs with one log line and gets none of them,
// while a worker with the daemon's data computes the run; with the odd
// worker alone, the daemon reports the run as refused by every worker
// (replay_remote_runs_refused) and the jobs stay queued until a worker
// with the run's data comes.
func TestRemoteDataHash(t *testing.T) {
	changed := changedFashionCopy(t)
	spec := fashionSpec()
	d := startDaemon(t, t.TempDir(), "--workers", "0", "--remote-workers", "--nats-listen", "127.0.0.1:0")
	url := d.natsURL()
	odd := startWorkerArgs(t, replaydBin, url, "odd", []string{"--data-path", changed})
	// The odd worker first, so that it would get the first jobs if the
	// data hash did not keep them from it.
	waitLog(t, odd.log, "worker started")
	good := startWorker(t, url, "good")
	d.runDone(spec)
	odd.stop(syscall.SIGTERM)
	good.stop(syscall.SIGTERM)
	const refusal = "refusing the run's jobs: its data set differs here"
	if n := strings.Count(odd.log.String(), refusal); n != 1 || !strings.Contains(odd.log.String(), "done=0") {
		t.Errorf("odd worker: %d refusal lines (want 1) or jobs done:\n%s", n, tail(odd.log.String(), 8))
	}
	if strings.Contains(good.log.String(), refusal) || strings.Contains(good.log.String(), "done=0") {
		t.Errorf("good worker refused or computed nothing:\n%s", tail(good.log.String(), 8))
	}

	// The odd worker alone: nobody takes the run's jobs, and the daemon
	// says so.
	spec.Name = "g"
	odd = startWorkerArgs(t, replaydBin, url, "odd2", []string{"--data-path", changed})
	if _, err := d.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(hangGuard)
	for !strings.Contains(d.raw("/metrics"), "replay_remote_runs_refused 1\n") {
		if time.Now().After(deadline) {
			t.Fatalf("no run refused by every worker after %v:\n%s", hangGuard, grepLines(d.raw("/metrics"), "replay_remote_"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A worker with the run's data comes: the run finishes.
	good = startWorker(t, url, "good2")
	d.waitDone(spec.Name)
	odd.stop(syscall.SIGTERM)
	good.stop(syscall.SIGTERM)
	if !strings.Contains(odd.log.String(), "done=0") {
		t.Errorf("odd worker computed jobs:\n%s", tail(odd.log.String(), 8))
	}
	if m := d.raw("/metrics"); !strings.Contains(m, "replay_remote_runs_refused 0\n") {
		t.Errorf("the finished run still counted as refused:\n%s", grepLines(m, "replay_remote_"))
	}
	d.stop(syscall.SIGTERM)
	if !strings.Contains(d.log.String(), "no worker can take the run's jobs") {
		t.Errorf("the daemon's log does not name the refused run:\n%s", tail(d.log.String(), 20))
	}
}
