package main

import (
	"bytes"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// natsServer is Debian's nats-server with JetStream, on a fixed port and
// store, so that it can be restarted where it was.
type natsServer struct {
	t        *testing.T
	bin, dir string
	port     int
	cmd      *exec.Cmd
	log      *lockedBuffer
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Fatalf("nats-server not installed (apt-get install nats-server; .ci/run does): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &natsServer{t: t, bin: bin, dir: t.TempDir(), port: port}
	s.start()
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("nats-server log:\n%s", tail(s.log.String(), 20))
		}
	})
	return s
}

func (s *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

func (s *natsServer) start() {
	s.t.Helper()
	s.log = &lockedBuffer{}
	s.cmd = exec.Command(s.bin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-sd", s.dir)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	waitLog(s.t, s.log, "Server is ready")
}

func (s *natsServer) kill() {
	if s.cmd != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// TestRemoteNATSRestart: the external nats-server SIGKILLed in the middle
// of a run and started again on its port and store: the daemon and the
// worker reconnect, and the run finishes bitwise equal to an in-process
// run.
func TestRemoteNATSRestart(t *testing.T) {
	ns := startNATS(t)
	spec := remoteSpec()
	ref := startDaemon(t, t.TempDir(), "--workers", "1")
	ref.runDone(spec)
	want := ref.trajectory(spec.Name, "backward")
	wantParams := ref.params(spec.Name, "backward", spec.Steps)
	ref.stop(syscall.SIGTERM)

	d := startDaemon(t, t.TempDir(), "--workers", "0", "--nats", ns.url())
	w := startWorker(t, ns.url(), "w")
	if _, err := d.c.CreateRun(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(runGuard)
	for {
		st, err := d.c.Status(ctx(t), spec.Name)
		if err != nil {
			t.Fatal(err)
		}
		if st.BackwardStep >= 60 {
			if st.BackwardStep >= spec.Steps {
				t.Fatalf("run done before the restart (frontier %d): the test tests nothing", st.BackwardStep)
			}
			t.Logf("nats-server killed at backward step %d", st.BackwardStep)
			break
		}
		if st.State == "failed" || time.Now().After(deadline) {
			t.Fatalf("run before the restart: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ns.kill()
	ns.start()
	d.waitDone(spec.Name)
	if err := samePoints(d.trajectory(spec.Name, "backward"), want); err != nil {
		t.Errorf("backward trajectory across a nats-server restart: %v", err)
	}
	if !bytes.Equal(d.params(spec.Name, "backward", spec.Steps), wantParams) {
		t.Error("final backward parameters differ from the in-process run's")
	}
	w.stop(syscall.SIGTERM)
}
