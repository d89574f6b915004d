package main

// Helpers of the external-model end-to-end tests (e2e_ext_test.go): a
// replayd that can be SIGKILLed and started again on the same data
// directory, its Python children found through /proc, exports through
// replayctl, and python/replay_ref run on them.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/export"
)

// extGuard bounds every wait of these tests: a run of a few dozen steps of
// the small models takes seconds; minutes mean something is stuck.
const extGuard = 3 * time.Minute

// lockedLog is a daemon's combined output, readable while it runs.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// extDaemon is a replayd on a data directory that outlives the process: a
// test can SIGKILL it and start it again on the same store.
type extDaemon struct {
	t      *testing.T
	dir    string
	env    []string // added to the test's environment (the children inherit it)
	args   []string
	cmd    *exec.Cmd
	log    *lockedLog
	exited chan struct{}
	c      *api.Client
	d      *daemon // the address, for ctl and e2e_torch_test.go's helpers
}

// newExtDaemon starts replayd with one worker, env and args (the
// --torch-model flags) on a fresh data directory.
func newExtDaemon(t *testing.T, env []string, args ...string) *extDaemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "rx") // short: a unix socket path has ~108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // first registered: runs after every stop
	e := &extDaemon{t: t, dir: dir, env: env, args: args}
	e.start()
	return e
}

// start starts the process on e.dir and waits until it answers /healthz:
// replayd registers its external models (each child's hello: importing
// torch, loading the data) before it listens.
func (e *extDaemon) start() {
	t := e.t
	t.Helper()
	addr := "unix:" + filepath.Join(e.dir, api.SocketName)
	e.d = &daemon{dir: e.dir, addr: addr}
	e.cmd = exec.Command(bin.replayd, append([]string{"--data-dir", e.dir, "--workers", "1", "--log-level", "warn"}, e.args...)...)
	e.cmd.Env = append(os.Environ(), e.env...)
	e.log, e.exited = startProcess(t, "replayd", e.cmd)
	cmd, exited, log := e.cmd, e.exited, e.log
	e.c = api.NewClient(addr, "")
	deadline := time.Now().Add(extGuard)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := e.c.Health(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-exited:
			t.Fatalf("replayd exited at start: %v; log:\n%s", cmd.ProcessState, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("replayd did not come up within %v: %v; log:\n%s", extGuard, err, log.String())
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

// startProcess starts cmd with its output in a new log, and stops it at
// t's cleanup: SIGTERM, then SIGKILL (an error) if it has not exited 30 s
// later. exited is closed once the process is reaped.
func startProcess(t *testing.T, what string, cmd *exec.Cmd) (log *lockedLog, exited chan struct{}) {
	t.Helper()
	log, exited = &lockedLog{}, make(chan struct{})
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
			return
		default:
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("%s did not stop within 30 s of SIGTERM; log:\n%s", what, tail(log.String(), 60))
		}
	})
	return log, exited
}

// readFilesInto adds each file's bytes to o under its base name.
func readFilesInto(t *testing.T, o map[string][]byte, files []string) {
	t.Helper()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		o[filepath.Base(f)] = b
	}
}

// kill SIGKILLs the daemon (not its children) and waits until it is reaped.
func (e *extDaemon) kill() {
	e.t.Helper()
	e.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-e.exited:
	case <-time.After(time.Minute):
		e.t.Fatalf("replayd not reaped a minute after SIGKILL")
	}
}

// ctl runs replayctl against the daemon.
func (e *extDaemon) ctl(args ...string) result {
	e.t.Helper()
	return e.d.ctl(e.t, args...)
}

// waitFor polls the run's status until ok holds (a failed run fails the
// test at once) and returns the status that satisfied it.
func (e *extDaemon) waitFor(run, what string, ok func(api.RunStatus) bool) api.RunStatus {
	e.t.Helper()
	deadline := time.Now().Add(extGuard)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := e.c.Status(ctx, run)
		cancel()
		if err != nil {
			e.t.Fatalf("status %s: %v", run, err)
		}
		if st.State == "failed" {
			e.t.Fatalf("run %s failed: %s; log:\n%s", run, st.Reason, tail(e.log.String(), 40))
		}
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("run %s: not %s within %v: %+v", run, what, extGuard, st)
		}
		time.Sleep(5 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

// waitDone waits until the run is done with every backward iterate.
func (e *extDaemon) waitDone(run string) api.RunStatus {
	e.t.Helper()
	return e.waitFor(run, "done", func(st api.RunStatus) bool { return st.State == "done" && st.BackwardStep == st.Steps })
}

// children returns the pids of the daemon's Python workers (processes
// whose parent is the daemon and whose command line runs replay_worker).
func (e *extDaemon) children() []int {
	return workerChildren(e.cmd.Process.Pid)
}

func workerChildren(ppid int) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if parentOf(pid) == ppid && isWorker(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// parentOf reads the parent pid from /proc/PID/stat (the fourth field; the
// second, the command name in parentheses, may hold spaces).
func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return -1
	}
	p, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return p
}

// computing tells whether pid is running or runnable (state R in
// /proc/PID/stat): a worker waiting for its next request sleeps in read
// (S), one computing a request is R.
func computing(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && strings.HasPrefix(s[i+1:], " R")
}

// isWorker tells whether pid is alive (not a zombie) and runs replay_worker.
func isWorker(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 { // a zombie has an empty command line
		return false
	}
	return bytes.Contains(b, []byte("replay_worker"))
}

// waitGone waits until none of pids is a live replay_worker process.
func waitGone(t *testing.T, pids []int, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var alive []int
		for _, p := range pids {
			if isWorker(p) {
				alive = append(alive, p)
			}
		}
		if len(alive) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: workers %v still alive a minute later", what, alive)
		}
		time.Sleep(10 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

// waitReaped waits until pids no longer exist: their parent has reaped
// them (so it knows they are dead).
func waitReaped(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for _, p := range pids {
		for {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", p)); errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("process %d not reaped a minute after SIGKILL", p)
			}
			time.Sleep(5 * time.Millisecond) // polling interval of a condition with a deadline
		}
	}
}

// exporter writes a run's exports through replayctl into dir.
type exporter struct {
	e        *extDaemon
	run, dir string
}

func (x exporter) export(file string, args ...string) string {
	x.e.t.Helper()
	p := filepath.Join(x.dir, file)
	x.e.ctl(append([]string{"export", "--run", x.run, "--out", p}, args...)...).ok(x.e.t, "export "+file)
	return p
}

// iterate exports θ_n (forward) or θ̃_n (backward).
func (x exporter) iterate(kind string, n int) string {
	return x.export(fmt.Sprintf("%s%d.safetensors", kind, n), "--step", strconv.Itoa(n), "--kind", kind)
}

// refCheck is one python/replay_ref check of a model file's exports.
type refCheck struct {
	modelFile, theta0, batches string
	lr                         float64
	anchors                    []string // R:forward|backward
	checks                     []string // KIND:N=FILE
}

func (r refCheck) args() []string {
	a := []string{"-m", "replay_ref", "check", "--model-file", r.modelFile, "--theta0", r.theta0,
		"--batches", r.batches, "--optimizer", "sgd", "--lr", strconv.FormatFloat(r.lr, 'g', -1, 64)}
	for _, s := range r.anchors {
		a = append(a, "--anchor", s)
	}
	for _, c := range r.checks {
		a = append(a, "--check", c)
	}
	return a
}

// run runs the check with Debian's interpreter and env (the model file's
// data subset) and returns its output and exit code. Safe to call from any
// goroutine: it reports a failure to start as an error.
func (r refCheck) run(env []string) (string, int, error) {
	pyDir, err := filepath.Abs(filepath.Join("..", "..", "python"))
	if err != nil {
		return "", -1, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), extGuard)
	defer cancel()
	cmd := exec.CommandContext(ctx, debianPython, r.args()...)
	cmd.Dir = pyDir
	cmd.Env = append(append(os.Environ(), "PYTHONPATH="+pyDir, "OMP_NUM_THREADS=1", "PYTHONDONTWRITEBYTECODE=1"), env...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return b.String(), 0, nil
	case errors.As(err, &ee) && ctx.Err() == nil:
		return b.String(), ee.ExitCode(), nil
	}
	return b.String(), -1, fmt.Errorf("replay_ref: %w", err)
}

// tensorLines returns replay_ref's per-tensor lines.
func tensorLines(out string) []string {
	var ls []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, ": max|Δ| ") {
			ls = append(ls, l)
		}
	}
	return ls
}

// requireBitwise checks that replay_ref passed, compared want tensors, and
// found every one bitwise equal to PyTorch's (max|Δ| 0).
func requireBitwise(t *testing.T, what, out string, code, want, checks int) {
	t.Helper()
	if code != 0 || !strings.Contains(out, fmt.Sprintf("all %d tensors of %d checks within tolerance", want, checks)) {
		t.Fatalf("replay_ref check of %s: exit %d, want all %d tensors of %d checks within tolerance:\n%s", what, code, want, checks, out)
	}
	ls := tensorLines(out)
	if len(ls) != want {
		t.Fatalf("replay_ref check of %s: %d tensor lines, want %d:\n%s", what, len(ls), want, out)
	}
	for _, l := range ls {
		if !strings.Contains(l, ": max|Δ| 0 rel 0 ") {
			t.Errorf("%s: not bitwise: %s", what, l)
		}
	}
}

// tensorsOf reads a safetensors export into a map by name.
func tensorsOf(t *testing.T, p string) map[string]export.Tensor {
	t.Helper()
	m := map[string]export.Tensor{}
	for _, x := range readSafetensorsFile(t, p) {
		m[x.Name] = x
	}
	return m
}

// writeTensors writes ts as safetensors to p.
func writeTensors(t *testing.T, p string, ts map[string]export.Tensor) {
	t.Helper()
	var l []export.Tensor
	for _, x := range ts {
		l = append(l, x)
	}
	var b bytes.Buffer
	if err := export.WriteSafetensors(&b, l); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}
