package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
)

// TestRemoteLongJobHeartbeat: jobs that take 2.25 × AckWait (replayfault,
// REPLAY_FAULT_SLOW) are not redelivered while their worker lives: its
// InProgress heartbeats keep them, and a fast worker beside it, idle most
// of the time, would otherwise get them again (a duplicate). Every result
// is accepted once, none is a duplicate or a redelivery.
func TestRemoteLongJobHeartbeat(t *testing.T) {
	bin, err := faultBin()
	if err != nil {
		t.Fatal(err)
	}
	spec := remoteSpec()
	spec.Steps, spec.ResetAt, spec.Window = 8, nil, 2
	d := startDaemon(t, t.TempDir(), "--workers", "0", "--remote-workers", "--nats-listen", "127.0.0.1:0", "--job-ack-wait", "2s")
	w := startWorkerBin(t, bin, d.natsURL(), "slow", "REPLAY_FAULT_SLOW=4500ms")
	// The slow worker first: its pull is waiting when the first job comes.
	waitLog(t, w.log, "worker started")
	fast := startWorker(t, d.natsURL(), "fast")
	d.runDone(spec)
	m := d.raw("/metrics")
	want := []string{"replay_remote_redelivered_total 0\n", "replay_remote_duplicates_total 0\n",
		fmt.Sprintf("replay_remote_results_total %d\n", spec.Steps)}
	for _, s := range want {
		if !strings.Contains(m, s) {
			t.Errorf("metrics: want %q:\n%s", strings.TrimSpace(s), grepLines(m, "replay_remote_"))
		}
	}
	w.stop(syscall.SIGTERM)
	fast.stop(syscall.SIGTERM)
	if strings.Contains(w.log.String(), "done=0") {
		t.Errorf("the slow worker computed no job: the test tested nothing:\n%s", tail(w.log.String(), 5))
	}
}
