package main

// End-to-end tests of the store's faults (issue 10): the real replayd, built
// a second time with -tags failpoints where a fault must be injected at a
// chosen write (ckpt/failpoint_on.go), driven by the real replayctl.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
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
	d.runDone(spec)
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
	d.runDone(spec)
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
	sameResults(t, got, want, "after the repair")
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
	ref.runDone(spec)
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
	sameResults(t, got, want, "after the pause")
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

// keptEvents returns the events the daemon keeps of a run that is done
// (every one but superseded progress events, oldest first, up to its done
// event): the stream from cursor "<boot>-0", the start of this daemon's
// events, replays them.
func (d *daemon) keptEvents(name string) []api.Event {
	d.t.Helper()
	errStop := errors.New("stop")
	var boot string
	err := d.c.Events(ctx(d.t), name, "", func(ev api.Event) error {
		boot, _, _ = strings.Cut(ev.ID, "-")
		return errStop
	})
	if !errors.Is(err, errStop) {
		d.t.Fatalf("events of %s: %v", name, err)
	}
	var evs []api.Event
	err = d.c.Events(ctx(d.t), name, boot+"-0", func(ev api.Event) error {
		evs = append(evs, ev)
		if ev.Kind == api.EventDone {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		d.t.Fatalf("kept events of %s: %v after %d events", name, err, len(evs))
	}
	return evs
}

// A fault of the disk at each of the store's write sites, injected through
// the failpoint build and held (REPLAY_FAILPOINT_HOLD) until the test lets
// go: ENOSPC pauses the run with the reason, EIO fails it with the reason;
// either way /healthz answers 503 naming the fault, the daemon serves reads,
// and what is stored verifies. Once the disk is well again the run goes on
// (by itself after ENOSPC, on `replayctl resume` after EIO) and ends
// bitwise equal to a run that never met the fault, every checkpoint
// present, with the pause or the failure in its kept events. Before: an
// ENOSPC of the file system and every EIO failed the run for good, and
// /healthz said ok after an EIO.
func TestWriteFaultAtEachSite(t *testing.T) {
	bin := failpointBin(t)
	spec := killSpec() // 400 steps, checkpoints every 50, window 16, a reset at 200
	args := []string{"--workers", "2"}
	ref := startDaemon(t, t.TempDir(), args...)
	ref.runDone(spec)
	want := collect(ref, spec)
	ref.stop(syscall.SIGTERM)

	// at is the hit of the site that fails first: past the run's start,
	// before its end (metrics: the kept parameters of the last step, the
	// only backward result that has them).
	sites := []struct {
		site string
		at   int
	}{{"append", 4}, {"checkpoint", 3}, {"backward", 4}, {"metrics", 1}, {"anchor", 3}, {"state", 4}}
	for _, fs := range sites {
		for _, action := range []string{"enospc", "eio"} {
			t.Run(fs.site+"="+action, func(t *testing.T) {
				hold := filepath.Join(t.TempDir(), "hold")
				if err := os.WriteFile(hold, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				env := []string{fmt.Sprintf("REPLAY_FAILPOINTS=%s=%s@%d", fs.site, action, fs.at), "REPLAY_FAILPOINT_HOLD=" + hold}
				d := startDaemonWith(t, bin, env, t.TempDir(), args...)
				if _, err := d.c.CreateRun(ctx(t), spec); err != nil {
					t.Fatal(err)
				}
				wantState, wantReason := "paused", "disk full"
				if action == "eio" {
					wantState, wantReason = "failed", "input/output error"
				}
				st := d.waitState(spec.Name, wantState)
				if !strings.Contains(st.Reason, wantReason) || !strings.Contains(st.Reason, "failpoint "+fs.site) {
					t.Fatalf("%s run's reason %q; want %q and the failpoint", st.State, st.Reason, wantReason)
				}
				t.Logf("%s at forward %d, backward %d: %s", st.State, st.ForwardStep, st.BackwardStep, st.Reason)
				if code, body := d.healthz(); code != http.StatusServiceUnavailable || !strings.Contains(body, wantReason) {
					t.Fatalf("/healthz with the fault held: %d %q", code, body)
				}
				// Reads go on, and what is stored is consistent.
				if err := d.c.Trajectory(ctx(t), spec.Name, api.TrajectoryQuery{Kind: "forward"}, func(api.Point) error { return nil }); err != nil {
					t.Fatalf("a read with the fault held: %v", err)
				}
				if rep, err := d.c.Verify(ctx(t), spec.Name); err != nil || !rep.OK {
					t.Fatalf("verify with the fault held: %+v %v", rep, err)
				}

				if err := os.Remove(hold); err != nil {
					t.Fatal(err)
				}
				if action == "eio" {
					if code, stdout, stderr := d.ctl("resume", spec.Name); code != 0 {
						t.Fatalf("resume after the fault: exit %d, stdout %q, stderr %q", code, stdout, stderr)
					}
				}
				d.waitDone(spec.Name)
				if code, body := d.healthz(); code != http.StatusOK {
					t.Fatalf("/healthz once the run went on: %d %q", code, body)
				}
				got := collect(d, spec)
				sameResults(t, got, want, "after the fault")
				rep, err := d.c.Verify(ctx(t), spec.Name)
				if n := spec.Steps/spec.CheckpointEvery + 1; err != nil || !rep.OK || rep.Checkpoints != n || rep.Steps != spec.Steps {
					t.Fatalf("verify after the fault: %+v %v, want ok with %d checkpoints", rep, err, n)
				}
				// The kept events tell the pause (a state event with the
				// reason, then one when the writes went through) or the
				// failure, before the run's end.
				var seen []string
				for _, ev := range d.keptEvents(spec.Name) {
					switch {
					case ev.Kind == api.EventState && ev.Status != nil && ev.Status.State == "paused" && strings.Contains(ev.Fields["reason"], "disk full"):
						seen = append(seen, "paused")
					case ev.Kind == api.EventState && ev.Fields["reason"] == "space":
						seen = append(seen, "resumed")
					case ev.Kind == api.EventFailed && strings.Contains(ev.Fields["reason"], wantReason):
						seen = append(seen, "failed")
					case ev.Kind == api.EventFailed:
						t.Errorf("failed event %v", ev.Fields)
					}
				}
				wantSeen := "paused resumed"
				if action == "eio" {
					wantSeen = "failed"
				}
				if got := strings.Join(seen, " "); got != wantSeen {
					t.Errorf("kept events: %q, want %q", got, wantSeen)
				}
				d.stop(syscall.SIGTERM)
			})
		}
	}
}

// The same faults at the writes an operator's requests make: `replayctl
// create` and `replayctl delete` fail with one line naming the fault (507
// for ENOSPC), nothing is lost — the run a failed delete was asked to
// delete is still there and still verifies, a failed create leaves no run
// — /healthz names the fault until the same request succeeds. Before: a
// failed delete hid the run from the daemon until its restart.
func TestRequestWriteFaults(t *testing.T) {
	bin := failpointBin(t)
	spec := killSpec()
	spec.Steps, spec.ResetAt = 100, nil
	for _, action := range []string{"enospc", "eio"} {
		t.Run(action, func(t *testing.T) {
			wantReason := map[string]string{"enospc": "disk full", "eio": "input/output error"}[action]
			hold := filepath.Join(t.TempDir(), "hold")
			env := []string{"REPLAY_FAILPOINTS=delete=" + action + ",create=" + action + "@2", "REPLAY_FAILPOINT_HOLD=" + hold}
			d := startDaemonWith(t, bin, env, t.TempDir(), "--workers", "2")
			d.runDone(spec)
			if err := os.WriteFile(hold, nil, 0o600); err != nil {
				t.Fatal(err)
			}

			code, stdout, stderr := d.ctl("delete", spec.Name)
			refused(t, "delete with the fault held", code, stdout, stderr, wantReason)
			if st, err := d.c.Status(ctx(t), spec.Name); err != nil || st.State != "done" {
				t.Fatalf("the run after a failed delete: %+v %v", st, err)
			}
			if rep, err := d.c.Verify(ctx(t), spec.Name); err != nil || !rep.OK || rep.Checkpoints != spec.Steps/spec.CheckpointEvery+1 {
				t.Fatalf("verify after a failed delete: %+v %v", rep, err)
			}
			other := spec
			other.Name = "other"
			if _, err := d.c.CreateRun(ctx(t), other); err == nil || !strings.Contains(err.Error(), wantReason) {
				t.Fatalf("create with the fault held: %v, want %q", err, wantReason)
			}
			if l, err := d.c.Runs(ctx(t)); err != nil || len(l.Runs) != 1 {
				t.Fatalf("runs after a failed create: %+v %v", l, err)
			}
			if code, body := d.healthz(); code != http.StatusServiceUnavailable || !strings.Contains(body, wantReason) {
				t.Fatalf("/healthz with the fault held: %d %q", code, body)
			}

			if err := os.Remove(hold); err != nil {
				t.Fatal(err)
			}
			if code, stdout, stderr := d.ctl("delete", spec.Name); code != 0 {
				t.Fatalf("delete once the disk is well: exit %d, stdout %q, stderr %q", code, stdout, stderr)
			}
			d.runDone(other)
			if code, body := d.healthz(); code != http.StatusOK {
				t.Fatalf("/healthz once both requests succeeded: %d %q", code, body)
			}
			if l, err := d.c.Runs(ctx(t)); err != nil || len(l.Runs) != 1 || l.Runs[0].Name != other.Name {
				t.Fatalf("runs at the end: %+v %v", l, err)
			}
			d.stop(syscall.SIGTERM)
		})
	}
}

// Case 3 of issue 10 through the real binaries: the MANIFEST of a finished
// run's store removed. replayd refuses to start, one line naming the
// MANIFEST and replayd repair, the directory byte-identical; `replayd
// repair` backs it up and rebuilds the MANIFEST from the tables; the
// restarted daemon serves the run bitwise as before. (Before: replayd
// started empty and overwrote the table; then repair did the same.)
func TestLostManifestRepaired(t *testing.T) {
	spec := killSpec()
	dir := t.TempDir()
	d := startDaemon(t, dir, "--workers", "2")
	d.runDone(spec)
	want := collect(d, spec)
	d.stop(syscall.SIGTERM)

	store := filepath.Join(dir, storeDirName)
	if err := os.Remove(filepath.Join(store, "MANIFEST")); err != nil {
		t.Fatal(err)
	}
	before := contentDigest(t, store)
	code, stdout, stderr := runBinary(t, nil, "--data-dir", dir)
	if code == 0 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "MANIFEST") || !strings.Contains(stderr, "replayd repair") {
		t.Fatalf("start without the MANIFEST: exit %d, stdout %q, stderr %q; want one line naming MANIFEST and replayd repair", code, stdout, stderr)
	}
	if after := contentDigest(t, store); after != before {
		t.Fatalf("the refused start changed the store:\n%s\nwas\n%s", after, before)
	}
	code, stdout, stderr = runBinary(t, nil, "repair", "--data-dir", dir)
	if code != 0 || !strings.Contains(stdout, "run k: ok") {
		t.Fatalf("repair: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "rebuilding the MANIFEST") {
		t.Fatalf("repair did not say it rebuilt the MANIFEST: %q", stderr)
	}
	backups, _ := filepath.Glob(store + ".backup-*")
	if len(backups) != 1 || contentDigest(t, backups[0]) != before {
		t.Fatalf("backups %v: want one, byte-identical to the damaged store", backups)
	}

	d = startDaemon(t, dir, "--workers", "2")
	got := collect(d, spec)
	sameResults(t, got, want, "after the repair")
	rep, err := d.c.Verify(ctx(t), spec.Name)
	if n := spec.Steps/spec.CheckpointEvery + 1; err != nil || !rep.OK || rep.Checkpoints != n {
		t.Fatalf("verify after the repair: %+v %v, want ok with %d checkpoints", rep, err, n)
	}
}

// A panic in a goroutine nobody can recover (Badger's compactions on a
// table damaged while the store is open; played by the panic failpoint at
// the third sync) ends the process: its report is in the data directory's
// replayd.crash besides stderr, the next start names it, and the run goes
// on from what was stored and verifies. Before, the report
// went to stderr only (a raw trace among the daemon's logs).
func TestBackgroundPanicRecorded(t *testing.T) {
	spec := killSpec()
	dir := t.TempDir()
	d := startDaemonWith(t, failpointBin(t), []string{"REPLAY_FAILPOINTS=sync=panic@3"}, dir, "--workers", "2")
	if _, err := d.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	d.waitExit("failpoint sync=panic at hit 3")
	crash, err := os.ReadFile(filepath.Join(dir, "replayd.crash"))
	if err != nil || !bytes.Contains(crash, []byte("panic: ckpt: failpoint sync: a background goroutine panicked")) || !bytes.Contains(crash, []byte("goroutine ")) {
		t.Fatalf("crash report: %v\n%s", err, crash)
	}

	d = startDaemon(t, dir, "--workers", "2")
	if log := d.log.String(); !strings.Contains(log, "the previous replayd process crashed") || !strings.Contains(log, "replayd.crash.prev") {
		t.Fatalf("the restart did not name the crash report:\n%s", tail(log, 20))
	}
	d.waitDone(spec.Name)
	rep, err := d.c.Verify(ctx(t), spec.Name)
	if n := spec.Steps/spec.CheckpointEvery + 1; err != nil || !rep.OK || rep.Checkpoints != n {
		t.Fatalf("verify after the crash: %+v %v, want ok with %d checkpoints", rep, err, n)
	}
	d.stop(syscall.SIGTERM)
	if b, err := os.ReadFile(filepath.Join(dir, "replayd.crash")); err != nil || len(b) != 0 {
		t.Fatalf("crash report of a clean run: %v %q", err, b)
	}
}
