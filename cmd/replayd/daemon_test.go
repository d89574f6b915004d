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
	if _, err := c.CreateRun(ctx, api.RunSpec{Name: "q", Preset: "quadratic", Steps: 200}); err != nil {
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
	if err != nil || st.State != "done" || st.BackwardStep != 200 {
		t.Fatalf("status %+v %v", st, err)
	}
	// A client still reading a stream at the signal does not hold the
	// shutdown up.
	streamDone := make(chan error, 1)
	go func() {
		streamDone <- c.Trajectory(context.Background(), "q", api.TrajectoryQuery{}, func(api.Point) error {
			time.Sleep(time.Millisecond)
			return nil
		})
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	sigs <- syscall.SIGTERM
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("daemon returned %v after SIGTERM", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon still running 10 s after SIGTERM")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("shutdown took %v", took)
	}
	<-streamDone
	if _, err := os.Stat(filepath.Join(dir, api.SocketName)); !os.IsNotExist(err) {
		t.Errorf("socket left after a clean shutdown: %v", err)
	}
	if t.Failed() {
		t.Log(log.String())
	}
}
