package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
)

// syncBuf is a log sink safe for the daemon's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDaemonInProcess runs the daemon inside the test (so the race detector
// sees its goroutines): a run to the end with requests in flight, then a
// signal, and a clean return.
func TestDaemonInProcess(t *testing.T) {
	dir := t.TempDir()
	sigs := make(chan os.Signal, 1)
	readyc := make(chan string, 1)
	errc := make(chan error, 1)
	var log syncBuf
	go func() {
		errc <- runDaemon([]string{"--data-dir", dir, "--window", "8", "--workers", "2", "--log-level", "debug"},
			&bytes.Buffer{}, &log, sigs, func(addr string) { readyc <- addr })
	}()
	var addr string
	select {
	case addr = <-readyc:
	case err := <-errc:
		t.Fatalf("daemon ended at start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("daemon not ready after 20 s")
	}
	if want := "unix:" + filepath.Join(dir, api.SocketName); addr != want {
		t.Fatalf("listening on %s, want %s", addr, want)
	}
	c := api.NewClient(addr, "")
	ctx := t.Context()
	if _, err := c.CreateRun(ctx, api.RunSpec{Name: "q", Preset: "quadratic", Steps: 2000}); err != nil {
		t.Fatal(err)
	}
	// Concurrent readers while the run computes.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				st, err := c.Status(ctx, "q")
				if err != nil {
					t.Error(err)
					return
				}
				if err := c.Trajectory(ctx, "q", api.TrajectoryQuery{}, func(api.Point) error { return nil }); err != nil {
					t.Error(err)
					return
				}
				if st.State != "running" {
					return
				}
			}
		})
	}
	wg.Wait()
	st, err := c.Status(ctx, "q")
	if err != nil || st.State != "done" || st.BackwardStep != 2000 {
		t.Fatalf("status %+v %v", st, err)
	}
	// A client that stops reading a stream (4000 points, more than the
	// socket buffers hold) until the daemon has exited does not hold the
	// shutdown up: the daemon cuts it after --shutdown-timeout.
	streamDone := make(chan error, 1)
	started, release := make(chan struct{}), make(chan struct{})
	go func() {
		first := true
		streamDone <- c.Trajectory(context.Background(), "q", api.TrajectoryQuery{}, func(api.Point) error {
			if first {
				first = false
				close(started)
				<-release
			}
			return nil
		})
	}()
	select {
	case <-started:
	case err := <-streamDone:
		t.Fatalf("stream ended before its first point: %v", err)
	}
	start := time.Now()
	sigs <- syscall.SIGTERM
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("daemon returned %v after SIGTERM", err)
		}
	case <-time.After(shutdownBound):
		t.Fatalf("daemon still running %v after SIGTERM", shutdownBound)
	}
	t.Logf("shutdown with a stalled stream took %v", time.Since(start).Round(time.Millisecond))
	close(release)
	<-streamDone
	if _, err := os.Stat(filepath.Join(dir, api.SocketName)); !os.IsNotExist(err) {
		t.Errorf("socket left after a clean shutdown: %v", err)
	}
	if t.Failed() {
		t.Log(log.String())
	}
}
