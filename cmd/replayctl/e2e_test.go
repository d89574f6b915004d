package main

// End-to-end tests: the real replayd and replayctl binaries, built once in
// TestMain, talking over a unix socket (and TCP with a token) in a
// temporary data directory. Nothing here uses the fake of fake_test.go.

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/export"
)

// bin holds the paths of the binaries built by TestMain.
var bin struct{ replayd, replayctl string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "replayctl-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// go test puts its own GOROOT/bin first on PATH: this is the toolchain
	// running the test.
	goTool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: no go tool on PATH:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	for _, name := range []string{"replayd", "replayctl"} {
		out := filepath.Join(dir, name)
		cmd := exec.Command(goTool, "build", "-o", out, "github.com/replay-sgd/replay/cmd/"+name)
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: build %s: %v\n%s", name, err, b)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	bin.replayd, bin.replayctl = filepath.Join(dir, "replayd"), filepath.Join(dir, "replayctl")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is a replayd process on a temporary data directory.
type daemon struct {
	dir, addr string
	cmd       *exec.Cmd
	log       bytes.Buffer
	token     string
}

// startDaemon starts replayd with one worker (the machine is shared) and
// waits until it answers /healthz. It is stopped with SIGTERM at cleanup.
func startDaemon(t *testing.T, extra ...string) *daemon {
	t.Helper()
	// Unix socket paths are limited to ~108 bytes: keep the directory short.
	dir, err := os.MkdirTemp("", "rd")
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{dir: dir, addr: "unix:" + filepath.Join(dir, api.SocketName)}
	args := append([]string{"--data-dir", dir, "--workers", "1", "--log-level", "warn"}, extra...)
	for i, a := range extra {
		if a == "--listen" {
			d.addr = extra[i+1]
		}
		if a == "--auth-token" {
			d.token = extra[i+1]
		}
	}
	d.cmd = exec.Command(bin.replayd, args...)
	d.cmd.Stdout, d.cmd.Stderr = &d.log, &d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			d.cmd.Process.Kill()
			<-exited
			t.Errorf("replayd did not stop within 20s of SIGTERM; log:\n%s", d.log.String())
		}
		os.RemoveAll(dir)
	})
	c := api.NewClient(d.addr, d.token)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Health(ctx)
		cancel()
		if err == nil {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("replayd did not come up at %s: %v; log:\n%s", d.addr, err, d.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// result is one replayctl invocation.
type result struct {
	stdout, stderr string
	code           int
}

// ctl runs the replayctl binary with args and --addr of the daemon.
func (d *daemon) ctl(t *testing.T, args ...string) result {
	t.Helper()
	return runCtl(t, append(args, "--addr", d.addr)...)
}

func runCtl(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.replayctl, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("replayctl %q: %v", args, err)
	}
	return result{o.String(), e.String(), code}
}

// ok fails the test unless the command succeeded, and returns stdout.
func (r result) ok(t *testing.T, what string) string {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails checks a failure: the exit code, one line on stderr containing
// want, nothing on stdout.
func (r result) fails(t *testing.T, what string, code int, want string) {
	t.Helper()
	if r.code != code {
		t.Errorf("%s: exit %d, want %d (stderr %q)", what, r.code, code, r.stderr)
	}
	if strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "replayctl: ") || !strings.Contains(r.stderr, want) {
		t.Errorf("%s: stderr %q, want one line containing %q", what, r.stderr, want)
	}
	if r.stdout != "" {
		t.Errorf("%s: stdout %q on failure", what, r.stdout)
	}
}

func statusJSON(t *testing.T, d *daemon, run string) api.RunStatus {
	t.Helper()
	var l api.RunList
	out := d.ctl(t, "status", run, "-o", "json").ok(t, "status -o json")
	if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Runs) != 1 {
		t.Fatalf("status json: %v\n%s", err, out)
	}
	return l.Runs[0]
}

// TestE2ECommands drives every command through the replayctl binary
// against the real daemon, in every output format, with the error cases.
func TestE2ECommands(t *testing.T) {
	d := startDaemon(t)
	tmp := t.TempDir()

	if out := d.ctl(t, "runs").ok(t, "runs"); !strings.Contains(out, "no runs") {
		t.Errorf("empty runs: %q", out)
	}
	d.ctl(t, "reset", "--at", "1").fails(t, "reset without runs", 1, "no runs")

	// run start, every format; explicit flags override the preset.
	out := d.ctl(t, "-o", "json", "run", "start", "--preset", "quadratic", "--name", "q", "--steps", "400",
		"--window", "50", "--seed", "7", "--eval-every", "1").ok(t, "run start")
	var l api.RunList
	if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Runs) != 1 {
		t.Fatalf("run start json: %v\n%s", err, out)
	}
	if s := l.Runs[0]; s.Name != "q" || s.Steps != 400 || s.Window != 50 || s.Spec.Seed == nil || *s.Spec.Seed != 7 || s.Spec.Model != "scalar" {
		t.Errorf("run start status %+v", s)
	}
	d.ctl(t, "run", "start", "--preset", "quadratic", "--name", "q").fails(t, "duplicate", 1, `"q"`)
	d.ctl(t, "run", "start", "--preset", "no-such-preset").fails(t, "bad preset", 1, "no-such-preset")
	d.ctl(t, "run", "start", "--preset", "quadratic", "--lr", "-1").fails(t, "bad lr", 2, "--lr")
	d.ctl(t, "run", "start", "--bogus").fails(t, "bad flag", 2, "unknown flag: --bogus")

	// wait: plain lines (stdout is a pipe), exit 0 at done.
	out = d.ctl(t, "wait", "--run", "q", "--timeout", "2m", "--interval", "100ms").ok(t, "wait")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); !strings.HasPrefix(lines[len(lines)-1], "q done: forward 400/400 (100%)  backward 400/400 (100%)") ||
		strings.Contains(out, "\r") {
		t.Errorf("wait output %q", out)
	}

	// status in three formats.
	st := statusJSON(t, d, "q")
	if st.State != "done" || st.ForwardStep != 400 || st.BackwardStep != 400 || st.Window != 50 || st.Strategy == "" || st.Anchor.Step < 350 {
		t.Errorf("status %+v", st)
	}
	out = d.ctl(t, "status").ok(t, "status")
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "400/400") || !strings.Contains(out, " (backward)") {
		t.Errorf("status table:\n%s", out)
	}
	out = d.ctl(t, "status", "-o", "csv").ok(t, "status csv")
	if recs, err := csv.NewReader(strings.NewReader(out)).ReadAll(); err != nil || len(recs) != 2 || recs[1][0] != "q" || recs[1][3] != "400" {
		t.Errorf("status csv: %v\n%s", err, out)
	}
	out = d.ctl(t, "runs", "-o", "csv").ok(t, "runs csv")
	if !strings.HasPrefix(out, "name,state,") || !strings.Contains(out, "\nq,done,") {
		t.Errorf("runs csv:\n%s", out)
	}
	if out = d.ctl(t, "runs").ok(t, "runs"); !strings.Contains(out, "scalar") {
		t.Errorf("runs:\n%s", out)
	}
	if out = d.ctl(t, "runs", "-o", "json").ok(t, "runs json"); !json.Valid([]byte(out)) {
		t.Errorf("runs json:\n%s", out)
	}

	// trajectory: csv (the only run, no --run), json with a range, table.
	out = d.ctl(t, "trajectory", "-o", "csv").ok(t, "trajectory csv")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || strings.Join(recs[0][:8], ",") != "kind,step,loss,test_loss,test_acc,param_norm,step_dist,anchor" {
		t.Fatalf("trajectory csv: %v\n%.300s", err, out)
	}
	kinds := map[string]int{}
	for _, r := range recs[1:] {
		kinds[r[0]]++
	}
	if kinds["forward"] < 400 || kinds["backward"] < 400 {
		t.Errorf("trajectory rows by kind: %v", kinds)
	}
	out = d.ctl(t, "trajectory", "--kind", "backward", "--from", "100", "--to", "200", "--every", "10", "-o", "json").ok(t, "trajectory json")
	var pts []api.Point
	if err := json.Unmarshal([]byte(out), &pts); err != nil || len(pts) != 11 {
		t.Fatalf("trajectory json: %v (%d points)\n%.400s", err, len(pts), out)
	}
	for i, p := range pts {
		if p.Kind != "backward" || p.Step != 100+10*i || p.Anchor != (p.Step-1)/50*50 {
			t.Errorf("point %d: %+v (anchor should follow the window-50 rule)", i, p)
		}
	}
	if out = d.ctl(t, "trajectory", "--to", "3").ok(t, "trajectory table"); !strings.Contains(out, "KIND") || strings.Count(out, "\n") < 4 {
		t.Errorf("trajectory table:\n%s", out)
	}
	d.ctl(t, "trajectory", "--kind", "sideways").fails(t, "bad kind", 2, "--kind")

	// export: parameters at step 0 and n, the batch log; errors.
	p0 := filepath.Join(tmp, "q0.safetensors")
	d.ctl(t, "export", "--step", "0", "--kind", "forward", "--out", p0).ok(t, "export θ0")
	pn := filepath.Join(tmp, "q400.safetensors")
	out = d.ctl(t, "export", "--step", "400", "--kind", "backward", "--out", pn, "-o", "json").ok(t, "export θ̃400")
	if !strings.Contains(out, `"name": "theta"`) {
		t.Errorf("export json %s", out)
	}
	for _, p := range []string{p0, pn} {
		ts := readSafetensorsFile(t, p)
		if len(ts) != 1 || ts[0].Name != "theta" || len(ts[0].Shape) != 1 || ts[0].Shape[0] != 1 {
			t.Errorf("%s: %+v", p, ts)
		}
	}
	pb := filepath.Join(tmp, "q.npy")
	d.ctl(t, "export", "--batches", "--out", pb).ok(t, "export batches")
	if r, c, _ := readNpyFile(t, pb); r != 400 || c != 1 {
		t.Errorf("batch log [%d, %d], want [400, 1]", r, c)
	}
	bad := filepath.Join(tmp, "bad.safetensors")
	d.ctl(t, "export", "--step", "401", "--kind", "backward", "--out", bad).fails(t, "step out of range", 1, "401")
	d.ctl(t, "export", "--step", "1", "--kind", "forward", "--out", filepath.Join(tmp, "no", "x")).fails(t, "unwritable", 1, "cannot write")
	d.ctl(t, "export", "--step", "1", "--out", bad).fails(t, "no kind", 2, "--kind")
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Errorf("failed export left %s", bad)
	}

	// plot.
	png := filepath.Join(tmp, "q.png")
	d.ctl(t, "plot", "--out", png, "--width", "800", "--height", "600").ok(t, "plot")
	img := decodePNG(t, png)
	if b := img.Bounds(); b.Dx() != 800 || b.Dy() != 600 {
		t.Errorf("plot size %v", b)
	}
	if white, fwd, bwd, _ := colourCounts(img); white == 800*600 || fwd < 300 || bwd < 300 {
		t.Errorf("plot looks blank: white %d, forward %d, backward %d", white, fwd, bwd)
	}

	// verify.
	out = d.ctl(t, "verify").ok(t, "verify")
	if !strings.HasPrefix(out, "run q: ") || !strings.HasSuffix(out, ": ok\n") {
		t.Errorf("verify: %q", out)
	}
	if out = d.ctl(t, "verify", "-o", "json").ok(t, "verify json"); !strings.Contains(out, `"ok": true`) {
		t.Errorf("verify json: %s", out)
	}
	if out = d.ctl(t, "verify", "-o", "csv").ok(t, "verify csv"); !strings.HasPrefix(out, "run,checkpoints,steps,ok,problems\nq,") ||
		!strings.Contains(out, ",400,true,") {
		t.Errorf("verify csv: %s", out)
	}
	if out = d.ctl(t, "export", "--batches", "--out", pb, "-o", "csv").ok(t, "export csv"); !strings.HasPrefix(out, "run,file,bytes,kind,step\nq,") {
		t.Errorf("export csv: %s", out)
	}

	// Errors on a known daemon change nothing.
	before := statusJSON(t, d, "q")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"status", "nope"}, 1, `"nope"`},
		{[]string{"reset", "--run", "nope", "--at", "3"}, 1, `"nope"`},
		{[]string{"reset", "--run", "q", "--at", "100000"}, 1, "100000"},
		{[]string{"reset", "--run", "q"}, 2, "--at"},
		{[]string{"reset", "--run", "q", "--at", "3", "--from", "init"}, 2, "--from"},
		{[]string{"trajectory", "--run", "nope"}, 1, `"nope"`},
		{[]string{"export", "--run", "nope", "--batches", "--out", bad}, 1, `"nope"`},
		{[]string{"wait", "--run", "nope"}, 1, `"nope"`},
		{[]string{"plot", "--run", "nope", "--out", png}, 1, `"nope"`},
		{[]string{"pause", "nope"}, 1, `"nope"`},
		{[]string{"resume", "nope"}, 1, `"nope"`},
		{[]string{"delete", "nope"}, 1, `"nope"`},
		{[]string{"delete"}, 2, "RUN is required"},
		{[]string{"verify", "--run", "nope"}, 1, `"nope"`},
		{[]string{"status", "-o", "xml"}, 2, "-o"},
		{[]string{"frobnicate"}, 2, "unknown command"},
	} {
		d.ctl(t, c.args...).fails(t, strings.Join(c.args, " "), c.code, c.want)
	}
	after := statusJSON(t, d, "q")
	if b, a := jsonString(before), jsonString(after); a != b {
		t.Errorf("failed commands changed the run:\n%s\n%s", b, a)
	}

	// reset on the finished run: the anchor moves and the tail is recomputed.
	out = d.ctl(t, "reset", "--at", "120").ok(t, "reset")
	if !strings.Contains(out, "run q: anchor reset at step 120 from the backward iterate") {
		t.Errorf("reset: %q", out)
	}
	d.ctl(t, "wait", "--run", "q", "--timeout", "2m", "--interval", "100ms").ok(t, "wait after reset")
	out = d.ctl(t, "trajectory", "--kind", "backward", "--from", "121", "--to", "121", "-o", "json").ok(t, "trajectory after reset")
	if err := json.Unmarshal([]byte(out), &pts); err != nil || len(pts) != 1 || pts[0].Anchor != 120 {
		t.Errorf("after reset at 120, step 121 has anchor %+v (%v)", pts, err)
	}

	// A second run: pause, resume, the several-runs error, delete.
	d.ctl(t, "run", "start", "--preset", "quadratic", "--name", "long", "--steps", "2000000").ok(t, "run start long")
	if out = d.ctl(t, "pause", "long").ok(t, "pause"); !strings.HasPrefix(out, "run long: paused") {
		t.Errorf("pause: %q", out)
	}
	if st := statusJSON(t, d, "long"); st.State != "paused" {
		t.Errorf("after pause: %s", st.State)
	}
	d.ctl(t, "reset", "--at", "1").fails(t, "two runs", 2, "2 runs exist (long, q): choose one with --run NAME")
	d.ctl(t, "trajectory").fails(t, "two runs", 2, "2 runs exist (long, q)")
	if out = d.ctl(t, "resume", "long", "-o", "json").ok(t, "resume"); !strings.Contains(out, `"state": "running"`) {
		t.Errorf("resume: %s", out)
	}
	if out = d.ctl(t, "pause", "long", "-o", "csv").ok(t, "pause csv"); !strings.Contains(out, "\nlong,paused,") {
		t.Errorf("pause csv: %s", out)
	}
	if out = d.ctl(t, "resume", "long", "-o", "csv").ok(t, "resume csv"); !strings.Contains(out, "\nlong,running,") {
		t.Errorf("resume csv: %s", out)
	}
	if out = d.ctl(t, "reset", "--run", "long", "--at", "1", "-o", "json").ok(t, "reset json"); !json.Valid([]byte(out)) || !strings.Contains(out, `"name": "long"`) {
		t.Errorf("reset json: %s", out)
	}
	// wait's progress lines go to stdout before the one-line error.
	r := d.ctl(t, "wait", "--run", "long", "--timeout", "300ms", "--interval", "100ms")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "replayctl: wait: run long is still running after 300ms (") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("wait timeout: exit %d, stderr %q", r.code, r.stderr)
	}
	if out = d.ctl(t, "delete", "long", "-o", "json").ok(t, "delete"); out != "{\n  \"deleted\": \"long\"\n}\n" {
		t.Errorf("delete: %q", out)
	}
	d.ctl(t, "status", "long").fails(t, "deleted run", 1, `"long"`)
	if out = d.ctl(t, "runs", "-o", "csv").ok(t, "runs"); strings.Contains(out, "long") {
		t.Errorf("deleted run still listed:\n%s", out)
	}
}

func TestE2EDaemonNotRunning(t *testing.T) {
	dir, err := os.MkdirTemp("", "rd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	addr := "unix:" + filepath.Join(dir, api.SocketName)
	for _, args := range [][]string{{"status"}, {"runs"}, {"reset", "--at", "5"}, {"run", "start", "--preset", "quadratic"}} {
		runCtl(t, append(args, "--addr", addr)...).fails(t, strings.Join(args, " "), 1,
			"replayd is not running at "+addr+": start it with `replayd")
	}
	// The default address is the daemon's default socket in its data dir.
	cmd := exec.Command(bin.replayctl, "status")
	cmd.Env = append(os.Environ(), "REPLAYD_ADDR=", "REPLAYD_DATA_DIR="+dir)
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "replayd is not running at "+addr+": start it with `replayd`,") {
		t.Errorf("default address: %v %s", err, b)
	}
}

func TestE2ETokenOverTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	d := startDaemon(t, "--listen", addr, "--auth-token", "s3cret")
	runCtl(t, "runs", "--addr", addr).fails(t, "no token", 1, "token")
	runCtl(t, "--token", "wrong", "runs", "--addr", addr).fails(t, "wrong token", 1, "token")
	if out := runCtl(t, "--token", "s3cret", "--addr", addr, "runs").ok(t, "token"); !strings.Contains(out, "no runs") {
		t.Errorf("runs: %q", out)
	}
	if out := runCtl(t, "--token", "s3cret", "--addr", "http://"+addr, "runs", "-o", "json").ok(t, "http:// address"); !json.Valid([]byte(out)) {
		t.Errorf("runs json: %q", out)
	}
	_ = d
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func readSafetensorsFile(t *testing.T, p string) []export.Tensor {
	t.Helper()
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	ts, err := export.ReadSafetensors(fh)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return ts
}

func readNpyFile(t *testing.T, p string) (int, int, []int64) {
	t.Helper()
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r, c, data, err := export.ReadNpyInt64(fh)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return r, c, data
}
