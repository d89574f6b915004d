package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/replay-sgd/replay/api"

	pyworker "github.com/replay-sgd/replay/python"
)

// TestExtFlags: the flags of external models are checked at parse time,
// every problem in one line.
func TestExtFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "m.py")
	os.WriteFile(file, []byte("# a model\n"), 0o600)
	cases := []struct {
		args []string
		want string // "" = accepted
	}{
		{[]string{"--torch-model", "cnn=" + file, "--model-cmd", "other=./serve --x"}, ""},
		{[]string{"--torch-model", "cnn"}, "want NAME=FILE"},
		{[]string{"--model-cmd", "x="}, "want NAME=CMD"},
		{[]string{"--model-cmd", "bad name=cmd"}, `model name "bad name"`},
		{[]string{"--model-cmd", "a=cmd", "--torch-model", "a=" + file}, "model a registered twice"},
		{[]string{"--torch-model", "a=/nonexistent/m.py"}, "no such file"},
		{[]string{"--model-step-timeout", "0s"}, "--model-step-timeout 0s: must be > 0"},
	}
	for _, c := range cases {
		cfg, err := parseFlags(append([]string{"--data-dir", t.TempDir()}, c.args...), &bytes.Buffer{})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v", c.args, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n")):
			t.Errorf("%q: %v, want one line with %q", c.args, err, c.want)
		case c.want == "":
			if len(cfg.extModels) != 2 {
				t.Fatalf("%d models, want 2", len(cfg.extModels))
			}
			if got := strings.Join(cfg.extModels[0].cmd.Argv, " "); got != "/usr/bin/python3 -m replay_worker "+file {
				t.Errorf("torch-model argv %q", got)
			}
			if got := strings.Join(cfg.extModels[1].cmd.Argv, "|"); got != "/bin/sh|-c|./serve --x" {
				t.Errorf("model-cmd argv %q", got)
			}
		}
	}
}

// TestExtHelloFails: a model whose child fails its hello stops replayd at
// start: exit 1, one line naming the model and quoting its stderr.
func TestExtHelloFails(t *testing.T) {
	cmd := exec.Command(replaydBin, "--data-dir", t.TempDir(), "--model-cmd", "bad=echo cannot import torch >&2; exit 3")
	cmd.Env = append(os.Environ(), "REPLAYD_TOKEN=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("replayd: %v, want exit 1\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "replayd: ") || !strings.Contains(last, "bad") || !strings.Contains(last, "cannot import torch") {
		t.Fatalf("last line %q: want replayd's one-line error naming the model with its stderr", last)
	}
}

// TestExtTorchModel: --torch-model runs --python -m replay_worker FILE with
// the embedded worker extracted on PYTHONPATH (the fake child, standing in
// for the interpreter, reports its argv and PYTHONPATH in its
// fingerprint).
func TestExtTorchModel(t *testing.T) {
	tmp := t.TempDir()
	fake := buildFake(t, tmp)
	file := filepath.Join(tmp, "m.py")
	os.WriteFile(file, []byte("# a model\n"), 0o600)
	cache := filepath.Join(tmp, "cache")
	d := startDaemonWith(t, replaydBin, []string{"XDG_CACHE_HOME=" + cache}, filepath.Join(tmp, "data"),
		"--torch-model", "m="+file, "--python", fake)
	l, err := d.c.Models(ctx(t))
	if err != nil || len(l.Models) != 1 {
		t.Fatalf("models: %+v, %v", l, err)
	}
	fp := l.Models[0].Fingerprint
	if fp["argv"] != "-m replay_worker "+file {
		t.Errorf("the child ran with %q, want -m replay_worker %s", fp["argv"], file)
	}
	want := filepath.Join(cache, "replay", "pyworker-"+pyworker.Hash())
	if fp["pythonpath"] != want {
		t.Errorf("PYTHONPATH %q, want the extracted worker %s", fp["pythonpath"], want)
	}
	if fi, err := os.Stat(filepath.Join(want, pyworker.Package)); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("extracted package: %v", err)
	}
}

// buildFake builds the fake external model (internal/fakechild) into dir.
func buildFake(t *testing.T, dir string) string {
	t.Helper()
	fake := filepath.Join(dir, "fakemodel")
	if b, err := exec.Command("go", "build", "-o", fake, "github.com/replay-sgd/replay/internal/fakechild/fakemodel").CombinedOutput(); err != nil {
		t.Fatalf("build fakemodel: %v\n%s", err, b)
	}
	return fake
}

// TestRemoteExtModel: `replayd worker --model-cmd` serves the jobs of an
// external model's run (the daemon computes none: --workers 0), and the
// run equals an in-process one byte for byte.
func TestRemoteExtModel(t *testing.T) {
	fake := buildFake(t, t.TempDir())
	spec := api.RunSpec{Name: "x", Model: "ext:fake", LR: 0.05, Batch: 2, Steps: 300, Seed: seed(5), Window: 16,
		ResetAt: []int{150}, EvalEvery: api.Ptr(10), CheckpointEvery: 50}

	ref := startDaemon(t, t.TempDir(), "--workers", "1", "--model-cmd", "fake="+fake)
	ref.runDone(spec)
	want := collect(ref, spec)
	ref.stop(syscall.SIGTERM)

	d := startDaemon(t, t.TempDir(), "--workers", "0", "--remote-workers", "--nats-listen", "127.0.0.1:0", "--model-cmd", "fake="+fake)
	w := &worker{t: t, name: "w", log: &lockedBuffer{}, exited: make(chan struct{})}
	w.cmd = exec.Command(replaydBin, "worker", "--nats", d.natsURL(), "--name", "w", "--model-cmd", "fake="+fake)
	w.cmd.Env = append(os.Environ(), "REPLAYD_TOKEN=")
	w.cmd.Stdout, w.cmd.Stderr = w.log, w.log
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.err = w.cmd.Wait(); close(w.exited) }()
	t.Cleanup(func() {
		select {
		case <-w.exited:
		default:
			w.cmd.Process.Kill()
			<-w.exited
		}
		if t.Failed() {
			t.Logf("worker log:\n%s", tail(w.log.String(), 30))
		}
	})
	d.runDone(spec)
	got := collect(d, spec)
	sameResults(t, got, want, "from the in-process run's")
	w.stop(syscall.SIGTERM)
	if w.err != nil {
		t.Errorf("worker after SIGTERM: %v", w.err)
	}
}
