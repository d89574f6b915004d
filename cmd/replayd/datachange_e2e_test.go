package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/replay-sgd/replay/internal/fmnistcopy"
)

// TestDataChangedAtResume: a run is computed only on the data set it was
// created with. Its Fashion-MNIST files (a copy) change by one byte while
// it is paused and the daemon is down; after the restart `replayctl
// resume` fails it with one reason naming the data set and both hashes,
// and a recomputing query is refused with 409, instead of extending the
// run with numbers of another data set. With the files restored, resume
// takes them again (the changed load was forgotten) and the run finishes
// bitwise equal to an uninterrupted run on the original files.
func TestDataChangedAtResume(t *testing.T) {
	dataDir := fmnistcopy.Copy(t, fashionDir, -1) // the original data
	images := filepath.Join(dataDir, fmnistcopy.TrainImages)
	bump := func(delta byte) {
		t.Helper()
		b, err := os.ReadFile(images)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-1] += delta
		if err := os.WriteFile(images, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	spec := fashionSpec()
	spec.DataPath, spec.Steps, spec.CheckpointEvery = dataDir, 3000, 500

	ref := startDaemon(t, t.TempDir())
	if _, err := ref.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	d := startDaemon(t, dir)
	if _, err := d.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := d.ctl("pause", spec.Name); code != 0 {
		t.Fatalf("pause: exit %d %s %s", code, out, errOut)
	}
	paused := d.waitState(spec.Name, "paused")
	if paused.ForwardStep >= spec.Steps {
		t.Fatalf("the run was done before it could be paused: %+v", paused)
	}
	d.stop(syscall.SIGTERM)
	bump(1) // one pixel of the training set differs
	d = startDaemon(t, dir)
	code, out, errOut := d.ctl("resume", spec.Name)
	t.Logf("resume on changed data: exit %d, %q %q", code, out, errOut)
	st := d.waitState(spec.Name, "failed")
	if !strings.Contains(st.Reason, "data set changed") || !strings.Contains(st.Reason, dataDir) || strings.Count(st.Reason, "sha256:") != 2 {
		t.Errorf("failed run's reason does not name the data set, its path and both hashes: %q", st.Reason)
	}
	if st.ForwardStep != paused.ForwardStep || st.BackwardStep != paused.BackwardStep {
		t.Errorf("the run moved on changed data: paused at %d/%d, now %d/%d", paused.ForwardStep, paused.BackwardStep, st.ForwardStep, st.BackwardStep)
	}
	// A forward iterate between checkpoints is recomputed from the
	// data: refused with the reason, one line.
	code, out, errOut = d.ctl("export", "--run", spec.Name, "--kind", "forward", "--step", "7", "--out", filepath.Join(t.TempDir(), "x.safetensors"))
	refused(t, "export on changed data", code, out, errOut, "data set changed")

	bump(0xff) // restored
	if code, out, errOut := d.ctl("resume", spec.Name); code != 0 {
		t.Fatalf("resume on restored data: exit %d %s %s", code, out, errOut)
	}
	got, want := d.waitDone(spec.Name), ref.waitDone(spec.Name)
	if got.ForwardStep != want.ForwardStep || got.BackwardStep != want.BackwardStep {
		t.Fatalf("steps %d/%d, uninterrupted %d/%d", got.ForwardStep, got.BackwardStep, want.ForwardStep, want.BackwardStep)
	}
	for _, kind := range []string{"forward", "backward"} {
		if err := samePoints(d.trajectory(spec.Name, kind), ref.trajectory(spec.Name, kind)); err != nil {
			t.Errorf("%s trajectory differs from the uninterrupted run's: %v", kind, err)
		}
	}
	for _, step := range []int{7, 1234, spec.Steps} {
		for _, kind := range []string{"forward", "backward"} {
			if !bytes.Equal(d.params(spec.Name, kind, step), ref.params(spec.Name, kind, step)) {
				t.Errorf("%s parameters at %d differ from the uninterrupted run's", kind, step)
			}
		}
	}
}
