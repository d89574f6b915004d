package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
)

// TestRemoteWorkerModelChanged: a `replayd worker` whose model file is
// edited after it started (its children from then on are of another
// model: extmodel refuses them, ErrChanged) hands the job back and refuses
// the run, as a worker whose data set differs does, instead of failing it:
// another worker computes the run, whose numbers equal an in-process
// run's. (The failure was the worker machine's, not the run's; the run
// failed, for good, with "apply failed 3 times in a row: … another
// fingerprint than at registration".)
//
// The fake child's fingerprint holds its arguments: a shell reading the
// "model file" into them plays a Python worker reporting model_sha256.
func TestRemoteWorkerModelChanged(t *testing.T) {
	fake := buildFake(t, t.TempDir())
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	model := func(f string) string { return fmt.Sprintf(`fake=exec %s "$(cat %s)"`, fake, f) }
	daemonFile, w1File, w2File := file("daemon", "v1"), file("w1", "v1"), file("w2", "v1")
	spec := api.RunSpec{Name: "x", Model: "ext:fake", LR: 0.05, Batch: 2, Steps: 300, Seed: seed(9), Window: 16,
		EvalEvery: api.Ptr(10), CheckpointEvery: 50}

	ref := startDaemon(t, t.TempDir(), "--workers", "1", "--model-cmd", model(daemonFile))
	ref.runDone(spec)
	want := collect(ref, spec)
	ref.stop(syscall.SIGTERM)

	d := startDaemon(t, t.TempDir(), "--workers", "0", "--remote-workers", "--nats-listen", "127.0.0.1:0", "--model-cmd", model(daemonFile))
	w1 := startWorkerArgs(t, replaydBin, d.natsURL(), "w1", []string{"--model-cmd", model(w1File)})
	waitLog(t, w1.log, "worker started")
	// w1's model file edited, and its child (the registration's, idle)
	// killed: its next child is of the edited file.
	file("w1", "v2")
	kids := childPids(w1.cmd.Process.Pid)
	if len(kids) == 0 {
		t.Fatal("w1 has no child")
	}
	for _, pid := range kids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if _, err := d.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	const refusal = "refusing the run's jobs: its model changed here since this worker started"
	deadline := time.Now().Add(hangGuard)
	for !strings.Contains(w1.log.String(), refusal) {
		if st, err := d.c.Status(ctx(t), spec.Name); err != nil || st.State == "failed" {
			t.Fatalf("run with a worker whose model changed: %v %s; want the worker to refuse it", err, st.Reason)
		}
		if time.Now().After(deadline) {
			t.Fatalf("w1's log has no %q after %v", refusal, hangGuard)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a condition with a deadline
	}
	if n := strings.Count(w1.log.String(), refusal); n != 1 {
		t.Errorf("w1 logged the refusal %d times, want once", n)
	}
	// w2, of the registered file, computes the run.
	startWorkerArgs(t, replaydBin, d.natsURL(), "w2", []string{"--model-cmd", model(w2File)})
	d.waitDone(spec.Name)
	got := collect(d, spec)
	sameResults(t, got, want, "from the in-process run's")
	w1.stop(syscall.SIGTERM)
}

// childPids are the processes whose parent is ppid (/proc/PID/stat's
// fourth field; the second, the command name in parentheses, may hold
// spaces).
func childPids(ppid int) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		if f := strings.Fields(s[i+1:]); len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			pids = append(pids, pid)
		}
	}
	return pids
}
