package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
)

// debianPython is the interpreter that sees Debian's python3-torch (the
// python3 on PATH may be another build that cannot).
const debianPython = "/usr/bin/python3"

// torchCase is one optimizer of TestE2ETorchReference: the flags of
// replayctl run start and the same settings for python/replay_ref. The
// learning rates are ones at which mlp:32 trains in 48 steps of batch 8
// (measured with torch from a He-normal θ_0: the loss on 1000 training
// images falls from 2.50 to 1.48 with sgd 0.05, 1.30 with momentum 0.01,
// 1.08 with nesterov 0.01, 1.43 with adam 1e-3, 1.25 with adamw 3e-3), so
// that every state tensor is far from its start and a wrong update rule
// shows at once.
type torchCase struct {
	name, optimizer string
	lr              float64
	// flags are given to both sides as they are: --momentum 0.9 means the
	// same to replayctl and to replay_ref. adam takes every default, so
	// that the daemon's defaults are checked against torch.optim's; adamw
	// sets every field.
	flags []string
	// window, when set, runs the window strategy with this window, a reset
	// at resetAt and --reset-from from, instead of the full trajectory:
	// the anchors' start points carry the whole optimizer state.
	window, resetAt int
	from            string
}

var torchCases = []torchCase{
	{name: "sgd", optimizer: "sgd", lr: 0.05},
	{name: "momentum", optimizer: "momentum", lr: 0.01, flags: []string{"--momentum", "0.9", "--dampening", "0.1"}},
	{name: "nesterov", optimizer: "nesterov", lr: 0.01, flags: []string{"--momentum", "0.9", "--weight-decay", "0.0001"}},
	{name: "adam", optimizer: "adam", lr: 0.001},
	{name: "adamw", optimizer: "adamw", lr: 0.003, flags: []string{"--beta1", "0.8", "--beta2", "0.99", "--eps", "1e-07", "--weight-decay", "0.05"}},
	// Anchors at 16 and 32 (the window) and 40 (the reset), each starting
	// from θ̃_r's whole state: θ̃_48 = T_41∘…∘T_48(θ̃_40), θ̃_40 itself
	// T_33∘…∘T_40(θ̃_32), and so on down to θ_0.
	{name: "adam-window", optimizer: "adam", lr: 0.001, window: 16, resetAt: 40, from: "backward"},
}

const (
	torchSteps = 48
	torchBatch = 8
)

// torchChecks are the steps whose forward and backward iterates are
// recomputed: θ̃_1 = θ_1, the first step where the orders differ, one in
// the middle, and the last.
var torchChecks = []int{1, 2, 17, torchSteps}

// torchWindowChecks are those of the window case: the last step under
// each anchor and the first after it.
var torchWindowChecks = []int{16, 17, 40, 41, torchSteps}

// TestE2ETorchReference is issue 13's "against PyTorch" test (and issue
// 12's recomputation by plain PyTorch): for mlp:32 on Fashion-MNIST with
// each optimizer, the real daemon trains forward and computes the full
// backward trajectory; θ_0, the batch log and the forward and backward
// iterates (with the optimizer state) are exported through replayctl, and
// python/replay_ref recomputes every one of them with torch.optim from θ_0
// and the batch log — forward: batches 1..N, backward: N, N−1, …, 1, each
// from a fresh optimizer — and compares them tensor by tensor, to float32
// rounding (the tolerance is derived in python/replay_ref/tolerance.py).
// One more Adam run uses the window strategy with a reset: its backward
// iterates are recomputed under the anchors the daemon reports, each
// anchor starting from the whole state θ̃_r (θ, both moments, t).
func TestE2ETorchReference(t *testing.T) {
	if _, err := os.Stat(debianPython); err != nil {
		t.Fatalf("%s: %v (make setup installs python3-torch from Debian)", debianPython, err)
	}
	pyDir, err := filepath.Abs(filepath.Join("..", "..", "python"))
	if err != nil {
		t.Fatal(err)
	}
	cases := torchCases

	d := startDaemon(t)
	tmp := t.TempDir()
	for _, c := range cases {
		args := []string{"run", "start", "--name", c.name, "--dataset", "fashion-mnist", "--model", "mlp:32",
			"--lr", strconv.FormatFloat(c.lr, 'g', -1, 64), "--batch", strconv.Itoa(torchBatch),
			"--steps", strconv.Itoa(torchSteps), "--eval-every", "8", "--eval-size", "100", "--seed", "3"}
		if c.window > 0 {
			args = append(args, "--strategy", "window", "--window", strconv.Itoa(c.window),
				"--reset-at", strconv.Itoa(c.resetAt), "--reset-from", c.from)
		} else {
			args = append(args, "--strategy", "full", "--reset-at", "none")
		}
		if c.optimizer != "sgd" {
			args = append(args, "--optimizer", c.optimizer)
		}
		d.ctl(t, append(args, c.flags...)...).ok(t, "run start "+c.name)
	}
	// Two checks at a time: each is one Python process (torch's import and
	// the data set's decompression are most of its cost), the machine has
	// two cores.
	slots := make(chan struct{}, 2)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			slots <- struct{}{}
			defer func() { <-slots }()
			d.ctl(t, "wait", "--run", c.name, "--timeout", "2m").ok(t, "wait")
			trains(t, d, c.name)

			dir := filepath.Join(tmp, c.name)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			export := func(file string, args ...string) string {
				p := filepath.Join(dir, file)
				d.ctl(t, append([]string{"export", "--run", c.name, "--out", p}, args...)...).ok(t, "export "+file)
				return p
			}
			state := []string{}
			if c.optimizer != "sgd" {
				state = []string{"--with-state"}
			}
			py := []string{"-m", "replay_ref", "check", "--model", "mlp:32",
				"--theta0", export("theta0.safetensors", "--step", "0", "--kind", "forward"),
				"--batches", export("batches.npy", "--batches"),
				"--optimizer", c.optimizer, "--lr", strconv.FormatFloat(c.lr, 'g', -1, 64)}
			py = append(append(py, c.flags...), state...)
			kinds, checks := []string{"forward", "backward"}, torchChecks
			if c.window > 0 {
				// The forward trajectory is the full case's; here the
				// backward iterates under the anchors the daemon reports.
				kinds, checks = []string{"backward"}, torchWindowChecks
				anchors := backwardAnchors(t, d, c.name)
				if want := []int{c.window, 2 * c.window, c.resetAt}; !slices.Equal(anchors, want) {
					t.Fatalf("anchors %v, want %v (window %d, reset at %d)", anchors, want, c.window, c.resetAt)
				}
				for _, r := range anchors {
					py = append(py, "--anchor", fmt.Sprintf("%d:%s", r, c.from))
				}
			}
			for _, kind := range kinds {
				for _, n := range checks {
					f := export(fmt.Sprintf("%s%d.safetensors", kind, n),
						append([]string{"--step", strconv.Itoa(n), "--kind", kind}, state...)...)
					py = append(py, "--check", fmt.Sprintf("%s:%d=%s", kind, n, f))
				}
			}
			out, err := runPython(t, pyDir, py...)
			if err != nil {
				t.Fatalf("replay_ref check of %s: %v\n%s", c.name, err, out)
			}
			// The check's last line names the tensors it compared: all of θ
			// (4 tensors) and, with the state, the optimizer's, at every check.
			want := 4
			switch c.optimizer {
			case "momentum", "nesterov":
				want += 4 + 1
			case "adam", "adamw":
				want += 8 + 1
			}
			want *= len(kinds) * len(checks)
			if !strings.Contains(out, fmt.Sprintf("all %d tensors of %d checks within tolerance", want, len(kinds)*len(checks))) {
				t.Fatalf("replay_ref check of %s: want all %d tensors compared:\n%s", c.name, want, out)
			}
			t.Logf("%s: %s", c.name, lastLine(out))
		})
	}
}

// trains checks that the run's evaluated training loss fell: the check
// must compare iterates that moved, not θ_0 against itself.
func trains(t *testing.T, d *daemon, run string) {
	t.Helper()
	out := d.ctl(t, "trajectory", "--run", run, "--kind", "forward", "-o", "json").ok(t, "trajectory")
	var pts []api.Point
	if err := json.Unmarshal([]byte(out), &pts); err != nil {
		t.Fatalf("trajectory json: %v\n%s", err, out)
	}
	var first, last *api.Point
	for i := range pts {
		if pts[i].Loss > 0 {
			if first == nil {
				first = &pts[i]
			}
			last = &pts[i]
		}
	}
	if first == nil || last.Step != torchSteps || !(last.Loss < 0.9*first.Loss) {
		t.Fatalf("%s does not train: evaluated losses %+v", run, pts)
	}
}

// backwardAnchors returns the anchor steps after 0 under which the run's
// backward iterates were computed, in order.
func backwardAnchors(t *testing.T, d *daemon, run string) []int {
	t.Helper()
	out := d.ctl(t, "trajectory", "--run", run, "--kind", "backward", "-o", "json").ok(t, "trajectory")
	var pts []api.Point
	if err := json.Unmarshal([]byte(out), &pts); err != nil || len(pts) != torchSteps {
		t.Fatalf("backward trajectory json: %v (%d points)", err, len(pts))
	}
	var as []int
	for _, p := range pts {
		if p.Anchor > 0 && (len(as) == 0 || as[len(as)-1] != p.Anchor) {
			as = append(as, p.Anchor)
		}
	}
	return as
}

// runPython runs Debian's interpreter in dir (where the package is) with
// one thread, and returns its combined output.
func runPython(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, debianPython, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PYTHONPATH="+dir, "OMP_NUM_THREADS=1", "PYTHONDONTWRITEBYTECODE=1")
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.String(), err
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndex(s, "\n")+1:]
}
