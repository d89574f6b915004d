package main

// Issue 12's end-to-end tests of external models: the real replayd with
// --torch-model runs the real Python worker (python/replay_worker, Debian's
// interpreter and python3-torch) on the shipped model files (examples/),
// driven through the real replayctl; python/replay_ref recomputes the
// exported iterates with plain PyTorch.
//
// Why bitwise: the worker and replay_ref run the same torch build on the
// same machine, the same module on the same float32 inputs (the model
// file's datasets(): the IDX bytes scaled by 1/255), the same operations
// in the same order (train mode, the batch loss, backward, torch.optim's
// step) on one thread with deterministic algorithms; the state crosses the
// protocol as raw float32 bytes, which is exact. So the recomputed
// iterates are not merely within float32 rounding (replay_ref's tolerance,
// which a daemon on another machine would need) but equal, and the tests
// assert that: a worker that took another code path, rounded the state or
// dropped a buffer would show at once.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
)

// extEnv keeps the first 1000 examples of each split (the examples read
// REPLAY_FMNIST_SUBSET): the daemon's children and replay_ref load the same
// data, and the evaluation subsets (--eval-size 100) fit in it.
var extEnv = []string{"REPLAY_FMNIST_SUBSET=1000"}

// examplePath is the absolute path of a shipped model file.
func examplePath(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// extRun is the flags of a run of torchSteps steps of batch 8 (the
// helpers of e2e_torch_test.go expect that length), checkpoints every 16.
func extRun(name, model string, lr float64, strategy ...string) []string {
	return append([]string{"run", "start", "--name", name, "--model", model,
		"--lr", strconv.FormatFloat(lr, 'g', -1, 64), "--batch", strconv.Itoa(torchBatch), "--steps", strconv.Itoa(torchSteps),
		"--eval-every", "8", "--eval-size", "100", "--checkpoint-every", "16", "--seed", "3"}, strategy...)
}

// windowFlags: W = 16 and a reset at 40 from θ̃_40, so the anchors are 16,
// 32 (the window) and 40 (the reset), each starting from a backward state.
var windowFlags = []string{"--strategy", "window", "--window", "16", "--reset-at", "40", "--reset-from", "backward"}

// windowAnchors and windowChecks: the anchors windowFlags give, and the
// steps checked under them (the last step under each anchor and the first
// after it).
var (
	windowAnchors = []int{16, 32, 40}
	windowChecks  = []int{16, 17, 32, 33, 40, 41, torchSteps}
)

// anchorArgs are replay_ref's --anchor values for anchors started from the
// backward state.
func anchorArgs(anchors []int) []string {
	var a []string
	for _, r := range anchors {
		a = append(a, fmt.Sprintf("%d:backward", r))
	}
	return a
}

// verifyOK runs replayctl verify on the run: ok, every step re-executed,
// against at least the checkpoints every 16 steps give.
func verifyOK(t *testing.T, e *extDaemon, run string, steps int) {
	t.Helper()
	out := e.ctl("verify", "--run", run, "-o", "json").ok(t, "verify "+run)
	var rep api.VerifyReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("verify json: %v\n%s", err, out)
	}
	if !rep.OK || rep.Steps != steps || rep.Checkpoints < steps/16 || len(rep.Problems) != 0 {
		t.Fatalf("verify %s: %+v, want ok over %d steps and ≥ %d checkpoints", run, rep, steps, steps/16)
	}
	table := e.ctl("verify", "--run", run).ok(t, "verify "+run)
	if !strings.HasSuffix(strings.TrimSpace(table), ": ok") {
		t.Fatalf("verify %s says %q, want it to end with ': ok'", run, table)
	}
}

// TestE2EExtCNN: examples/cnn_fmnist.py through replayd --torch-model, one
// run with the full strategy and one with the window strategy and a reset;
// θ_0, the batch log and forward and backward iterates at several steps
// exported through replayctl are recomputed by plain PyTorch (replay_ref
// --model-file), bitwise; replayctl verify says ok for both runs, and
// again after every (idle) child was SIGKILLed.
func TestE2EExtCNN(t *testing.T) {
	t0 := time.Now()
	cnn := examplePath(t, "cnn_fmnist.py")
	e := newExtDaemon(t, extEnv, "--torch-model", "cnn="+cnn)
	t.Logf("daemon up at %v", time.Since(t0).Round(time.Millisecond))
	const lr = 0.1
	e.ctl(extRun("full", "ext:cnn", lr, "--strategy", "full", "--reset-at", "none")...).ok(t, "run start full")
	e.ctl(extRun("window", "ext:cnn", lr, windowFlags...)...).ok(t, "run start window")
	for _, run := range []string{"full", "window"} {
		e.waitDone(run)
		trains(t, e.d, run)
	}
	t.Logf("runs done at %v", time.Since(t0).Round(time.Millisecond))
	if a := backwardAnchors(t, e.d, "full"); len(a) != 0 {
		t.Fatalf("full strategy: anchors %v, want none after 0", a)
	}
	if a := backwardAnchors(t, e.d, "window"); !slices.Equal(a, windowAnchors) {
		t.Fatalf("window strategy: anchors %v, want %v", a, windowAnchors)
	}

	tmp := t.TempDir()
	var checks []refCheck
	counts := []int{}
	for _, run := range []string{"full", "window"} {
		dir := filepath.Join(tmp, run)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		x := exporter{e: e, run: run, dir: dir}
		c := refCheck{modelFile: cnn, lr: lr, theta0: x.iterate("forward", 0), batches: x.export("batches.npy", "--batches")}
		if run == "full" {
			for _, n := range torchChecks {
				c.checks = append(c.checks, fmt.Sprintf("forward:%d=%s", n, x.iterate("forward", n)),
					fmt.Sprintf("backward:%d=%s", n, x.iterate("backward", n)))
			}
		} else {
			c.anchors = anchorArgs(windowAnchors)
			for _, n := range windowChecks {
				c.checks = append(c.checks, fmt.Sprintf("backward:%d=%s", n, x.iterate("backward", n)))
			}
			// The strategy changes nothing forward: the same seed gives
			// the same θ_0, batch log and forward iterates.
			x.iterate("forward", torchSteps)
			for _, f := range []string{"forward0.safetensors", "batches.npy", fmt.Sprintf("forward%d.safetensors", torchSteps)} {
				a, err1 := os.ReadFile(filepath.Join(tmp, "full", f))
				b, err2 := os.ReadFile(filepath.Join(dir, f))
				if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
					t.Fatalf("%s of the window run differs from the full run's (%v, %v)", f, err1, err2)
				}
			}
		}
		checks = append(checks, c)
		counts = append(counts, len(c.checks))
	}
	if n := len(tensorsOf(t, checks[0].theta0)); n != 6 {
		t.Fatalf("θ_0 has %d tensors, want the CNN's 6 (two convolutions and a linear layer, weight and bias)", n)
	}

	// Both checks at once: each is one Python process, the machine has
	// two cores.
	type outcome struct {
		out  string
		code int
		err  error
	}
	res := make([]outcome, len(checks))
	done := make(chan struct{})
	for i, c := range checks {
		go func() {
			defer func() { done <- struct{}{} }()
			res[i].out, res[i].code, res[i].err = c.run(extEnv)
		}()
	}
	for range checks {
		<-done
	}
	for i, run := range []string{"full", "window"} {
		if res[i].err != nil {
			t.Fatalf("%s: %v\n%s", run, res[i].err, res[i].out)
		}
		requireBitwise(t, run, res[i].out, res[i].code, 6*counts[i], counts[i])
		t.Logf("%s: %s", run, lastLine(res[i].out))
	}
	t.Logf("checked at %v", time.Since(t0).Round(time.Millisecond))

	for _, run := range []string{"full", "window"} {
		verifyOK(t, e, run, torchSteps)
	}
	t.Logf("verified at %v", time.Since(t0).Round(time.Millisecond))

	// Every child SIGKILLed while idle (from outside: an operator, the
	// OOM killer). The two runs' trainers and the worker had up to three
	// at once, as many as a request has attempts: the next requests must
	// still find a fresh child, not spend their attempts on the dead.
	kids := e.children()
	for _, pid := range kids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill child %d: %v", pid, err)
		}
	}
	waitReaped(t, kids)
	for _, run := range []string{"full", "window"} {
		verifyOK(t, e, run, torchSteps)
	}
	t.Logf("%d idle children SIGKILLed, verified again at %v", len(kids), time.Since(t0).Round(time.Millisecond))
}

// bnBuffers are the BatchNorm buffers of examples/bn_mlp.py, the state
// that is not a parameter.
var bnBuffers = []string{"2.running_mean", "2.running_var", "2.num_batches_tracked"}

// TestE2EExtBatchNorm: examples/bn_mlp.py (Linear, BatchNorm1d, ReLU,
// Linear). Its running statistics are state: replayctl models lists them
// as buffers, every export holds them as the steps left them (through
// anchors started from backward states too), and plain PyTorch recomputes
// them bitwise; the same iterates with the running statistics replaced by
// the initial ones — what a daemon that kept only the parameters would
// export — fail the check on exactly those tensors.
func TestE2EExtBatchNorm(t *testing.T) {
	t0 := time.Now()
	bn := examplePath(t, "bn_mlp.py")
	e := newExtDaemon(t, extEnv, "--torch-model", "bn="+bn)
	t.Logf("daemon up at %v", time.Since(t0).Round(time.Millisecond))

	var l api.ModelList
	out := e.ctl("models", "-o", "json").ok(t, "models")
	if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Models) != 1 {
		t.Fatalf("models json: %v\n%s", err, out)
	}
	buffers := []string{}
	for _, x := range l.Models[0].Tensors {
		if !x.Param {
			buffers = append(buffers, x.Name)
		}
	}
	if !slices.Equal(buffers, bnBuffers) {
		t.Fatalf("buffers %v, want %v", buffers, bnBuffers)
	}

	const lr = 0.05
	e.ctl(extRun("bn", "ext:bn", lr, windowFlags...)...).ok(t, "run start")
	e.waitDone("bn")
	trains(t, e.d, "bn")
	if a := backwardAnchors(t, e.d, "bn"); !slices.Equal(a, windowAnchors) {
		t.Fatalf("anchors %v, want %v", a, windowAnchors)
	}
	t.Logf("run done at %v", time.Since(t0).Round(time.Millisecond))

	x := exporter{e: e, run: "bn", dir: t.TempDir()}
	c := refCheck{modelFile: bn, lr: lr, theta0: x.iterate("forward", 0), batches: x.export("batches.npy", "--batches"),
		anchors: anchorArgs(windowAnchors)}
	theta0 := tensorsOf(t, c.theta0)
	files := map[string]string{}
	for _, it := range []struct {
		kind string
		n    int
	}{{"forward", 17}, {"forward", torchSteps}, {"backward", 16}, {"backward", 17}, {"backward", 41}, {"backward", torchSteps}} {
		p := x.iterate(it.kind, it.n)
		key := fmt.Sprintf("%s:%d", it.kind, it.n)
		files[key] = p
		c.checks = append(c.checks, key+"="+p)
		// Every training step updates the statistics: n steps counted,
		// whichever chain (θ̃_41 = T_41(θ̃_40): the count went through
		// the anchor's start), and the mean and variance moved off their
		// initial zeros and ones.
		ts := tensorsOf(t, p)
		if got := ts["2.num_batches_tracked"].Data; len(got) != 1 || got[0] != float32(it.n) {
			t.Errorf("%s: num_batches_tracked %v, want %d", key, got, it.n)
		}
		for _, b := range bnBuffers[:2] {
			if got, ok := ts[b]; !ok || slices.Equal(got.Data, theta0[b].Data) {
				t.Errorf("%s: %s missing or still at its initial value", key, b)
			}
		}
	}
	// The same check on iterates whose running statistics are θ_0's.
	stale := c
	stale.checks = nil
	for _, key := range []string{"forward:48", "backward:41", "backward:48"} {
		ts := tensorsOf(t, files[key])
		for _, b := range bnBuffers {
			ts[b] = theta0[b]
		}
		p := strings.TrimSuffix(files[key], ".safetensors") + "-initial-stats.safetensors"
		writeTensors(t, p, ts)
		stale.checks = append(stale.checks, key+"="+p)
	}
	// Both at once: two Python processes, two cores.
	var (
		staleOut  string
		staleCode int
		staleErr  error
		staleDone = make(chan struct{})
	)
	go func() {
		defer close(staleDone)
		staleOut, staleCode, staleErr = stale.run(extEnv)
	}()
	got, code, err := c.run(extEnv)
	<-staleDone
	if err != nil {
		t.Fatalf("%v\n%s", err, got)
	}
	requireBitwise(t, "bn", got, code, 9*len(c.checks), len(c.checks))
	t.Logf("bn: %s", lastLine(got))

	got, code, err = staleOut, staleCode, staleErr
	if err != nil {
		t.Fatalf("%v\n%s", err, got)
	}
	if code != 1 || !strings.Contains(got, fmt.Sprintf("replay_ref: %d of %d tensors outside tolerance", 3*len(bnBuffers), 9*3)) {
		t.Fatalf("check with the initial statistics: exit %d, want 1 with %d of %d tensors outside tolerance:\n%s", code, 3*len(bnBuffers), 9*3, got)
	}
	for _, line := range tensorLines(got) {
		buffer := slices.ContainsFunc(bnBuffers, func(b string) bool { return strings.Contains(line, " "+b+" ") })
		if fail := strings.Contains(line, ": FAIL"); fail != buffer {
			t.Errorf("with the initial statistics, want exactly the buffers to fail: %s", line)
		}
	}
	t.Logf("with the initial statistics: %s", lastLine(got))

	verifyOK(t, e, "bn", torchSteps)
	t.Logf("verified at %v", time.Since(t0).Round(time.Millisecond))
}

// killSteps is the length of TestE2EExtKill's run: long enough that a kill
// at a third of it and another after the restart land in the middle.
const killSteps = 64

// killRun is TestE2EExtKill's run: the window strategy with a reset from
// the backward state, checkpoints every 16 steps.
func killRun() []string {
	return []string{"run", "start", "--name", "k", "--model", "ext:cnn", "--lr", "0.1", "--batch", "8",
		"--steps", strconv.Itoa(killSteps), "--eval-every", "16", "--eval-size", "100", "--checkpoint-every", "16", "--seed", "5",
		"--strategy", "window", "--window", "16", "--reset-at", "40", "--reset-from", "backward"}
}

// killOutputs is what TestE2EExtKill compares: the trajectories as
// replayctl prints them (JSON) and the bytes of exports.
type killOutputs map[string][]byte

func collectKillRun(t *testing.T, e *extDaemon) killOutputs {
	t.Helper()
	o := killOutputs{}
	for _, kind := range []string{"forward", "backward"} {
		out := e.ctl("trajectory", "--run", "k", "--kind", kind, "-o", "json").ok(t, "trajectory")
		var pts []api.Point
		if err := json.Unmarshal([]byte(out), &pts); err != nil || len(pts) != killSteps || pts[len(pts)-1].Step != killSteps {
			t.Fatalf("%s trajectory: %v, %d points, want %d", kind, err, len(pts), killSteps)
		}
		o[kind+" trajectory"] = []byte(out)
	}
	x := exporter{e: e, run: "k", dir: t.TempDir()}
	files := []string{x.export("batches.npy", "--batches")}
	// Checkpoints (32, every 16) and steps between them (recomputed from the
	// checkpoint before); backward under each anchor (16, 32, 40, 56).
	for _, n := range []int{0, 25, 32, 45, killSteps} {
		files = append(files, x.iterate("forward", n))
	}
	for _, n := range []int{1, 16, 17, 40, 41, 50, killSteps} {
		files = append(files, x.iterate("backward", n))
	}
	readFilesInto(t, o, files)
	return o
}

// TestE2EExtKill: a run of examples/cnn_fmnist.py whose daemon is SIGKILLed
// at a third of it and restarted, then whose Python children are SIGKILLed
// while it goes on, ends with trajectories and exports bitwise equal to an
// uninterrupted run's. The SIGKILLed daemon's children exit by themselves
// (no orphan keeps computing); the daemon notices its killed children and
// goes on with fresh ones (its log says so).
func TestE2EExtKill(t *testing.T) {
	t0 := time.Now()
	since := func() time.Duration { return time.Since(t0).Round(time.Millisecond) }
	cnn := examplePath(t, "cnn_fmnist.py")
	// --max-lag 8 keeps the trainer close to the backward frontier, so
	// that a kill finds both at work. It changes no number.
	args := []string{"--torch-model", "cnn=" + cnn, "--max-lag", "8"}

	ref := newExtDaemon(t, extEnv, args...)
	ref.ctl(killRun()...).ok(t, "run start")
	ref.waitDone("k")
	want := collectKillRun(t, ref)
	t.Logf("uninterrupted run collected at %v", since())

	e := newExtDaemon(t, extEnv, args...)
	e.ctl(killRun()...).ok(t, "run start")
	st := e.waitFor("k", "at a third", func(st api.RunStatus) bool { return st.ForwardStep >= killSteps/3 })
	kids := e.children()
	e.kill()
	if st.State != "running" || st.BackwardStep >= killSteps || len(kids) == 0 {
		t.Fatalf("killed the daemon at %+v with children %v: not mid-run", st, kids)
	}
	t.Logf("%v: daemon SIGKILLed at forward %d, backward %d; its children %v", since(), st.ForwardStep, st.BackwardStep, kids)
	waitGone(t, kids, "the SIGKILLed daemon's children")
	t.Logf("%v: its children gone", since())

	e.start()
	t.Logf("%v: restarted", since())
	// Past every step that may have been computed before the kill (the
	// restarted daemon is at work), and one of its children computing (a
	// request in flight, most likely; it may be sending its reply).
	at := st.ForwardStep + 2
	st = e.waitFor("k", "resumed, a child computing", func(st api.RunStatus) bool {
		if st.BackwardStep <= at {
			return false
		}
		kids = e.children()
		return slices.ContainsFunc(kids, computing)
	})
	for _, pid := range kids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill child %d: %v", pid, err)
		}
	}
	if st.State != "running" || st.BackwardStep >= killSteps {
		t.Fatalf("killed the children at %+v: not mid-run", st)
	}
	t.Logf("%v: children %v SIGKILLed at forward %d, backward %d", since(), kids, st.ForwardStep, st.BackwardStep)
	e.waitDone("k")
	// A child killed in a request fails it, and it is retried; one killed
	// while idle is found dead when next taken. Either way the daemon
	// noticed, and says so.
	if log := e.log.String(); !strings.Contains(log, "retrying on a fresh child") && !strings.Contains(log, "died while idle") {
		t.Fatalf("the daemon's log does not say that it noticed its killed children:\n%s", tail(log, 40))
	} else {
		t.Logf("the daemon's log: %d requests retried on a fresh child, %d children found dead while idle",
			strings.Count(log, "retrying on a fresh child"), strings.Count(log, "died while idle"))
	}
	got := collectKillRun(t, e)
	t.Logf("interrupted run collected at %v", since())

	if len(got) != len(want) {
		t.Fatalf("collected %d outputs, the uninterrupted run %d", len(got), len(want))
	}
	for k, w := range want {
		if !bytes.Equal(got[k], w) {
			t.Errorf("%s differs from the uninterrupted run's", k)
		}
	}
	verifyOK(t, e, "k", killSteps)
}

// driftModel is a model file whose steps are not a pure function of their
// inputs: its loss is scaled by a random factor drawn from os.urandom (not
// from torch's generator, which the worker seeds before every step), so a
// replayed chain of 8 steps gives the stored bits with probability 256^-8.
const driftModel = `"""A model whose training is not reproducible (a test's: verify must say so)."""
import os

import torch


def datasets():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 4, generator=g)
    y = (x.sum(dim=1) > 2).to(torch.int64)
    return (x, y), (x[:16], y[:16])


def model():
    return torch.nn.Linear(4, 2)


def loss(out, y):
    return torch.nn.functional.cross_entropy(out, y) * (1 + 1e-3 * (1 + os.urandom(1)[0]))
`

// TestE2EExtVerifyMismatch: replayctl verify of an ext run is not a
// formality: for a model whose steps depend on the child's history, the
// re-executed checkpoint intervals differ from the stored checkpoints and
// verify says so (exit 1, the checkpoint named), where the shipped models'
// runs verify ok (TestE2EExtCNN, TestE2EExtBatchNorm, TestE2EExtKill).
func TestE2EExtVerifyMismatch(t *testing.T) {
	file := filepath.Join(t.TempDir(), "drift.py")
	if err := os.WriteFile(file, []byte(driftModel), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newExtDaemon(t, nil, "--torch-model", "drift="+file)
	e.ctl("run", "start", "--name", "d", "--model", "ext:drift", "--lr", "0.1", "--batch", "4", "--steps", "24",
		"--window", "8", "--eval-every", "0", "--checkpoint-every", "8", "--seed", "1").ok(t, "run start")
	e.waitDone("d")
	r := e.ctl("verify", "--run", "d")
	t.Logf("verify: exit %d, %s", r.code, strings.TrimSpace(r.stderr))
	// Every checkpoint after 0 differs from its replay: the report lists
	// the three, the error line names the first.
	if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "checkpoint 8 differs from the replay of steps 1..8") ||
		!strings.Contains(r.stdout, "24 steps re-executed: 3 problem(s)") {
		t.Fatalf("verify of a non-reproducible run: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}
