package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/internal/fmnistcopy"
)

const fashionDir = "/usr/share/datasets/fashion-mnist"

// changedFashionCopy is a copy of Fashion-MNIST whose last training
// pixel differs: the same files but for one byte.
func changedFashionCopy(t *testing.T) string {
	t.Helper()
	return fmnistcopy.Copy(t, fashionDir, 16+60000*784-1)
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
