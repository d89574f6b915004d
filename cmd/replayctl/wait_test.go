package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/scheduler"
	"github.com/replay-sgd/replay/server"
)

// streamBackend is the daemon's API (server.New) over a scripted run: each
// subscription to its event stream delivers the next script, one batch per
// call, then ends the connection (end set) or idles until the client goes.
// Status returns the run as the last event left it (final, once set).
// Only the methods wait and status --watch use are implemented; the others
// would answer 500 (a nil embedded Backend panics, the server recovers).
type streamBackend struct {
	server.Backend
	mu      sync.Mutex
	run     api.RunStatus
	final   *api.RunStatus
	scripts []script
	cursors []string
}

type script struct {
	batches [][]api.Event
	end     bool // the connection drops after the batches
}

func newStreamDaemon(t *testing.T, run api.RunStatus, scripts ...script) (*streamBackend, string) {
	b := &streamBackend{run: run, scripts: scripts}
	srv := httptest.NewServer(server.New(b, server.Options{}))
	t.Cleanup(srv.Close)
	return b, srv.URL
}

func (b *streamBackend) Status(name string) (api.RunStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if name != b.run.Name {
		return api.RunStatus{}, fmt.Errorf("run %q: %w", name, scheduler.ErrNotFound)
	}
	if b.final != nil {
		return *b.final, nil
	}
	return b.run, nil
}

func (b *streamBackend) List() []api.RunStatus {
	st, _ := b.Status(b.run.Name)
	return []api.RunStatus{st}
}

func (b *streamBackend) Subscribe(name, cursor string) (func(context.Context) ([]api.Event, bool), func(), error) {
	if _, err := b.Status(name); err != nil {
		return nil, nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cursors = append(b.cursors, cursor)
	var sc script
	if len(b.scripts) > 0 {
		sc, b.scripts = b.scripts[0], b.scripts[1:]
	}
	next := func(ctx context.Context) ([]api.Event, bool) {
		if len(sc.batches) > 0 {
			evs := sc.batches[0]
			sc.batches = sc.batches[1:]
			return evs, true
		}
		if !sc.end {
			<-ctx.Done()
		}
		return nil, false
	}
	return next, func() {}, nil
}

// progressEv is a progress (or snapshot) event of run fm at the given steps.
func progressEv(kind string, id, fwd, bwd int) api.Event {
	st := startRun()
	st.ForwardStep, st.BackwardStep = fwd, bwd
	return api.Event{ID: fmt.Sprintf("b-%d", id), Run: st.Name, Kind: kind, Status: &st}
}

func startRun() api.RunStatus {
	st := sampleRun("fm")
	st.Steps, st.ForwardStep, st.BackwardStep = 1000, 0, 0
	return st
}

func doneRun(state, reason string) *api.RunStatus {
	st := startRun()
	st.State, st.Reason, st.ForwardStep, st.BackwardStep, st.OpsPerSec, st.ETASeconds = state, reason, 1000, 1000, 0, 0
	return &st
}

// finishing is a stream of a run that progresses and ends in state.
func finishing(state string) script {
	last := api.Event{ID: "b-5", Run: "fm", Kind: state}
	return script{batches: [][]api.Event{
		{progressEv(api.EventSnapshot, 1, 0, 0)},
		{progressEv(api.EventProgress, 2, 250, 200)},
		{progressEv(api.EventProgress, 3, 500, 400), progressEv(api.EventProgress, 4, 1000, 900)},
		{last},
	}}
}

func runWaitCLI(t *testing.T, addr string, terminal bool, args ...string) (string, string, error) {
	t.Helper()
	var o, e bytes.Buffer
	env := &env{ctx: t.Context(), stdout: &o, stderr: &e, isTerminal: func(io.Writer) bool { return terminal }}
	err := env.main(append(args, "--addr", addr))
	return o.String(), e.String(), err
}

// TestWaitPlainLines: off a terminal, with an interval of an hour, the
// first line comes at once, the progress in between is not printed, and
// the end is noticed as soon as its event arrives (a polling wait would
// block for the hour).
func TestWaitPlainLines(t *testing.T) {
	b, addr := newStreamDaemon(t, startRun(), finishing("done"))
	b.final = doneRun("done", "")
	out, _, err := runWaitCLI(t, addr, false, "wait", "--interval", "1h")
	if err != nil {
		t.Fatal(err)
	}
	want := "fm running: forward 0/1000 (0%)  backward 0/1000 (0%)  210 ops/s  ETA 1m20s\n" +
		"fm done: forward 1000/1000 (100%)  backward 1000/1000 (100%)\n"
	if out != want {
		t.Errorf("output\n%q\nwant\n%q", out, want)
	}
	// With a short interval every progress event that changes the line
	// is printed.
	b, addr = newStreamDaemon(t, startRun(), finishing("done"))
	b.final = doneRun("done", "")
	out, _, err = runWaitCLI(t, addr, false, "wait", "--interval", "1ns")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "\n"); n != 5 || !strings.Contains(out, "forward 500/1000 (50%)") {
		t.Errorf("want 5 lines:\n%s", out)
	}
}

func TestWaitTerminalBar(t *testing.T) {
	b, addr := newStreamDaemon(t, startRun(), finishing("done"))
	b.final = doneRun("done", "")
	out, _, err := runWaitCLI(t, addr, true, "wait", "--interval", "1h")
	if err != nil {
		t.Fatal(err)
	}
	// One redraw per event, whatever --interval says, and the final one.
	if strings.Count(out, "\r") != 5 || !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
		t.Errorf("bar redraws:\n%q", out)
	}
	if !strings.Contains(out, "forward [#####...............] 250/1000") || !strings.Contains(out, "backward [####################] 1000/1000") {
		t.Errorf("bars:\n%q", out)
	}
}

func TestWaitFailedAndTimeout(t *testing.T) {
	b, addr := newStreamDaemon(t, startRun(), finishing("failed"))
	b.final = doneRun("failed", "forward step 1000: loss is NaN (diverged)")
	_, _, err := runWaitCLI(t, addr, false, "wait")
	oneLine(t, err)
	if err.Error() != "run fm failed: forward step 1000: loss is NaN (diverged)" {
		t.Errorf("failed: %v", err)
	}
	// A stream that never ends the run: the timeout says where it stands.
	_, addr = newStreamDaemon(t, startRun(), script{batches: [][]api.Event{{progressEv(api.EventSnapshot, 1, 20, 10)}}})
	_, _, err = runWaitCLI(t, addr, false, "wait", "--timeout", "30ms")
	oneLine(t, err)
	if err.Error() != "wait: run fm is still running after 30ms (forward 20/1000, backward 10/1000)" {
		t.Errorf("timeout: %v", err)
	}
	for _, args := range [][]string{{"--timeout", "-1s"}, {"--timeout", "soon"}, {"--interval", "0s"}} {
		if _, _, err := runWaitCLI(t, addr, false, append([]string{"wait"}, args...)...); !errors.Is(err, errUsage) {
			t.Errorf("%q: %v", args, err)
		}
	}
	_, _, err = runWaitCLI(t, addr, false, "wait", "--run", "nope")
	if !errors.Is(err, api.ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
	// Deleted while waiting: an error, not success.
	_, addr = newStreamDaemon(t, startRun(), script{batches: [][]api.Event{
		{progressEv(api.EventSnapshot, 1, 20, 10)}, {{ID: "b-2", Run: "fm", Kind: api.EventDeleted}}}})
	_, _, err = runWaitCLI(t, addr, false, "wait")
	oneLine(t, err)
	if err.Error() != "run fm was deleted" {
		t.Errorf("deleted: %v", err)
	}
}

// TestWaitAlreadyDone: a wait started after the run finished returns at
// once, from the snapshot (the stream would idle forever after it).
func TestWaitAlreadyDone(t *testing.T) {
	done := doneRun("done", "")
	b, addr := newStreamDaemon(t, *done, script{batches: [][]api.Event{{{ID: "b-9", Run: "fm", Kind: api.EventSnapshot, Status: done}}}})
	b.final = done
	out, _, err := runWaitCLI(t, addr, false, "wait")
	if err != nil || out != "fm done: forward 1000/1000 (100%)  backward 1000/1000 (100%)\n" {
		t.Errorf("%q %v", out, err)
	}
}

// TestWaitResumesDroppedStream: after a dropped connection the client
// asks for the events after the last one it saw.
func TestWaitResumesDroppedStream(t *testing.T) {
	first := script{batches: [][]api.Event{{progressEv(api.EventSnapshot, 1, 0, 0)}, {progressEv(api.EventProgress, 2, 250, 200)}}, end: true}
	second := script{batches: [][]api.Event{{progressEv(api.EventProgress, 3, 1000, 1000)}, {{ID: "b-4", Run: "fm", Kind: api.EventDone}}}}
	b, addr := newStreamDaemon(t, startRun(), first, second)
	b.final = doneRun("done", "")
	if _, _, err := runWaitCLI(t, addr, false, "wait"); err != nil {
		t.Fatal(err)
	}
	if strings.Join(b.cursors, ",") != ",b-2" {
		t.Errorf("cursors %q, want \"\" then b-2", b.cursors)
	}
}

func TestWaitJSON(t *testing.T) {
	b, addr := newStreamDaemon(t, startRun(), finishing("done"))
	b.final = doneRun("done", "")
	out, stderr, err := runWaitCLI(t, addr, false, "wait", "--interval", "1ns", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var l api.RunList
	if json.Unmarshal([]byte(out), &l) != nil || l.Runs[0].State != "done" {
		t.Errorf("stdout %q", out)
	}
	if strings.Count(stderr, "\n") != 5 {
		t.Errorf("progress on stderr %q", stderr)
	}
}
