package main

// Remote workers computing a real PyTorch model (issues 11 and 12 together):
// the real replayd with its embedded NATS server and no in-process worker,
// `replayd worker --torch-model` processes running the real Python worker
// (python/replay_worker, Debian's interpreter and python3-torch) on
// examples/cnn_fmnist.py, an Adam run whose optimizer state crosses the
// wire in every job and result, one worker SIGKILLed in a job and started
// again; the run is byte-equal to an in-process one.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
)

// remoteSteps is the length of the remote test's run: long enough that a
// worker killed at a third of it leaves most jobs to do after its restart.
const remoteSteps = 64

// remoteRun is an Adam run of examples/cnn_fmnist.py: window 16 and a
// reset from the backward state at 40 (anchor starts carrying θ and Adam's
// moments and step count), checkpoints every 16 (jobs from them carry the
// forward state). Adam's first and second moments are state that a worker
// must receive and return exactly: a worker that dropped or rounded them,
// or restarted them at zero, would change every number after the anchor.
func remoteRun() []string {
	return []string{"run", "start", "--name", "a", "--model", "ext:cnn", "--optimizer", "adam", "--lr", "0.001",
		"--batch", "8", "--steps", strconv.Itoa(remoteSteps), "--eval-every", "8", "--eval-size", "100",
		"--checkpoint-every", "16", "--seed", "11",
		"--strategy", "window", "--window", "16", "--reset-at", "40", "--reset-from", "backward"}
}

// collectRemoteRun is what the remote test compares: the trajectories as
// replayctl prints them (JSON) and the bytes of the batch log and of
// exports with the optimizer state (--with-state).
func collectRemoteRun(t *testing.T, e *extDaemon) killOutputs {
	t.Helper()
	o := killOutputs{}
	for _, kind := range []string{"forward", "backward"} {
		out := e.ctl("trajectory", "--run", "a", "--kind", kind, "-o", "json").ok(t, "trajectory")
		var pts []api.Point
		if err := json.Unmarshal([]byte(out), &pts); err != nil || len(pts) != remoteSteps || pts[len(pts)-1].Step != remoteSteps {
			t.Fatalf("%s trajectory: %v, %d points, want %d", kind, err, len(pts), remoteSteps)
		}
		o[kind+" trajectory"] = []byte(out)
	}
	x := exporter{e: e, run: "a", dir: t.TempDir()}
	files := []string{x.export("batches.npy", "--batches")}
	state := func(kind string, n int) string {
		return x.export(kind+strconv.Itoa(n)+".safetensors", "--step", strconv.Itoa(n), "--kind", kind, "--with-state")
	}
	for _, n := range []int{0, 25, 32, remoteSteps} {
		files = append(files, state("forward", n))
	}
	// Under each anchor (0, 16, 32, 40, 56): its first step and others.
	for _, n := range []int{1, 16, 17, 33, 40, 41, 50, 57, remoteSteps} {
		files = append(files, state("backward", n))
	}
	readFilesInto(t, o, files)
	// The state is in the exports: Adam's moments of each of the CNN's six
	// tensors and the step count, after θ.
	ts := tensorsOf(t, x.export("check.safetensors", "--step", "41", "--kind", "backward", "--with-state"))
	if st := ts["optim.step"].Data; len(st) != 1 || st[0] != 41 {
		t.Fatalf("θ̃_41's optim.step %v, want 41 (the anchor's 40, then one step)", st)
	}
	if len(ts) != 6+2*6+1 {
		t.Fatalf("θ̃_41 with its state has %d tensors, want the CNN's 6, two Adam moments of each and optim.step", len(ts))
	}
	return o
}

// extWorker is a `replayd worker` process that a test can SIGKILL and
// start again under the same name.
type extWorker struct {
	t      *testing.T
	name   string
	args   []string
	env    []string
	cmd    *exec.Cmd
	log    *lockedLog
	exited chan struct{}
}

func newExtWorker(t *testing.T, name, natsURL string, env []string, args ...string) *extWorker {
	t.Helper()
	w := &extWorker{t: t, name: name, env: env,
		args: append([]string{"worker", "--nats", natsURL, "--name", name, "--log-level", "info"}, args...)}
	w.start()
	return w
}

func (w *extWorker) start() {
	t := w.t
	t.Helper()
	w.cmd = exec.Command(bin.replayd, w.args...)
	w.cmd.Env = append(append(os.Environ(), "REPLAYD_TOKEN="), w.env...)
	log, exited := startProcess(t, "worker "+w.name, w.cmd)
	w.log, w.exited = log, exited
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker %s log:\n%s", w.name, tail(log.String(), 30))
		}
	})
}

// kill SIGKILLs the worker process (not its children) and waits until it
// is reaped.
func (w *extWorker) kill() {
	w.t.Helper()
	w.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-w.exited:
	case <-time.After(time.Minute):
		w.t.Fatalf("worker %s not reaped a minute after SIGKILL", w.name)
	}
}

// children returns the pids of the worker's Python children.
func (w *extWorker) children() []int { return workerChildren(w.cmd.Process.Pid) }

// natsURL waits for the embedded server's URL, which replayd writes into
// its data directory (cmd/replayd/remote.go's natsURLFile) once it listens.
func (e *extDaemon) natsURL() string {
	e.t.Helper()
	deadline := time.Now().Add(extGuard)
	for {
		b, err := os.ReadFile(filepath.Join(e.dir, "nats-url"))
		if err == nil && len(bytes.TrimSpace(b)) > 0 {
			return string(bytes.TrimSpace(b))
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no nats-url in the data directory after %v: %v", extGuard, err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

// metric returns the value of a counter without labels in the daemon's
// /metrics.
func (e *extDaemon) metric(name string) float64 {
	e.t.Helper()
	rt, base := e.c.Transport()
	hc := &http.Client{Transport: rt, Timeout: 10 * time.Second}
	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		e.t.Fatalf("no %s in /metrics", name)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		e.t.Fatalf("%s: %v", name, err)
	}
	return v
}

// TestE2EExtRemote: an Adam run of examples/cnn_fmnist.py computed only by
// two `replayd worker --torch-model` processes (the daemon has no
// in-process worker) — the Python child of w2 SIGKILLed in a job, w1
// SIGKILLed while its Python child computes a job and started again, then
// w2 stopped by SIGTERM in a job — gives trajectories, a batch log and exports
// with the optimizer state byte-equal to an in-process run's. The killed
// worker's Python children do not outlive it (an orphaned torch process per
// kill would exhaust a worker machine), and the daemon's spot checks of
// the workers' results (each worker's first, re-executed by the daemon's
// own Python child) found no difference.
func TestE2EExtRemote(t *testing.T) {
	t0 := time.Now()
	since := func() time.Duration { return time.Since(t0).Round(time.Millisecond) }
	cnn := examplePath(t, "cnn_fmnist.py")
	// --max-lag 8 keeps the trainer close to the backward frontier, so
	// that the kill finds jobs left to do. It changes no number.
	args := []string{"--torch-model", "cnn=" + cnn, "--max-lag", "8"}

	ref := newExtDaemon(t, extEnv, args...)
	ref.ctl(remoteRun()...).ok(t, "run start")
	ref.waitDone("a")
	want := collectRemoteRun(t, ref)
	t.Logf("%v: in-process run collected", since())

	// --job-ack-wait 2s: the killed worker's job goes to another worker
	// 2 s after its last heartbeat, not 30.
	e := newExtDaemon(t, extEnv, append(args, "--workers", "0", "--remote-workers", "--nats-listen", "127.0.0.1:0", "--job-ack-wait", "2s")...)
	url := e.natsURL()
	// The workers' copy of the model file is elsewhere, as on another
	// machine: a run's data hash covers the file's content, not its path.
	b, err := os.ReadFile(cnn)
	if err != nil {
		t.Fatal(err)
	}
	workerCNN := filepath.Join(t.TempDir(), "my_cnn.py")
	if err := os.WriteFile(workerCNN, b, 0o600); err != nil {
		t.Fatal(err)
	}
	w1 := newExtWorker(t, "w1", url, extEnv, "--torch-model", "cnn="+workerCNN)
	w2 := newExtWorker(t, "w2", url, extEnv, "--torch-model", "cnn="+workerCNN)
	e.ctl(remoteRun()...).ok(t, "run start")

	// First w2's Python child SIGKILLed while it computes a job (what the
	// OOM killer would choose on a worker machine: the largest process):
	// the worker retries the request on a fresh child.
	var kids []int
	st := e.waitFor("a", "a job of w2 computing", func(st api.RunStatus) bool {
		if st.BackwardStep >= remoteSteps { // too late: fail now, below
			return true
		}
		if st.BackwardStep < 2 {
			return false
		}
		kids = w2.children()
		return slices.ContainsFunc(kids, computing)
	})
	if st.BackwardStep >= remoteSteps {
		t.Fatalf("the run was done before a job of w2 was seen computing: %+v", st)
	}
	for _, pid := range kids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill child %d: %v", pid, err)
		}
	}
	t.Logf("%v: w2's children %v SIGKILLed at forward %d, backward %d", since(), kids, st.ForwardStep, st.BackwardStep)

	// Then w1 killed while one of its children computes a job, a few
	// backward steps later.
	at := st.BackwardStep + 2
	st = e.waitFor("a", "a job of w1 computing", func(st api.RunStatus) bool {
		if st.BackwardStep >= remoteSteps {
			return true
		}
		if st.BackwardStep < at {
			return false
		}
		kids = w1.children()
		return slices.ContainsFunc(kids, computing)
	})
	w1.kill()
	if st.BackwardStep >= remoteSteps || len(kids) == 0 {
		t.Fatalf("killed w1 at %+v with children %v: not mid-run", st, kids)
	}
	t.Logf("%v: w1 SIGKILLed at forward %d, backward %d; its children %v", since(), st.ForwardStep, st.BackwardStep, kids)
	waitGone(t, kids, "the SIGKILLed worker's Python children")
	t.Logf("%v: its children gone", since())
	w1.start()

	// Then w2 stopped with SIGTERM while its child computes a job: it
	// hands the job back and exits 0, and its children are gone; the
	// restarted w1 computes the rest.
	st = e.waitFor("a", "a job of w2 computing", func(st api.RunStatus) bool {
		if st.BackwardStep >= remoteSteps {
			return true
		}
		kids = w2.children()
		return slices.ContainsFunc(kids, computing)
	})
	if st.BackwardStep >= remoteSteps {
		t.Fatalf("the run was done before a job of w2 was seen computing again: %+v", st)
	}
	w2.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w2.exited:
	case <-time.After(time.Minute):
		t.Fatalf("w2 still running a minute after SIGTERM")
	}
	if code := w2.cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(w2.log.String(), "worker stopped") {
		t.Fatalf("w2 after SIGTERM: exit %d; log:\n%s", code, tail(w2.log.String(), 10))
	}
	waitGone(t, kids, "the stopped worker's Python children")
	t.Logf("%v: w2 stopped by SIGTERM at backward %d, its children %v gone", since(), st.BackwardStep, kids)
	e.waitDone("a")
	t.Logf("%v: remote run done", since())
	got := collectRemoteRun(t, e)

	if len(got) != len(want) {
		t.Fatalf("collected %d outputs, the in-process run %d", len(got), len(want))
	}
	for k, w := range want {
		if !bytes.Equal(got[k], w) {
			t.Errorf("%s differs from the in-process run's", k)
		}
	}

	// Every job was computed by a worker (the daemon has none); none was
	// caught computing other bits. (w2, stopped, is no longer listed.)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	l, err := e.c.Workers(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	done := map[string]int64{}
	for _, x := range l.Workers {
		done[x.Name] += x.Done
		if x.State == "quarantined" {
			t.Errorf("worker %s quarantined", x.Name)
		}
	}
	if done["w1"] == 0 {
		t.Errorf("jobs done by worker %v: want the restarted w1 (the only worker left) to have done the rest", done)
	}
	v, m := e.metric("replay_remote_verified_total"), e.metric("replay_remote_mismatches_total")
	if v < 1 || m != 0 {
		t.Errorf("spot checks: %v verified, %v mismatches; want ≥ 1 and 0", v, m)
	}
	t.Logf("spot checks by the daemon's own Python child: %v of %v results verified bitwise, %v mismatches", v, e.metric("replay_remote_results_total"), m)
	// w2 noticed its killed child (a request in flight fails and is
	// retried; a child killed as it went idle is found dead when taken).
	if log := w2.log.String(); !strings.Contains(log, "retrying on a fresh child") && !strings.Contains(log, "died while idle") {
		t.Errorf("w2's log does not say that it noticed its killed child:\n%s", tail(log, 30))
	}
	// The job w1 was computing when it died was computed again.
	if r := e.metric("replay_remote_redelivered_total"); r < 1 {
		t.Errorf("%v results of redelivered jobs: the kill did not hit a job", r)
	}
	t.Logf("%v: jobs done by worker %v (w1: since its restart)", since(), done)
	// An idle worker SIGKILLed: its children do not outlive it either.
	kids = w1.children()
	w1.kill()
	waitGone(t, kids, "the idle SIGKILLed worker's Python children")
}
