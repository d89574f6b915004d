package main

// End-to-end tests of admission control and of runs that cannot start: the
// real replayd, driven by the real replayctl (built once, beside replayd)
// where the defects were seen through it.

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
)

var ctlOnce struct {
	sync.Once
	path string
	err  error
}

// replayctlBin builds replayctl next to the replayd under test.
func replayctlBin(t *testing.T) string {
	t.Helper()
	ctlOnce.Do(func() {
		ctlOnce.path = filepath.Join(filepath.Dir(replaydBin), "replayctl")
		out, err := exec.Command("go", "build", "-o", ctlOnce.path, "../replayctl").CombinedOutput()
		if err != nil {
			ctlOnce.err = errors.New("build replayctl: " + err.Error() + "\n" + string(out))
		}
	})
	if ctlOnce.err != nil {
		t.Fatal(ctlOnce.err)
	}
	return ctlOnce.path
}

// ctl runs replayctl against d and returns its exit code, stdout, stderr.
func (d *daemon) ctl(args ...string) (int, string, string) {
	d.t.Helper()
	cmd := exec.Command(replayctlBin(d.t), append([]string{"--addr", "unix:" + d.sock}, args...)...)
	cmd.Env = append(os.Environ(), "REPLAYD_TOKEN=", "REPLAYD_ADDR=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		d.t.Fatalf("replayctl %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// refused checks a replayctl run that must fail with one line containing
// every want.
func refused(t *testing.T, what string, code int, stdout, stderr string, want ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if code == 0 || stdout != "" || len(lines) != 1 {
		t.Fatalf("%s: exit %d, stdout %q, stderr %q; want a non-zero exit and one line", what, code, stdout, stderr)
	}
	for _, w := range want {
		if !strings.Contains(lines[0], w) {
			t.Errorf("%s: %q does not contain %q", what, lines[0], w)
		}
	}
}

// The command is refused at once with one line naming the estimate
// and the limit, as are the models too large for the store; the daemon
// serves on. Today the first one kills the daemon (out of memory) for good.
func TestHugeRunRefused(t *testing.T) {
	d := startDaemon(t, t.TempDir(), "--max-run-disk", "8GiB", "--max-run-memory", "2GiB")
	code, stdout, stderr := d.ctl("run", "start", "--dataset", "fashion-mnist", "--model", "mlp:32", "--batch", "1000", "--steps", "10000000")
	refused(t, "10⁷ steps of batch 1000", code, stdout, stderr, "of disk", "batch log", "limit of 8.00 GiB", "--max-run-disk")

	for _, c := range []struct{ model, want string }{
		{"mlp:100000x100", "parameters"},
		{"mlp:1x300000000", "300000001 layers, more than the limit of 1024"},
		{"mlp:4000000000x2", "1.6e+19 parameters"},
		{"mlp:20000x2", "400080001 parameters"},
	} {
		start := time.Now()
		_, err := d.c.CreateRun(ctx(t), api.RunSpec{Preset: "regression", Model: c.model})
		if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a 400 containing %q", c.model, err, c.want)
		}
		t.Logf("%s refused in %v", c.model, time.Since(start).Round(time.Millisecond))
	}
	// Field names are exact: "Steps" is not steps.
	resp, err := rawPost(d, "/v1/runs", `{"preset":"quadratic","Steps":10}`)
	if err != nil || resp != http.StatusBadRequest {
		t.Errorf(`{"Steps":10}: status %d %v, want 400`, resp, err)
	}

	if err := d.c.Health(ctx(t)); err != nil {
		t.Fatalf("daemon after the refusals: %v", err)
	}
	if rl, err := d.c.Runs(ctx(t)); err != nil || len(rl.Runs) != 0 {
		t.Fatalf("runs after the refusals: %+v %v", rl, err)
	}
	if code, _, stderr := d.ctl("run", "start", "--preset", "quadratic", "--name", "q", "--steps", "50"); code != 0 {
		t.Fatalf("a small run after the refusals: exit %d %s", code, stderr)
	}
	d.waitDone("q")
	if took := d.stop(syscall.SIGTERM); d.err != nil {
		t.Fatalf("SIGTERM: exit %v after %v", d.err, took)
	}
}

func unixDialer(sock string) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", sock)
	}
}

func rawPost(d *daemon, path, body string) (int, error) {
	hc := &http.Client{Transport: &http.Transport{DialContext: unixDialer(d.sock)}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post("http://replayd"+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

var fmnistFiles = []string{"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}

func linkData(t *testing.T, dir string) {
	t.Helper()
	for _, f := range fmnistFiles {
		if err := os.Symlink(filepath.Join("/usr/share/datasets/fashion-mnist", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
}

// A daemon restarted over a store whose run cannot resume (its data_path
// emptied) starts, shows that run failed with the reason, serves the
// others, and `replayctl resume` revives the run once the data is back.
// Today the resume is refused (409: a failed run cannot resume).
func TestUnresumableRunRevived(t *testing.T) {
	dir, data := t.TempDir(), t.TempDir()
	linkData(t, data)
	d := startDaemon(t, dir, "--window", "16")
	// Long enough to be running when the daemon stops.
	if _, err := d.c.CreateRun(ctx(t), api.RunSpec{Name: "fm", Dataset: "fashion-mnist", DataPath: data, Model: "mlp:8",
		Steps: 1_000_000, EvalEvery: api.Ptr(1000), EvalSize: api.Ptr(100)}); err != nil {
		t.Fatal(err)
	}
	stopped := d.waitStep("fm", 1)
	d.stop(syscall.SIGTERM)
	for _, f := range fmnistFiles {
		if err := os.Remove(filepath.Join(data, f)); err != nil {
			t.Fatal(err)
		}
	}

	d = startDaemon(t, dir, "--window", "16")
	st := d.waitState("fm", "failed")
	if !strings.Contains(st.Reason, "cannot start") || !strings.Contains(st.Reason, "train-images-idx3-ubyte.gz missing") {
		t.Errorf("reason %q", st.Reason)
	}
	code, stdout, _ := d.ctl("status")
	if code != 0 || !strings.Contains(stdout, "fm failed: cannot start") {
		t.Errorf("status: exit %d\n%s", code, stdout)
	}
	// The others are served.
	if _, err := d.c.CreateRun(ctx(t), api.RunSpec{Name: "q", Preset: "quadratic", Steps: 50}); err != nil {
		t.Fatal(err)
	}
	d.waitDone("q")
	// Not while the cause remains.
	code, stdout, stderr := d.ctl("resume", "fm")
	refused(t, "resume without the data", code, stdout, stderr, "train-images-idx3-ubyte.gz missing")

	linkData(t, data)
	if code, _, stderr := d.ctl("resume", "fm"); code != 0 {
		t.Fatalf("resume with the data back: exit %d %s", code, stderr)
	}
	st = d.waitStep("fm", stopped.ForwardStep+1)
	if st.State != "running" || st.Reason != "" {
		t.Fatalf("revived run: %+v", st)
	}
	if err := d.c.Delete(ctx(t), "fm"); err != nil {
		t.Fatal(err)
	}
	if took := d.stop(syscall.SIGTERM); d.err != nil {
		t.Fatalf("SIGTERM: exit %v after %v", d.err, took)
	}
}

// waitStep polls until the run's forward step reaches n (failure is fatal).
func (d *daemon) waitStep(name string, n int) api.RunStatus {
	d.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		st, err := d.c.Status(ctx(d.t), name)
		if err != nil {
			d.t.Fatal(err)
		}
		if st.State == "failed" {
			d.t.Fatalf("run %s failed: %s", name, st.Reason)
		}
		if st.ForwardStep >= n {
			return st
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("run %s not at step %d after 90 s: %+v", name, n, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitState polls until the run is in state.
func (d *daemon) waitState(name, state string) api.RunStatus {
	d.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		st, err := d.c.Status(ctx(d.t), name)
		if err != nil {
			d.t.Fatal(err)
		}
		if st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("run %s not %s after 90 s: %+v", name, state, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Concurrent recomputations through the daemon: with one query slot, 20
// clients asking for a forward iterate between checkpoints (≈ 1000 SGD
// steps of a 784-128-10 MLP, batch 32, each) get either the iterate or
// a 503 with Retry-After, never more than one recomputation at a time; the
// slot is held for the whole replay (hundreds of milliseconds on any
// machine here), far longer than the 20 requests take to arrive. Today
// every request recomputes at once.
func TestQueriesSaturate(t *testing.T) {
	d := startDaemon(t, t.TempDir(), "--query-slots", "1", "--workers", "1")
	spec := api.RunSpec{Name: "f", Dataset: "fashion-mnist", Model: "mlp:128", Batch: 32, Steps: 1000,
		CheckpointEvery: 1000, BackwardFrom: api.Ptr(999), EvalEvery: api.Ptr(1000), EvalSize: api.Ptr(100)}
	if _, err := d.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	d.waitDone("f")
	const clients = 20
	type answer struct {
		code  int
		retry string
		body  string
	}
	answers := make(chan answer, clients)
	begin := time.Now()
	var lastBusy, okAt time.Duration
	hc := &http.Client{Transport: &http.Transport{DialContext: unixDialer(d.sock), MaxConnsPerHost: clients}}
	defer hc.CloseIdleConnections()
	for range clients {
		go func() {
			resp, err := hc.Get("http://replayd/v1/runs/f/params?kind=forward&step=999")
			if err != nil {
				answers <- answer{code: -1, body: err.Error()}
				return
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			answers <- answer{resp.StatusCode, resp.Header.Get("Retry-After"), b.String()}
		}()
	}
	var ok, busy int
	var first string
	for range clients {
		a := <-answers
		switch {
		case a.code == http.StatusOK:
			okAt = time.Since(begin)
			if ok++; first == "" {
				first = a.body
			} else if a.body != first {
				t.Error("two answers with different parameters")
			}
		case a.code == http.StatusServiceUnavailable && a.retry != "" && strings.Contains(a.body, "busy"):
			busy++
			lastBusy = time.Since(begin)
		default:
			t.Errorf("answer %d (Retry-After %q): %.200s", a.code, a.retry, a.body)
		}
	}
	// For the record (not asserted): how far apart the refusals and the
	// recomputation were.
	t.Logf("%d answers with the parameters (the last after %v), %d busy (the last after %v)", ok, okAt, busy, lastBusy)
	if ok < 1 || busy < 1 {
		t.Fatalf("%d ok, %d busy: want the slot to serve one and refuse others", ok, busy)
	}
	// The slot is free again: the next request gets the iterate.
	if got := d.params("f", "forward", 999); string(got) != first {
		t.Fatal("parameters after the burst differ")
	}
}
