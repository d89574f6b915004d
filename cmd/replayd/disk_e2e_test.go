package main

// End-to-end tests of the store's faults (issue 10): the real replayd, built
// a second time with -tags failpoints where a fault must be injected at a
// chosen write (ckpt/failpoint_on.go), driven by the real replayctl.

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var fpOnce struct {
	sync.Once
	path string
	err  error
}

// failpointBin builds replayd with -tags failpoints next to the replayd
// under test.
func failpointBin(t *testing.T) string {
	t.Helper()
	fpOnce.Do(func() {
		fpOnce.path = filepath.Join(filepath.Dir(replaydBin), "replayd-failpoints")
		out, err := exec.Command("go", "build", "-tags", "failpoints", "-o", fpOnce.path, ".").CombinedOutput()
		if err != nil {
			fpOnce.err = err
			fpOnce.path = string(out)
		}
	})
	if fpOnce.err != nil {
		t.Fatalf("build replayd -tags failpoints: %v\n%s", fpOnce.err, fpOnce.path)
	}
	return fpOnce.path
}

// waitExit waits (with a deadline) for a daemon that a failpoint kills.
func (d *daemon) waitExit(why string) {
	d.t.Helper()
	select {
	case <-d.exited:
	case <-time.After(90 * time.Second):
		d.t.Fatalf("replayd still running 90 s after the run started; expected %s", why)
	}
	if !strings.Contains(d.log.String(), why) {
		d.t.Fatalf("replayd exited (%v) without %q in its log:\n%s", d.err, why, tail(d.log.String(), 30))
	}
}

// Case 2 of issue 10: the daemon is killed at the write of checkpoint 150.
// The trainer used to commit ForwardStep = 150 first, so the restarted
// daemon went on from 151 and checkpoint 150 was lost for good while
// verify said ok. Now the checkpoint and the state that depends on it are
// one transaction: after the restart every expected checkpoint is there and
// verify re-executes all of them bitwise.
func TestCheckpointKilledAtWrite(t *testing.T) {
	spec := killSpec() // 400 steps, a checkpoint every 50: 0, 50, …, 400
	args := []string{"--workers", "2"}
	dir := t.TempDir()
	d := startDaemonWith(t, failpointBin(t), []string{"REPLAY_FAILPOINTS=checkpoint=kill@3"}, dir, args...)
	if _, err := d.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	d.waitExit("failpoint checkpoint=kill at hit 3")

	d = startDaemon(t, dir, args...)
	d.waitDone(spec.Name)
	rep, err := d.c.Verify(ctx(t), spec.Name)
	if err != nil {
		t.Fatal(err)
	}
	if want := spec.Steps/spec.CheckpointEvery + 1; !rep.OK || rep.Checkpoints != want || rep.Steps != spec.Steps {
		t.Fatalf("verify after the kill: %d checkpoints, %d steps re-executed, problems %q; want %d checkpoints, %d steps, none",
			rep.Checkpoints, rep.Steps, rep.Problems, want, spec.Steps)
	}
}

// A run whose checkpoint 100 was never stored (the "drop" failpoint plays
// a store written before the commit order was fixed): `replayctl verify`
// names the missing checkpoint and exits 1, `replayctl verify --repair`
// recomputes it, and verify then re-executes every checkpoint bitwise.
func TestVerifyRepairMissingCheckpoint(t *testing.T) {
	spec := killSpec()
	spec.ResetAt = nil
	d := startDaemonWith(t, failpointBin(t), []string{"REPLAY_FAILPOINTS=checkpoint=drop@2"}, t.TempDir(), "--workers", "2")
	if _, err := d.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	d.waitDone(spec.Name)
	if !strings.Contains(d.log.String(), "failpoint checkpoint=drop at hit 2") {
		t.Fatal("the drop failpoint did not fire")
	}
	code, out, errOut := d.ctl("verify", "--run", spec.Name)
	if code != 1 || !strings.Contains(out, "checkpoint 100 missing") || !strings.Contains(errOut, "checkpoint 100 missing") {
		t.Fatalf("verify without checkpoint 100: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = d.ctl("verify", "--run", spec.Name, "--repair")
	want := fmt.Sprintf("%d checkpoints, %d steps re-executed: ok", spec.Steps/spec.CheckpointEvery+1, spec.Steps)
	if code != 0 || !strings.Contains(out, "repaired checkpoints 100\n") || !strings.Contains(out, want) {
		t.Fatalf("verify --repair: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
	if code, out, errOut = d.ctl("verify", "--run", spec.Name); code != 0 || !strings.Contains(out, want) {
		t.Fatalf("verify after the repair: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, _, errOut = d.ctl("verify", "--run", spec.Name, "--repair=maybe"); code == 0 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("verify --repair=maybe: exit %d, stderr %q; want one line and a non-zero exit", code, errOut)
	}
}
