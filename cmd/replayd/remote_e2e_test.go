package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
)

// worker is one `replayd worker` process.
type worker struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	log    *lockedBuffer
	exited chan struct{}
	err    error
}

// lockedBuffer is a log written by exec's copier and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startWorker(t *testing.T, url, name string, env ...string) *worker {
	t.Helper()
	return startWorkerBin(t, replaydBin, url, name, env...)
}

func startWorkerBin(t *testing.T, bin, url, name string, env ...string) *worker {
	t.Helper()
	return startWorkerArgs(t, bin, url, name, nil, env...)
}

// startWorkerArgs starts `bin worker` with args added to its flags.
func startWorkerArgs(t *testing.T, bin, url, name string, args []string, env ...string) *worker {
	t.Helper()
	w := &worker{t: t, name: name, log: &lockedBuffer{}, exited: make(chan struct{})}
	w.cmd = exec.Command(bin, append([]string{"worker", "--nats", url, "--name", name, "--log-level", "debug"}, args...)...)
	w.cmd.Env = append(append(os.Environ(), "REPLAYD_TOKEN="), env...)
	w.cmd.Stdout, w.cmd.Stderr = w.log, w.log
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.err = w.cmd.Wait(); close(w.exited) }()
	t.Cleanup(func() {
		select {
		case <-w.exited:
		default:
			w.cmd.Process.Kill()
			<-w.exited
		}
		if t.Failed() {
			t.Logf("worker %s log:\n%s", name, tail(w.log.String(), 30))
		}
	})
	return w
}

// stop sends sig and waits for the exit (hang guard only).
func (w *worker) stop(sig syscall.Signal) {
	w.t.Helper()
	if err := w.cmd.Process.Signal(sig); err != nil {
		w.t.Fatal(err)
	}
	select {
	case <-w.exited:
	case <-time.After(hangGuard):
		w.t.Fatalf("worker %s did not exit %v after %v", w.name, hangGuard, sig)
	}
}

// natsURL waits for the embedded server's URL in the daemon's data dir.
func (d *daemon) natsURL() string {
	d.t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		b, err := os.ReadFile(filepath.Join(d.dir, natsURLFile))
		if err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("no %s after %v: %v", natsURLFile, hangGuard, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// remoteSpec is a regression run with anchors (a reset), a sliding window
// (jobs from forward checkpoints) and evaluation steps.
func remoteSpec() api.RunSpec {
	return api.RunSpec{
		Name: "r", Dataset: "regression-sin", Model: "mlp:300x3", Init: "he", Loss: "mse",
		LR: 0.001, Batch: 10, Steps: 300, Seed: seed(5), Window: 24, ResetAt: []int{150},
		EvalEvery: api.Ptr(10), CheckpointEvery: 50,
	}
}

// TestRemoteWorkersBitwise: the daemon with the embedded NATS server and no
// in-process worker, two `replayd worker` processes, each SIGKILLed twice
// in the middle of the run and started again, then the daemon SIGKILLed and
// restarted: the trajectories and the exported
// parameters equal an in-process run's byte for byte, and SIGTERM stops a
// worker cleanly.
func TestRemoteWorkersBitwise(t *testing.T) {
	spec := remoteSpec()

	ref := startDaemon(t, t.TempDir(), "--workers", "1")
	ref.runDone(spec)
	want := collect(ref, spec)
	ref.stop(syscall.SIGTERM)

	d := startDaemon(t, t.TempDir(), "--workers", "0", "--remote-workers", "--nats-listen", "127.0.0.1:0", "--job-ack-wait", "2s")
	url := d.natsURL()
	ws := []*worker{startWorker(t, url, "w1"), startWorker(t, url, "w2")}
	if _, err := d.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	// With --workers 0 only the workers compute: the frontier moving
	// proves jobs went through them. Kill them mid-run, one after the
	// other, several times: a killed worker's job is redelivered after
	// AckWait (or computed by the other).
	for i, at := range []int{40, 70, 100, 130} {
		waitBackward(d, spec.Name, at)
		k := i % 2
		ws[k].stop(syscall.SIGKILL)
		ws[k] = startWorker(t, url, ws[k].name)
	}
	w1 := ws[0]
	waitBackward(d, spec.Name, 150)
	// The daemon SIGKILLed while the workers hold jobs, restarted on the
	// same NATS address: the workers reconnect, the new epoch's jobs
	// replace the old ones (whose late results are dropped).
	d.stop(syscall.SIGKILL)
	port := url[strings.LastIndex(url, ":")+1:]
	if err := os.Remove(filepath.Join(d.dir, natsURLFile)); err != nil {
		t.Fatal(err)
	}
	d = startDaemon(t, d.dir, "--workers", "0", "--remote-workers", "--nats-listen", "127.0.0.1:"+port, "--job-ack-wait", "2s")
	if u := d.natsURL(); u != url {
		t.Fatalf("restarted daemon's NATS URL %s, want %s", u, url)
	}
	d.waitDone(spec.Name)
	// No job lost, none committed twice: the restarted daemon committed
	// exactly the backward steps after the frontier it started from (the
	// old epoch's late results, and redeliveries, are dropped).
	from := regexp.MustCompile(`msg="computing run" run=` + spec.Name + ` forward_step=\d+ backward_step=(\d+)`).FindStringSubmatch(d.log.String())
	if from == nil {
		t.Fatalf("the restarted daemon logged no \"computing run\" line:\n%s", tail(d.log.String(), 20))
	}
	b0, _ := strconv.Atoi(from[1])
	t.Logf("the restarted daemon started at backward step %d", b0)
	if want := fmt.Sprintf("replay_steps_total{kind=\"backward\"} %d\n", spec.Steps-b0); b0 == 0 || !strings.Contains(d.raw("/metrics"), want) {
		t.Errorf("restarted at backward step %d: want %q in the metrics:\n%s", b0, want, grepLines(d.raw("/metrics"), "replay_steps_total"))
	}
	// replayctl workers lists both (announcements come every 2 s: wait
	// for the restarted daemon to have heard them).
	deadline := time.Now().Add(hangGuard)
	for {
		code, out, errOut := d.ctl("workers", "-o", "csv")
		if code != 0 {
			t.Fatalf("replayctl workers: exit %d: %s", code, errOut)
		}
		if strings.Contains(out, "\nw1,") && strings.Contains(out, "\nw2,") {
			if strings.Count(out, ",ok,\n") != 2 {
				t.Errorf("replayctl workers: want both ok:\n%s", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replayctl workers does not list w1 and w2 after %v:\n%s", hangGuard, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	sameResults(t, collect(d, spec), want, "from the in-process run's")
	w1.stop(syscall.SIGTERM)
	if w1.err != nil {
		t.Errorf("worker w1 after SIGTERM: %v", w1.err)
	}
}

// waitBackward polls until the run's backward frontier reaches n.
func waitBackward(d *daemon, name string, n int) {
	d.t.Helper()
	deadline := time.Now().Add(runGuard)
	for {
		st, err := d.c.Status(ctx(d.t), name)
		if err != nil {
			d.t.Fatal(err)
		}
		if st.State == "failed" {
			d.t.Fatalf("run %s failed: %s", name, st.Reason)
		}
		if st.BackwardStep >= n || st.State == "done" {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("run %s: backward frontier not at %d after %v: %+v", name, n, runGuard, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRemoteFingerprint: a worker whose fingerprint differs from the
// daemon's (another OPENBLAS_CORETYPE) gets no job of the run: the run is
// finished by the matching worker alone, and the other reports none done
// when it stops.
func TestRemoteFingerprint(t *testing.T) {
	spec := remoteSpec()
	spec.Steps, spec.ResetAt = 100, nil
	d := startDaemon(t, t.TempDir(), "--workers", "0", "--remote-workers", "--nats-listen", "127.0.0.1:0")
	url := d.natsURL()
	other := startWorker(t, url, "other", "OPENBLAS_CORETYPE=replay-test-other-kernel")
	// The odd worker first, so that it would get the first jobs if the
	// fingerprint did not keep them from it.
	waitLog(t, other.log, "worker started")
	same := startWorker(t, url, "same")
	d.runDone(spec)
	other.stop(syscall.SIGTERM)
	same.stop(syscall.SIGTERM)
	if !strings.Contains(other.log.String(), "done=0") {
		t.Errorf("worker of another fingerprint computed jobs:\n%s", tail(other.log.String(), 5))
	}
	if strings.Contains(same.log.String(), "done=0") || !strings.Contains(same.log.String(), "worker stopped") {
		t.Errorf("the matching worker did not report its jobs:\n%s", tail(same.log.String(), 5))
	}
}

// waitLog waits until a worker's log holds s.
func waitLog(t *testing.T, log *lockedBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !strings.Contains(log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log has no %q after %v", s, hangGuard)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var faultBin = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(filepath.Dir(replaydBin), "replayd-fault")
	out, err := exec.Command("go", "build", "-tags", "replayfault", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build with -tags replayfault: %v\n%s", err, out)
	}
	return bin, nil
})

// TestRemoteSpotCheck: a worker returning wrong numbers (the last bit of
// one parameter flipped: fault injection behind the replayfault build tag)
// is caught by the spot check of its first result and quarantined, its
// results are recomputed by the daemon, and the run's stored numbers equal
// an in-process run's; the metrics count the mismatch.
func TestRemoteSpotCheck(t *testing.T) {
	bin, err := faultBin()
	if err != nil {
		t.Fatal(err)
	}
	spec := remoteSpec()
	spec.Steps, spec.ResetAt = 100, nil

	ref := startDaemon(t, t.TempDir(), "--workers", "1")
	ref.runDone(spec)
	want := ref.trajectory(spec.Name, "backward")
	wantParams := ref.params(spec.Name, "backward", spec.Steps)
	ref.stop(syscall.SIGTERM)

	d := startDaemon(t, t.TempDir(), "--workers", "0", "--remote-workers", "--nats-listen", "127.0.0.1:0", "--verify-share", "0")
	w := startWorkerBin(t, bin, d.natsURL(), "faulty", "REPLAY_FAULT_CORRUPT=1")
	d.runDone(spec)
	if err := samePoints(d.trajectory(spec.Name, "backward"), want); err != nil {
		t.Errorf("backward trajectory with a faulty worker: %v", err)
	}
	if !bytes.Equal(d.params(spec.Name, "backward", spec.Steps), wantParams) {
		t.Error("final backward parameters differ from the in-process run's")
	}
	m := d.raw("/metrics")
	// Every result of the worker is re-executed once it is quarantined,
	// and every one is wrong: one mismatch per job, none verified.
	if !strings.Contains(m, fmt.Sprintf("replay_remote_mismatches_total %d\n", spec.Steps)) || !strings.Contains(m, "replay_remote_verified_total 0\n") {
		t.Errorf("metrics: want %d mismatches, 0 verified:\n%s", spec.Steps, grepLines(m, "replay_remote_"))
	}
	if !strings.Contains(m, "replay_remote_workers_quarantined 1\n") || !strings.Contains(m, "replay_remote_connected 1\n") {
		t.Errorf("metrics: want the worker quarantined, the daemon connected:\n%s", grepLines(m, "replay_remote_"))
	}
	if code, out, _ := d.ctl("workers", "-o", "csv"); code != 0 || !strings.Contains(out, ",quarantined,\n") {
		t.Errorf("replayctl workers (exit %d): want the faulty worker quarantined:\n%s", code, out)
	}
	w.stop(syscall.SIGTERM)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestRemoteExternalNATS: the same work through Debian's nats-server
// (JetStream on, started by the test; .ci/run installs it) with
// `replayd --nats URL`: the run equals an in-process run byte for byte.
func TestRemoteExternalNATS(t *testing.T) {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Fatalf("nats-server not installed (apt-get install nats-server; .ci/run does): %v", err)
	}
	srv := &lockedBuffer{}
	cmd := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", "-1", "-sd", t.TempDir())
	cmd.Stdout, cmd.Stderr = srv, srv
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("nats-server log:\n%s", tail(srv.String(), 20))
		}
	})
	const listening = "Listening for client connections on "
	waitLog(t, srv, listening)
	waitLog(t, srv, "Server is ready")
	out := srv.String()
	addr := strings.Fields(out[strings.Index(out, listening)+len(listening):])[0]
	url := "nats://" + addr

	spec := remoteSpec()
	spec.Steps = 200
	ref := startDaemon(t, t.TempDir(), "--workers", "1")
	ref.runDone(spec)
	want := ref.trajectory(spec.Name, "backward")
	wantParams := ref.params(spec.Name, "backward", spec.Steps)
	ref.stop(syscall.SIGTERM)

	d := startDaemon(t, t.TempDir(), "--workers", "0", "--nats", url)
	w := startWorker(t, url, "w")
	d.runDone(spec)
	if err := samePoints(d.trajectory(spec.Name, "backward"), want); err != nil {
		t.Errorf("backward trajectory through nats-server: %v", err)
	}
	if !bytes.Equal(d.params(spec.Name, "backward", spec.Steps), wantParams) {
		t.Error("final backward parameters differ from the in-process run's")
	}
	w.stop(syscall.SIGTERM)

	// /healthz reports the engine: ok while connected, 503 naming NATS
	// once the server is gone (the daemon itself keeps serving).
	if code, body := d.healthz(); code != http.StatusOK {
		t.Fatalf("/healthz with the NATS server up: %d %q", code, body)
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(time.Minute) // a hang guard, not a speed requirement
	for {
		code, body := d.healthz()
		if code == http.StatusServiceUnavailable && strings.Contains(body, "NATS") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz a minute after the NATS server died: %d %q", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := d.c.Status(ctx(t), spec.Name); err != nil {
		t.Errorf("status with the NATS server gone: %v", err)
	}
}

// TestRemoteStopWithoutWorkers: a daemon whose run has jobs queued and no
// worker to compute them stops at SIGTERM (its loop gets them back
// cancelled instead of waiting for results that never come).
func TestRemoteStopWithoutWorkers(t *testing.T) {
	spec := remoteSpec()
	d := startDaemon(t, t.TempDir(), "--workers", "0", "--remote-workers", "--nats-listen", "127.0.0.1:0")
	if _, err := d.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	d.waitStep(spec.Name, spec.Window+1) // the backward loop is issuing jobs
	d.stop(syscall.SIGTERM)
	if d.err != nil {
		t.Errorf("replayd after SIGTERM: %v", d.err)
	}
}
