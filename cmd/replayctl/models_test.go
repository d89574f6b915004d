package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
)

// buildFakeModel builds the fake external model (internal/fakechild: the
// operator protocol's child side in Go, interchangeable with the Python
// worker) into dir.
func buildFakeModel(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "fakemodel")
	if b, err := exec.Command("go", "build", "-o", out, "github.com/replay-sgd/replay/internal/fakechild/fakemodel").CombinedOutput(); err != nil {
		t.Fatalf("build fakemodel: %v\n%s", err, b)
	}
	return out
}

// processesOf returns the pids of the processes running exe (from /proc).
func processesOf(exe string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && p == exe {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestE2EExternalModel: replayd --model-cmd registers a model; replayctl
// models lists it; a run of it completes through the daemon; SIGTERM
// leaves no child behind. An unregistered model and a preset whose model
// is not registered are refused with the flag that registers them.
func TestE2EExternalModel(t *testing.T) {
	fake := buildFakeModel(t, t.TempDir())
	d := startDaemon(t, "--model-cmd", "fake="+fake)

	var l api.ModelList
	out := d.ctl(t, "models", "-o", "json").ok(t, "models -o json")
	if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Models) != 1 {
		t.Fatalf("models json: %v\n%s", err, out)
	}
	m := l.Models[0]
	if m.Name != "ext:fake" || m.Family != "ext" || m.Train != 100 || m.Test != 50 || m.Classes != 10 || len(m.Tensors) != 3 ||
		m.Tensors[0].Name != "w" || len(m.Tensors[0].Shape) != 2 || !m.Tensors[0].Param || m.Tensors[2].Param || m.Fingerprint["impl"] != "fakechild" {
		t.Fatalf("models: %+v", m)
	}
	table := d.ctl(t, "models").ok(t, "models")
	for _, want := range []string{"ext:fake", "  w", "[2,2]", "buffer", "impl=fakechild"} {
		if !strings.Contains(table, want) {
			t.Errorf("models table lacks %q:\n%s", want, table)
		}
	}

	d.ctl(t, "run", "start", "--model", "ext:fake", "--name", "x", "--lr", "0.05", "--batch", "2", "--steps", "40", "--window", "8").ok(t, "run start")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st := statusJSON(t, d, "x")
		if st.State == "failed" {
			t.Fatalf("run failed: %s", st.Reason)
		}
		if st.State == "done" && st.BackwardStep == st.Steps {
			if st.Spec.Dataset != "ext:fake" {
				t.Errorf("dataset %q, want ext:fake", st.Spec.Dataset)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run not done: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}

	d.ctl(t, "run", "start", "--model", "ext:other", "--name", "y").fails(t, "unregistered model", 1, "--model-cmd other=")
	d.ctl(t, "run", "start", "--preset", "fmnist-cnn").fails(t, "preset without its model", 1, "--torch-model fmnist-cnn=examples/cnn_fmnist.py")

	if n := len(processesOf(fake)); n == 0 {
		t.Fatalf("no fake child is running (the check below would prove nothing)")
	}
	// SIGTERM, then wait until the daemon is gone (reaped by startDaemon's
	// goroutine): its children must be gone with it.
	pid := d.cmd.Process.Pid
	d.cmd.Process.Signal(syscall.SIGTERM)
	deadline = time.Now().Add(time.Minute)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("replayd still running a minute after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if pids := processesOf(fake); len(pids) != 0 {
		t.Fatalf("children %v survive the daemon", pids)
	}
}
