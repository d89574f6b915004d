package main

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// ctlUntil runs `replayctl args…` against d until its output satisfies ok
// (announcements and the daemon's directory come every 2 s), and returns
// that output.
func ctlUntil(d *daemon, what string, ok func(out string) bool, args ...string) string {
	d.t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		code, out, errOut := d.ctl(args...)
		if code != 0 {
			d.t.Fatalf("replayctl %v: exit %d: %s", args, code, errOut)
		}
		if ok(out) {
			return out
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("replayctl %v: %s: not after %v:\n%s", args, what, hangGuard, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRemoteWaiting: a --workers 0 daemon with a Fashion-MNIST run says
// why its backward side does not move — first no worker at all, then a
// worker whose data set differs in one byte: `replayctl status RUN` prints
// the waiting line, `replayctl workers` lists the worker refusing the run
// (table and CSV) and the run below the table. A worker with the run's data
// joins: the run finishes and neither view says anything waits.
func TestRemoteWaiting(t *testing.T) {
	changed := changedFashionCopy(t)
	spec := fashionSpec()
	d := startDaemon(t, t.TempDir(), "--workers", "0", "--remote-workers", "--nats-listen", "127.0.0.1:0")
	url := d.natsURL()
	if _, err := d.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	noWorker := "f: backward waits: no remote worker connected: start `replayd worker --nats " + url + "`"
	ctlUntil(d, "the no-worker line", func(out string) bool { return strings.Contains(out, noWorker) }, "status", "f")

	odd := startWorkerArgs(t, replaydBin, url, "odd", []string{"--data-path", changed})
	const refused = "f: backward waits: no worker can take its jobs: its data set differs (or cannot be loaded) on every worker (odd); start a worker with the run's data (data hash "
	out := ctlUntil(d, "the refused line", func(out string) bool { return strings.Contains(out, refused) }, "status", "f")
	if strings.Count(out, "backward waits") != 1 {
		t.Errorf("status f: want one waiting line:\n%s", out)
	}
	st, err := d.c.Status(ctx(t), "f")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "running" || st.BackwardStep >= st.ForwardStep || !strings.Contains(st.Waiting, "(data hash sha256:") {
		t.Errorf("status: want running, backward behind forward, waiting with the data hash: %+v", st)
	}
	if m := d.raw("/metrics"); !strings.Contains(m, `replay_remote_runs_waiting{reason="refused"} 1`+"\n") {
		t.Errorf("metrics: want the run counted waiting, refused:\n%s", grepLines(m, "replay_remote_runs_"))
	}
	if runs := ctlUntil(d, "runs", func(string) bool { return true }, "runs"); !strings.Contains(runs, "running (backward waits)") {
		t.Errorf("replayctl runs: want the run marked waiting:\n%s", runs)
	}
	out = ctlUntil(d, "the worker refusing f", func(out string) bool { return strings.Contains(out, refused) }, "workers")
	var row string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "odd ") {
			row = l
		}
	}
	if !strings.HasPrefix(out, "NAME ") || !strings.Contains(out[:strings.Index(out, "\n")], "REFUSES") || !strings.HasSuffix(strings.TrimSpace(row), " f") {
		t.Errorf("replayctl workers: want a REFUSES column with f for odd:\n%s", out)
	}
	if csv := ctlUntil(d, "csv", func(string) bool { return true }, "workers", "-o", "csv"); !strings.HasSuffix(strings.SplitN(csv, "\n", 2)[0], ",refuses") || !strings.Contains(csv, ",ok,f\n") {
		t.Errorf("replayctl workers -o csv: want a refuses column with f for odd:\n%s", csv)
	}

	good := startWorker(t, url, "good")
	if st := d.waitDone(spec.Name); st.Waiting != "" {
		t.Errorf("done run still waiting: %q", st.Waiting)
	}
	if _, out, _ := d.ctl("status", "f"); strings.Contains(out, "backward waits") {
		t.Errorf("status f of the finished run: still waiting:\n%s", out)
	}
	out = ctlUntil(d, "both workers listed", func(out string) bool { return strings.Contains(out, "\ngood ") && strings.Contains(out, "\nodd ") }, "workers")
	if strings.Contains(out, "backward waits") || strings.Contains(out, " f\n") {
		t.Errorf("replayctl workers after the run finished: still a waiting run or a refused one:\n%s", out)
	}
	if m := d.raw("/metrics"); strings.Contains(m, `replay_remote_runs_waiting{reason="refused"} 1`) {
		t.Errorf("metrics: the finished run still counted waiting:\n%s", grepLines(m, "replay_remote_runs_"))
	}
	odd.stop(syscall.SIGTERM)
	good.stop(syscall.SIGTERM)
	if !strings.Contains(odd.log.String(), "done=0") {
		t.Errorf("odd worker computed jobs:\n%s", tail(odd.log.String(), 8))
	}
}
