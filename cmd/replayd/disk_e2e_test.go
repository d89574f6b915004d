package main

// End-to-end tests of the store's faults (issue 10): the real replayd, built
// a second time with -tags failpoints where a fault must be injected at a
// chosen write (ckpt/failpoint_on.go), driven by the real replayctl.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
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

// contentDigest is every regular file's name and content hash (not its
// mode: a backup's files are 0600 whatever the originals were).
func contentDigest(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("%s %d %x", e.Name(), len(b), sha256.Sum256(b)))
	}
	return strings.Join(lines, "\n")
}

// Case 4 of issue 10 through the real binaries: 8 bytes flipped inside
// checkpoint 200 in the value log of a finished run. replayd used to start,
// Badger cutting the file at the damage (every later value gone); now it
// refuses with one line naming the file and leaves the directory
// byte-identical; `replayd repair` backs it up, keeps the file whole,
// recomputes checkpoint 200, and the restarted daemon serves a trajectory
// and parameters bitwise equal to the ones before the damage.
func TestDamagedValueLogRefusedAndRepaired(t *testing.T) {
	spec := killSpec()
	dir := t.TempDir()
	d := startDaemon(t, dir, "--workers", "2")
	if _, err := d.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	d.waitDone(spec.Name)
	want := collect(d, spec)
	d.stop(syscall.SIGTERM)

	store := filepath.Join(dir, storeDirName)
	vlog := filepath.Join(store, "000001.vlog")
	b, err := os.ReadFile(vlog)
	if err != nil {
		t.Fatal(err)
	}
	// The value follows its key (run key of checkpoint 200, then Badger's
	// 8-byte version) in the value-log entry.
	key := binary.BigEndian.AppendUint64([]byte("r"+spec.Name+"\x00k"), 200)
	i := bytes.Index(b, key)
	if i < 0 || bytes.Contains(b[i+1:], key) {
		t.Fatalf("checkpoint 200 found %d times in %s", bytes.Count(b, key), vlog)
	}
	at := i + len(key) + 8 + 4096
	for j := at; j < at+8; j++ {
		b[j] ^= 0xff
	}
	if err := os.WriteFile(vlog, b, 0o600); err != nil {
		t.Fatal(err)
	}
	before := contentDigest(t, store)

	code, stdout, stderr := runBinary(t, nil, "--data-dir", dir)
	if code == 0 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "000001.vlog") || !strings.Contains(stderr, "replayd repair") {
		t.Fatalf("start on the damaged store: exit %d, stdout %q, stderr %q; want one line naming 000001.vlog and replayd repair", code, stdout, stderr)
	}
	t.Logf("refused: %s", stderr)
	if after := contentDigest(t, store); after != before {
		t.Fatalf("the refused start changed the store:\n%s\nwas\n%s", after, before)
	}

	code, stdout, stderr = runBinary(t, nil, "repair", "--data-dir", dir)
	if code != 0 || !strings.Contains(stdout, "run k: ok") || !strings.Contains(stdout, "checkpoints [200] recomputed") {
		t.Fatalf("repair: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	t.Logf("repair:\n%s", stdout)
	backups, _ := filepath.Glob(store + ".backup-*")
	if len(backups) != 1 || contentDigest(t, backups[0]) != before {
		t.Fatalf("backups %v: want one, byte-identical to the damaged store", backups)
	}

	d = startDaemon(t, dir, "--workers", "2")
	got := collect(d, spec)
	for _, k := range []string{"forward", "backward"} {
		if err := samePoints(got.traj[k], want.traj[k]); err != nil {
			t.Errorf("%s trajectory after the repair: %v", k, err)
		}
	}
	for key, b := range want.params {
		if !bytes.Equal(got.params[key], b) {
			t.Errorf("parameters %s differ after the repair", key)
		}
	}
	rep, err := d.c.Verify(ctx(t), spec.Name)
	if want := spec.Steps/spec.CheckpointEvery + 1; err != nil || !rep.OK || rep.Checkpoints != want {
		t.Fatalf("verify after the repair: %+v %v, want ok with %d checkpoints", rep, err, want)
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory (the tests run
// as root, as .ci/run does) and unmounts it at cleanup.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %s tmpfs on %s (needs root): %v %s", size, dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

func freeSpace(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// fill writes a file that leaves about left bytes free in dir's file system.
func fill(t *testing.T, dir string, left int64) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = 0x5a
	}
	for n := freeSpace(t, dir) - left; n > 0; n -= int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), n)]); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// Case 1 of issue 10: a full disk pauses the run, it does not kill the
// daemon. On a 200 MiB tmpfs with --min-free-disk 64MiB, a filler leaves
// 48 MiB: the run is created (θ0 may use half the reserve) but its trainer
// is refused its first write. The run shows state paused with the reason,
// /healthz answers 503 with it, the daemon serves reads, `replayctl resume`
// is refused with the reason while the disk is full; once the filler is
// gone `replayctl resume` retries at once and the run ends bitwise equal to
// an unconstrained run, every checkpoint present. (Before: SIGBUS in
// Badger's value-log write; then a "running" run with a reason.)
func TestDiskFullPausesRun(t *testing.T) {
	spec := killSpec()
	args := []string{"--workers", "2", "--min-free-disk", "64MiB"}
	ref := startDaemon(t, t.TempDir(), args...)
	if _, err := ref.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	ref.waitDone(spec.Name)
	want := collect(ref, spec)
	ref.stop(syscall.SIGTERM)

	mnt := mountTmpfs(t, "200M")
	dir := filepath.Join(mnt, "data")
	d := startDaemon(t, dir, args...)
	filler := fill(t, mnt, 48<<20)
	if _, err := d.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	st := d.waitState(spec.Name, "paused")
	if !strings.HasPrefix(st.Reason, "disk full: ") || !strings.Contains(st.Reason, "MiB free, need ") || st.ForwardStep != 0 {
		t.Fatalf("paused run: %+v; want forward step 0 and the reason \"disk full: N MiB free, need M MiB…\"", st)
	}
	t.Logf("status: %s", st.Reason)
	code, body := d.healthz()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "disk full") {
		t.Fatalf("/healthz on a full disk: %d %q", code, body)
	}
	if err := d.c.Trajectory(ctx(t), spec.Name, api.TrajectoryQuery{Kind: "forward"}, func(api.Point) error { return nil }); err != nil {
		t.Fatalf("a read on a full disk: %v", err)
	}
	code, stdout, stderr := d.ctl("resume", spec.Name)
	refused(t, "resume on a full disk", code, stdout, stderr, "disk full", "MiB free")

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr = d.ctl("resume", spec.Name, "-o", "json"); code != 0 || strings.Contains(stdout, `"state": "paused"`) {
		t.Fatalf("resume once space returned: exit %d, stdout %q, stderr %q; want the run going on", code, stdout, stderr)
	}
	d.waitDone(spec.Name)
	if code, body := d.healthz(); code != http.StatusOK {
		t.Fatalf("/healthz after space returned: %d %q", code, body)
	}
	got := collect(d, spec)
	for _, k := range []string{"forward", "backward"} {
		if err := samePoints(got.traj[k], want.traj[k]); err != nil {
			t.Errorf("%s trajectory after the pause: %v", k, err)
		}
	}
	for key, b := range want.params {
		if !bytes.Equal(got.params[key], b) {
			t.Errorf("parameters %s differ after the pause", key)
		}
	}
	rep, err := d.c.Verify(ctx(t), spec.Name)
	if want := spec.Steps/spec.CheckpointEvery + 1; err != nil || !rep.OK || rep.Checkpoints != want {
		t.Fatalf("verify after the pause: %+v %v, want ok with %d checkpoints", rep, err, want)
	}
	d.stop(syscall.SIGTERM)
}

// healthz GETs /healthz over the socket: status code and body.
func (d *daemon) healthz() (int, string) {
	d.t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: unixDialer(d.sock)}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://replayd/healthz")
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Case 6 of issue 10: the store directory deleted under a running daemon.
// Writes used to go on into deleted files for minutes with no error, and
// SIGTERM never ended the process (Badger retried its flush forever). Now
// the directory check stops writes, the run fails with the reason, /healthz
// answers 503, and SIGTERM ends the process (within --shutdown-grace of the
// store's close).
func TestStoreDirRemoved(t *testing.T) {
	spec := killSpec()
	spec.Steps, spec.ResetAt = 50000, nil
	dir := t.TempDir()
	d := startDaemon(t, dir, "--workers", "2", "--shutdown-grace", "2s")
	if _, err := d.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	d.waitStep(spec.Name, 60)
	if err := os.RemoveAll(filepath.Join(dir, storeDirName)); err != nil {
		t.Fatal(err)
	}
	st := d.waitState(spec.Name, "failed")
	if !strings.Contains(st.Reason, "removed or replaced") {
		t.Fatalf("failed run's reason %q; want the store directory named as removed", st.Reason)
	}
	t.Logf("reason: %s", st.Reason)
	if code, body := d.healthz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "removed or replaced") {
		t.Fatalf("/healthz without the store directory: %d %q", code, body)
	}
	d.stop(syscall.SIGTERM) // fatal unless it exits
	t.Logf("exit: %v", d.err)
}
