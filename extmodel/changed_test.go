package extmodel

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/internal/fakechild"
)

// TestFreshChildOfAnotherModelFile: a child started after registration
// (the first died: killed from outside, or a retry) whose fingerprint
// differs from the registration's — the model file was edited or the data
// set replaced on disk under a running daemon or `replayd worker` — is
// refused, not used: its numbers are not those the runs' recorded data
// hash (computed from the registration's hello) stands for, and a run's
// resumed or recomputed steps, or a remote worker's results, would differ
// silently. A fresh child of the same file is used as before.
//
// The fake child's fingerprint holds its arguments, so a shell reading the
// "model file" into them plays a Python worker reporting model_sha256.
func TestFreshChildOfAnotherModelFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "model.txt")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("version-1")
	cmd := fakeCmd(t, "")
	cmd.Argv = []string{"/bin/sh", "-c", `exec "$0" "$(cat "$1")"`, cmd.Argv[0], file}
	opts := testOptions(io.Discard)
	opts.MaxChildren, opts.Attempts = 1, 2
	f := newFamily(t, opts, cmd)
	spec := family.Spec{Model: "ext:fake", LR: 0.1, Batch: 2, Seed: 1}
	m := openModel(t, f, spec)
	d, err := f.LoadData(spec)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := f.DataHash(spec, d)
	if err != nil {
		t.Fatal(err)
	}

	// killIdle kills the pool's idle child, so that the next request
	// starts a fresh one.
	killIdle := func() {
		t.Helper()
		c, err := m.r.pool.get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		m.r.pool.put(c)
		if err := syscall.Kill(c.cmd.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-c.exited
	}

	write("version-2")
	killIdle()
	s := make([]float32, m.Dim())
	err = m.Init(s)
	if err == nil || !strings.Contains(err.Error(), "another fingerprint than at registration") || !strings.Contains(err.Error(), "argv") {
		t.Fatalf("init on a fresh child of another model file: %v; want it refused, naming the fingerprint's differing key", err)
	}
	if h, err := f.DataHash(spec, d); err != nil || h != hash {
		t.Fatalf("data hash %s (%v), want the registration's %s", h, err, hash)
	}

	// The file as it was: fresh children are used again.
	write("version-1")
	m = openModel(t, f, spec) // a new start of the run: no sticky failure
	if err := m.Init(s); err != nil {
		t.Fatalf("init on a fresh child of the registered model file: %v", err)
	}
	if want := fakechild.Init(1); !equalBits(s[:len(want)], want) {
		t.Fatalf("init %v, want %v", s[:len(want)], want)
	}
}
