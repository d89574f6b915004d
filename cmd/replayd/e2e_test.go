package main

// End-to-end tests: the real replayd binary, built once in TestMain, on temp
// data directories, driven over its unix socket with api.Client.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/export"
	"github.com/replay-sgd/replay/internal/testseed"
)

// shutdownBound is how long a SIGTERM may take. The daemon itself waits at
// most --shutdown-timeout (1 s) for open requests and as long again for
// their handlers, and never for backward jobs; on an idle machine it exits
// in well under a second. The bound leaves room for a 2-core machine
// loaded by other work (scheduling delays, a Badger flush and sync at
// close), while a shutdown that waited for a job or a client would take
// the hang guard of stop.
const shutdownBound = 10 * time.Second

// Hang guards: deadlines that only turn a hang into a failure, far above
// what a loaded 2-core machine takes (a start or an exit in seconds, a
// test run in well under a minute), so they never decide a result.
const (
	hangGuard = time.Minute     // a start, an exit, a health check
	runGuard  = 5 * time.Minute // a run to completion, or to a step
)

// replaydBin is the binary under test.
var replaydBin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "replayd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	replaydBin = filepath.Join(dir, "replayd")
	// go test puts its own GOROOT/bin first on PATH: this is the toolchain
	// running the test.
	build := exec.Command("go", "build", "-o", replaydBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build replayd:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is one replayd process.
type daemon struct {
	t      *testing.T
	dir    string
	sock   string
	cmd    *exec.Cmd
	log    *lockedBuffer // stdout+stderr (exec copies into it; tests read it while the process runs)
	exited chan struct{}
	err    error // Wait's result, valid after exited is closed
	c      *api.Client
}

// startDaemon starts replayd on dir and waits until it answers /healthz.
func startDaemon(t *testing.T, dir string, args ...string) *daemon {
	t.Helper()
	return startDaemonWith(t, replaydBin, nil, dir, args...)
}

// startDaemonWith starts the binary bin with env added to the environment
// (a failpoint build, REPLAY_FAILPOINTS) and waits until it answers /healthz.
func startDaemonWith(t *testing.T, bin string, env []string, dir string, args ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, dir: dir, sock: filepath.Join(dir, api.SocketName), log: &lockedBuffer{}, exited: make(chan struct{})}
	d.cmd = exec.Command(bin, append([]string{"--data-dir", dir, "--log-level", "debug"}, args...)...)
	d.cmd.Env = append(append(os.Environ(), "REPLAYD_TOKEN="), env...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.exited) }()
	begin := time.Now()
	defer func() {
		t.Logf("replayd on %s healthy after %v", filepath.Base(dir), time.Since(begin).Round(time.Millisecond))
	}()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("replayd log (%s):\n%s", dir, tail(d.log.String(), 60))
		}
	})
	d.c = api.NewClient("unix:"+d.sock, "")
	deadline := time.Now().Add(hangGuard)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := d.c.Health(ctx)
		cancel()
		if err == nil {
			return d
		}
		select {
		case <-d.exited:
			t.Fatalf("replayd exited at start (%v):\n%s", d.err, d.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("replayd not healthy after %v: %v", hangGuard, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends sig and waits for the exit; it returns the time it took.
func (d *daemon) stop(sig syscall.Signal) time.Duration {
	d.t.Helper()
	start := time.Now()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatal(err)
	}
	select {
	case <-d.exited:
	case <-time.After(hangGuard):
		d.t.Fatalf("replayd did not exit %v after %v", hangGuard, sig)
	}
	return time.Since(start)
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// runDone creates the run of spec and waits until it is done; failure is
// fatal.
func (d *daemon) runDone(spec api.RunSpec) api.RunStatus {
	d.t.Helper()
	if _, err := d.c.CreateRun(ctx(d.t), spec); err != nil {
		d.t.Fatal(err)
	}
	return d.waitDone(spec.Name)
}

// waitDone polls the run until it is done; failure is fatal.
func (d *daemon) waitDone(name string) api.RunStatus {
	d.t.Helper()
	deadline := time.Now().Add(runGuard)
	for {
		st, err := d.c.Status(ctx(d.t), name)
		if err != nil {
			d.t.Fatal(err)
		}
		switch st.State {
		case "done":
			return st
		case "failed":
			d.t.Fatalf("run %s failed: %s", name, st.Reason)
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("run %s not done after %v: %+v", name, runGuard, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *daemon) trajectory(name, kind string) []api.Point {
	d.t.Helper()
	var pts []api.Point
	err := d.c.Trajectory(ctx(d.t), name, api.TrajectoryQuery{Kind: kind}, func(p api.Point) error {
		pts = append(pts, p)
		return nil
	})
	if err != nil {
		d.t.Fatal(err)
	}
	return pts
}

func (d *daemon) params(name, kind string, step int) []byte {
	d.t.Helper()
	rc, err := d.c.Params(ctx(d.t), name, kind, step)
	if err != nil {
		d.t.Fatalf("params %s %d: %v", kind, step, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		d.t.Fatal(err)
	}
	return b
}

// raw GETs path over the socket with a plain net/http client (what curl
// --unix-socket does) and returns the body of a 200.
func (d *daemon) raw(path string) string {
	d.t.Helper()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", d.sock)
		},
	}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://replayd" + path)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		d.t.Fatalf("GET %s: %d %v %s", path, resp.StatusCode, err, b)
	}
	return string(b)
}

// samePoints reports the first difference between two trajectories, bit for
// bit (NaN equals NaN: null on the wire carries no payload).
func samePoints(a, b []api.Point) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d points, want %d", len(a), len(b))
	}
	eq := func(x, y float64) bool {
		return math.Float64bits(x) == math.Float64bits(y) || (math.IsNaN(x) && math.IsNaN(y))
	}
	for i := range a {
		p, q := a[i], b[i]
		if p.Kind != q.Kind || p.Step != q.Step || p.Anchor != q.Anchor || p.Segment != q.Segment ||
			!eq(p.Loss, q.Loss) || !eq(p.TestLoss, q.TestLoss) || !eq(p.TestAcc, q.TestAcc) ||
			!eq(p.ParamNorm, q.ParamNorm) || !eq(p.StepDist, q.StepDist) {
			return fmt.Errorf("point %d: %+v, want %+v", i, p, q)
		}
	}
	return nil
}

func seed(n uint64) *uint64 { return &n }

func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir, "--window", "32", "--workers", "2")
	const steps = 300
	st, err := d.c.CreateRun(ctx(t), api.RunSpec{Name: "q", Preset: "quadratic", Steps: steps, Seed: seed(7)})
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "q" || st.Steps != steps || st.Window != 32 {
		t.Fatalf("created %+v", st)
	}
	if _, err := d.c.CreateRun(ctx(t), api.RunSpec{Name: "q", Preset: "quadratic"}); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("second run named q: %v, want a conflict", err)
	}
	st = d.waitDone("q")
	if st.ForwardStep != steps || st.BackwardStep != steps {
		t.Fatalf("done run: forward %d, backward frontier %d, want %d", st.ForwardStep, st.BackwardStep, steps)
	}
	bw := d.trajectory("q", "backward")
	if len(bw) == 0 || bw[len(bw)-1].Step != steps {
		t.Fatalf("backward trajectory: %d points, last %+v", len(bw), bw[len(bw)-1:])
	}
	for _, p := range bw {
		if p.Step > 0 && (p.Step-p.Anchor > 32 || p.Anchor > p.Step) {
			t.Fatalf("window 32 broken: %+v", p)
		}
	}
	segBefore := bw[len(bw)-1].Segment

	// A reset on the finished run reopens its backward computation.
	if _, err := d.c.Reset(ctx(t), "q", api.ResetRequest{At: steps + 1}); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("reset beyond the end: %v, want invalid", err)
	}
	const at = 150
	if _, err := d.c.Reset(ctx(t), "q", api.ResetRequest{At: at}); err != nil {
		t.Fatal(err)
	}
	st = d.waitDone("q")
	if st.BackwardStep != steps {
		t.Fatalf("after reset: backward frontier %d", st.BackwardStep)
	}
	bw = d.trajectory("q", "backward")
	byStep := map[int]api.Point{}
	for _, p := range bw {
		byStep[p.Step] = p
	}
	for n := at + 1; n <= at+32; n++ {
		p, ok := byStep[n]
		if !ok || p.Anchor != at || p.Segment <= segBefore {
			t.Fatalf("step %d after reset at %d: %+v (segment before the reset %d)", n, at, p, segBefore)
		}
	}
	fw := d.trajectory("q", "forward")
	metrics := d.raw("/metrics")
	for _, want := range []string{"replay_steps_total", "replay_operator_applications_total", "replay_store_bytes",
		`replay_http_requests_total{code="200",route="GET /v1/runs/{name}"}`, "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	final := d.params("q", "backward", steps)

	// A second daemon on the same data directory: one clear line, exit 1.
	out, err := exec.Command(replaydBin, "--data-dir", dir).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 ||
		strings.TrimSpace(string(out)) != "replayd: replayd already running on unix:"+d.sock {
		t.Fatalf("second daemon: %v, output %q", err, out)
	}

	if took := d.stop(syscall.SIGTERM); took > shutdownBound || d.err != nil {
		t.Fatalf("SIGTERM: exit %v after %v", d.err, took)
	}
	if _, err := os.Stat(d.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind after a clean exit: %v", err)
	}

	// Restart: the same state, bit for bit.
	d2 := startDaemon(t, dir)
	st2, err := d2.c.Status(ctx(t), "q")
	if err != nil {
		t.Fatal(err)
	}
	if st2.State != "done" || st2.ForwardStep != steps || st2.BackwardStep != steps || st2.Anchor != st.Anchor {
		t.Fatalf("after restart: %+v, before %+v", st2, st)
	}
	if err := samePoints(d2.trajectory("q", "backward"), bw); err != nil {
		t.Fatalf("backward trajectory after restart: %v", err)
	}
	if err := samePoints(d2.trajectory("q", "forward"), fw); err != nil {
		t.Fatalf("forward trajectory after restart: %v", err)
	}
	if !bytes.Equal(d2.params("q", "backward", steps), final) {
		t.Fatal("final backward parameters differ after restart")
	}
	// The other endpoints on the restarted daemon: the batch log, the
	// store's re-execution check, the safetensors names, delete.
	rc, err := d2.c.Batches(ctx(t), "q")
	if err != nil {
		t.Fatal(err)
	}
	rows, cols, idx, err := export.ReadNpyInt64(rc)
	rc.Close()
	if err != nil || rows != steps || cols != 1 || len(idx) != steps {
		t.Fatalf("batches: %d×%d (%d) %v, want %d×1", rows, cols, len(idx), err, steps)
	}
	if rep, err := d2.c.Verify(ctx(t), "q"); err != nil || !rep.OK || rep.Steps != steps {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	ts, err := export.ReadSafetensors(bytes.NewReader(final))
	if err != nil || len(ts) != 1 || ts[0].Name != "theta" || len(ts[0].Data) != 1 {
		t.Fatalf("params of the scalar model: %+v %v", ts, err)
	}
	if err := d2.c.Delete(ctx(t), "q"); err != nil {
		t.Fatal(err)
	}
	if _, err := d2.c.Status(ctx(t), "q"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("status after delete: %v", err)
	}
	if took := d2.stop(syscall.SIGINT); took > shutdownBound || d2.err != nil {
		t.Fatalf("SIGINT: exit %v after %v", d2.err, took)
	}
}

// killSpec is a small Fashion-MNIST run with windowed and manual resets.
func killSpec() api.RunSpec {
	return api.RunSpec{
		Name: "k", Dataset: "fashion-mnist", Model: "mlp:32", LR: 0.01, Batch: 8, Steps: 400, Seed: seed(3),
		Window: 16, ResetAt: []int{200}, EvalEvery: api.Ptr(10), EvalSize: api.Ptr(200), CheckpointEvery: 50,
	}
}

// TestKillRestart SIGKILLs the daemon at random points of a run, restarts it
// each time, and compares everything the run produced with an uninterrupted
// run: bitwise equal.
func TestKillRestart(t *testing.T) {
	// The seed fixes the kill points and their jitter; where a kill lands in
	// the daemon's work still depends on timing.
	rng := rand.New(rand.NewPCG(testseed.Seed(t), 0x6b696c6c))
	t0 := time.Now()
	since := func() time.Duration { return time.Since(t0).Round(time.Millisecond) }
	spec := killSpec()
	args := []string{"--workers", "2"}

	// The reference.
	ref := startDaemon(t, t.TempDir(), args...)
	if _, err := ref.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	refSt := ref.waitDone(spec.Name)
	t.Logf("uninterrupted run done at %v", since())
	want := collect(ref, spec)
	t.Logf("collected at %v", since())
	ref.stop(syscall.SIGTERM)
	t.Logf("stopped at %v", since())

	// The same run, killed and restarted.
	dir := t.TempDir()
	d := startDaemon(t, dir, args...)
	if _, err := d.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	const kills = 4
	for i := range kills {
		// Kill i aims at a random point in the i-th part of the run: the
		// first ones by forward step, the last by backward frontier (the
		// tail of the backward work after training is done).
		lo := spec.Steps * i / kills
		target := lo + 1 + rng.IntN(spec.Steps/kills)
		byBackward := i == kills-1
		jitter := time.Duration(rng.IntN(5000)) * time.Microsecond
		at := d.killAt(spec.Name, target, byBackward, jitter)
		t.Logf("%v kill %d: target %s step %d, killed at %s", since(), i+1, map[bool]string{false: "forward", true: "backward"}[byBackward], target, at)
		if _, err := os.Lstat(d.sock); err != nil {
			t.Fatalf("SIGKILL should leave the socket file behind: %v", err)
		}
		d = startDaemon(t, dir, args...) // removes the stale socket
	}
	st := d.waitDone(spec.Name)
	t.Logf("interrupted run done at %v", since())
	if st.ForwardStep != refSt.ForwardStep || st.BackwardStep != refSt.BackwardStep || st.Anchor != refSt.Anchor {
		t.Fatalf("status %+v, uninterrupted %+v", st, refSt)
	}
	got := collect(d, spec)
	sameResults(t, got, want, "after kills")
	t.Logf("compared at %v", since())
	rep, err := d.c.Verify(ctx(t), spec.Name)
	if err != nil || !rep.OK {
		t.Errorf("verify after kills: %+v %v", rep, err)
	}
	if took := d.stop(syscall.SIGTERM); took > shutdownBound || d.err != nil {
		t.Fatalf("SIGTERM: exit %v after %v", d.err, took)
	}
}

// killAt polls the run and SIGKILLs the daemon once its forward step (or
// backward frontier) reaches target, after jitter. It returns the status
// last seen.
func (d *daemon) killAt(name string, target int, byBackward bool, jitter time.Duration) string {
	d.t.Helper()
	var st api.RunStatus
	deadline := time.Now().Add(runGuard)
	for {
		var err error
		st, err = d.c.Status(ctx(d.t), name)
		if err != nil {
			d.t.Fatal(err)
		}
		step := st.ForwardStep
		if byBackward {
			step = st.BackwardStep
		}
		if step >= target || st.State != "running" {
			break
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("run %s not at step %d after %v: %+v", name, target, runGuard, st)
		}
		time.Sleep(2 * time.Millisecond) // polling interval
	}
	// Not a synchronisation: a random delay moves the kill off the moment
	// the status answered, to land inside the daemon's work.
	time.Sleep(jitter)
	d.stop(syscall.SIGKILL)
	return fmt.Sprintf("forward %d, backward %d (%s)", st.ForwardStep, st.BackwardStep, st.State)
}

// results is what the kill test compares.
type results struct {
	traj   map[string][]api.Point
	params map[string][]byte
}

func collect(d *daemon, spec api.RunSpec) results {
	r := results{traj: map[string][]api.Point{}, params: map[string][]byte{}}
	for _, k := range []string{"forward", "backward"} {
		r.traj[k] = d.trajectory(spec.Name, k)
		// Guard against comparing two empty answers.
		if pts := r.traj[k]; len(pts) < spec.Steps/(*spec.EvalEvery) || pts[len(pts)-1].Step != spec.Steps {
			d.t.Fatalf("%s trajectory has %d points (last %+v), want ≥ %d up to step %d",
				k, len(pts), pts[max(0, len(pts)-1):], spec.Steps/(*spec.EvalEvery), spec.Steps)
		}
		// The final parameters, and steps between checkpoints (recomputed).
		for _, step := range []int{spec.Steps, 137, 263} {
			r.params[fmt.Sprintf("%s@%d", k, step)] = d.params(spec.Name, k, step)
		}
	}
	return r
}

// sameResults reports, as errors of t, every trajectory and parameter
// vector of got that is not bit for bit want's; when says of got when it
// was taken ("after kills", "from the in-process run's").
func sameResults(t *testing.T, got, want results, when string) {
	t.Helper()
	for k := range want.traj {
		if err := samePoints(got.traj[k], want.traj[k]); err != nil {
			t.Errorf("%s trajectory differs %s: %v", k, when, err)
		}
	}
	for k, v := range want.params {
		if !bytes.Equal(got.params[k], v) {
			t.Errorf("parameters %s differ %s (%d vs %d bytes)", k, when, len(got.params[k]), len(v))
		}
	}
}

// runBinary runs replayd to completion (it is expected to fail at start) and
// returns its exit code, stdout and stderr.
func runBinary(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(replaydBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(hangGuard):
		cmd.Process.Kill()
		t.Fatalf("replayd %v did not exit: %s", args, stderr.String())
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// Start-up errors: exit 1, exactly one line on stderr, nothing on stdout.
func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir, "--window", "8")
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"--data-dir", dir, "--window", "0"}, "replayd: --window 0: must be ≥ 1"},
		{nil, []string{"--data-dir", dir, "--no-such-flag"}, "replayd: unknown flag: --no-such-flag (see replayd --help)"},
		{nil, []string{"--data-dir", dir, "--log-format", "xml"}, "replayd: --log-format \"xml\": want text or json"},
		{[]string{"REPLAYD_TOKEN="}, []string{"--data-dir", dir, "--listen", "0.0.0.0:7071"},
			"replayd: --listen \"0.0.0.0:7071\": 0.0.0.0 is not a loopback address; serving beyond this machine needs --auth-token or $REPLAYD_TOKEN"},
		// A live daemon on the socket.
		{nil, []string{"--data-dir", dir}, "replayd: replayd already running on unix:" + d.sock},
		// Another socket, the same store: the store lock says it.
		{nil, []string{"--data-dir", dir, "--listen", "unix:" + filepath.Join(t.TempDir(), "other.sock")},
			"replayd: open store: ckpt: store " + filepath.Join(dir, storeDirName) + " is in use by another process"},
		{nil, []string{"--data-dir", t.TempDir(), "--run-preset", "no-such-preset"}, "no-such-preset"},
	} {
		code, stdout, stderr := runBinary(t, c.env, c.args...)
		lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		if code != 1 || stdout != "" || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1 and one line containing %q", c.args, code, stdout, stderr, c.want)
		}
	}
	// The live daemon did not notice.
	if err := d.c.Health(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if code, stdout, _ := runBinary(t, nil, "--help"); code != 0 || !strings.Contains(stdout, "Usage: replayd") {
		t.Errorf("--help: exit %d, %q", code, stdout)
	}
}

// A TCP listener with a token: every request needs it.
func TestTCPAuth(t *testing.T) {
	dir := t.TempDir()
	// A free loopback port (another process could take it in between; the
	// start would then fail loudly, not silently).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(replaydBin, "--data-dir", dir, "--listen", addr)
	cmd.Env = append(os.Environ(), "REPLAYD_TOKEN=e2e-token")
	var log bytes.Buffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("replayd log:\n%s", log.String())
		}
	})
	good := api.NewClient(addr, "e2e-token")
	deadline := time.Now().Add(hangGuard)
	for good.Health(ctx(t)) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("replayd on TCP not healthy after %v", hangGuard)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range []*api.Client{api.NewClient(addr, ""), api.NewClient(addr, "wrong")} {
		if err := c.Health(ctx(t)); !errors.Is(err, api.ErrUnauthorized) {
			t.Errorf("health without the right token: %v", err)
		}
		if _, err := c.CreateRun(ctx(t), api.RunSpec{Name: "x", Preset: "quadratic"}); !errors.Is(err, api.ErrUnauthorized) {
			t.Errorf("create without the right token: %v", err)
		}
	}
	if rl, err := good.Runs(ctx(t)); err != nil || len(rl.Runs) != 0 {
		t.Fatalf("runs with the token: %+v %v", rl, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	exited <- nil // for the cleanup
}

// --run-preset creates the run on an empty store only.
func TestRunPreset(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir, "--run-preset", "quadratic", "--window", "16")
	rl, err := d.c.Runs(ctx(t))
	if err != nil || len(rl.Runs) != 1 || rl.Runs[0].Spec.Dataset != "quadratic" || rl.Runs[0].Window != 16 {
		t.Fatalf("runs after --run-preset: %+v %v", rl, err)
	}
	name := rl.Runs[0].Name
	d.waitDone(name)
	if took := d.stop(syscall.SIGTERM); took > shutdownBound || d.err != nil {
		t.Fatalf("SIGTERM: exit %v after %v", d.err, took)
	}
	d = startDaemon(t, dir, "--run-preset", "quadratic")
	if rl, err := d.c.Runs(ctx(t)); err != nil || len(rl.Runs) != 1 || rl.Runs[0].Name != name || rl.Runs[0].State != "done" {
		t.Fatalf("runs after a restart with --run-preset: %+v %v", rl, err)
	}
	d.stop(syscall.SIGTERM)
}
