package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// TestRepairExtModel: `replayd repair` registers the external models it is
// given, as the daemon does, so that a damaged store's runs of an external
// model are verified too. Without the model the run is named as one that
// cannot be verified (and repair fails); with it (--model-cmd) the run is
// ok, and the daemon serves it afterwards bitwise as before. Before, repair
// registered the built-in models only: every external model's run failed
// to verify.
func TestRepairExtModel(t *testing.T) {
	fake := buildFake(t, t.TempDir())
	spec := api.RunSpec{Name: "x", Model: "ext:fake", LR: 0.05, Batch: 2, Steps: 300, Seed: seed(9), Window: 16,
		EvalEvery: api.Ptr(10), CheckpointEvery: 50}
	dir := t.TempDir()
	d := startDaemon(t, dir, "--model-cmd", "fake="+fake)
	d.runDone(spec)
	want := collect(d, spec)
	d.stop(syscall.SIGTERM)
	if err := os.Remove(filepath.Join(dir, storeDirName, "MANIFEST")); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := runBinary(t, nil, "repair", "--data-dir", dir)
	if code == 0 || !strings.Contains(stdout, "run x: cannot verify") || !strings.Contains(stdout, "ext:fake") {
		t.Errorf("repair without the model: exit %d, stdout %q; want a failure naming run x and its model (stderr %q)", code, stdout, tail(stderr, 5))
	}
	code, stdout, stderr = runBinary(t, nil, "repair", "--data-dir", dir, "--model-cmd", "fake="+fake)
	if code != 0 || !strings.Contains(stdout, "run x: ok (7 checkpoints") {
		t.Fatalf("repair with the model: exit %d, stdout %q, stderr %q", code, stdout, tail(stderr, 10))
	}
	// Two repairs in the same second: each keeps its own backup.
	if backups, _ := filepath.Glob(filepath.Join(dir, storeDirName) + ".backup-*"); len(backups) != 2 {
		t.Errorf("backups %v: want one per repair", backups)
	}
	d = startDaemon(t, dir, "--model-cmd", "fake="+fake)
	got := collect(d, spec)
	sameResults(t, got, want, "after the repair")
}
