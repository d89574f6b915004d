package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
	fake := filepath.Join(tmp, "fakemodel")
	if b, err := exec.Command("go", "build", "-o", fake, "github.com/replay-sgd/replay/internal/fakechild/fakemodel").CombinedOutput(); err != nil {
		t.Fatalf("build fakemodel: %v\n%s", err, b)
	}
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
