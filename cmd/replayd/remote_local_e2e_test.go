package main

import (
	"encoding/csv"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRemoteWithInProcessWorker: `--workers N` with remote workers keeps
// the daemon computing: it is one worker of N slots on the same queue,
// listed by `replayctl workers` as replayd@HOST-PID. Alone it finishes a
// run; beside a `replayd worker` both take jobs; its results are not spot
// checked (the same code on the same data in the same process), the
// remote worker's first one is; the run equals an in-process run byte for
// byte. Before, --workers N was ignored once remote workers were on: a
// daemon with no remote worker connected computed nothing.
func TestRemoteWithInProcessWorker(t *testing.T) {
	spec := remoteSpec()
	ref := startDaemon(t, t.TempDir(), "--workers", "1")
	ref.runDone(spec)
	want := collect(ref, spec)
	ref.stop(syscall.SIGTERM)

	d := startDaemon(t, t.TempDir(), "--workers", "1", "--remote-workers", "--nats-listen", "127.0.0.1:0", "--verify-share", "0")
	if _, err := d.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	// Alone: the frontier moves with no `replayd worker` anywhere.
	waitBackward(d, spec.Name, 60)
	w := startWorker(t, d.natsURL(), "w1")
	d.waitDone(spec.Name)

	done := map[string]int{}
	deadline := time.Now().Add(hangGuard)
	for {
		code, out, errOut := d.ctl("workers", "-o", "csv")
		if code != 0 {
			t.Fatalf("replayctl workers: exit %d: %s", code, errOut)
		}
		rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil || len(rows) == 0 {
			t.Fatalf("replayctl workers csv %q: %v", out, err)
		}
		clear(done)
		for _, r := range rows[1:] {
			n, _ := strconv.Atoi(r[4]) // name, fingerprint, slots, busy, jobs_done, …
			done[r[0]] = n
		}
		local := ""
		for name := range done {
			if strings.HasPrefix(name, "replayd@") {
				local = name
			}
		}
		// Jobs done come with the workers' announcements (every 2 s):
		// wait until they account for every step.
		if local != "" && done[local] > 0 && done["w1"] > 0 && done[local]+done["w1"] >= spec.Steps {
			if !strings.HasSuffix(local, "-"+strconv.Itoa(d.cmd.Process.Pid)) {
				t.Errorf("in-process worker %q: want replayd@HOST-%d", local, d.cmd.Process.Pid)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replayctl workers after %v: want the in-process worker and w1 both with jobs done, %d between them:\n%s", hangGuard, spec.Steps, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The first result of w1 is checked (--verify-share 0 checks only
	// that one); none of the daemon's own.
	if m := d.raw("/metrics"); !strings.Contains(m, "replay_remote_verified_total 1\n") {
		t.Errorf("metrics: want exactly w1's first result verified:\n%s", grepLines(m, "replay_remote_"))
	}
	sameResults(t, collect(d, spec), want, "from the in-process run's")
	w.stop(syscall.SIGTERM)
	if took := d.stop(syscall.SIGTERM); d.err != nil {
		t.Errorf("daemon after SIGTERM (%v): %v", took, d.err)
	}
}
