package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/internal/fakebackend"
	"github.com/replay-sgd/replay/server"
)

// fakeDaemon is replayd's real HTTP handler (server.New) over an in-memory
// backend (internal/fakebackend), for unit tests of the CLI's parsing and
// formatting: the CLI meets the API exactly as the daemon serves it. The
// fake records every request (and POST body), so that tests can assert
// what was sent, and counts the calls that changed something, so that a
// rejected command is seen to change nothing. End-to-end tests against the
// real daemon are in e2e_test.go.
type fakeDaemon struct {
	t   *testing.T
	srv *httptest.Server
	b   *fakebackend.Backend

	mu       sync.Mutex
	requests []string // "METHOD path?query", in order
	bodies   []string // non-empty bodies of POST requests
	handlers map[string]http.Handler
	// points returns the trajectory of a run (nil: fakebackend.DefaultPoints).
	points func(name string) []api.Point
	// onStatus, when set, is called on every status of one run (wait tests
	// advance the run there).
	onStatus func(st *api.RunStatus)
	// token, when set, is the bearer token the server requires.
	token string
}

var _ server.Backend = (*fakebackend.Backend)(nil)

func newFake(t *testing.T, runs ...api.RunStatus) *fakeDaemon {
	f := &fakeDaemon{t: t, b: fakebackend.New(runs...), handlers: map[string]http.Handler{}}
	f.b.Points = func(name string) []api.Point {
		if f.points != nil {
			return f.points(name)
		}
		st, _ := f.b.Run(name)
		return fakebackend.DefaultPoints(st)
	}
	f.b.OnStatus = func(st *api.RunStatus) {
		if f.onStatus != nil {
			f.onStatus(st)
		}
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// serve records the request and hands it to server.New's handler (one per
// token: the token is an option of the handler).
func (f *fakeDaemon) serve(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.Method == http.MethodPost {
		body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.EscapedPath()+"?"+r.URL.RawQuery)
	if len(body) > 0 {
		f.bodies = append(f.bodies, string(body))
	}
	h := f.handlers[f.token]
	if h == nil {
		h = server.New(f.b, server.Options{Token: f.token})
		f.handlers[f.token] = h
	}
	f.mu.Unlock()
	h.ServeHTTP(w, r)
}

// sampleRun is a run of the paper's kind, part-way through.
func sampleRun(name string) api.RunStatus {
	fl, bl := 0.53125, 0.4921875
	return api.RunStatus{
		Name: name, State: "running",
		Spec:  api.RunSpec{Name: name, Preset: "fmnist-mlp", Model: "mlp:32", Dataset: "fashion-mnist", LR: 0.01, Batch: 8, Steps: 5000},
		Steps: 5000, ForwardStep: 1200, BackwardStep: 900,
		Anchor: api.AnchorInfo{Segment: 3, Step: 768, From: "backward"},
		Window: 256, Strategy: "window", OpsPerSec: 210.5, ETASeconds: 80,
		ForwardLoss: &fl, BackwardLoss: &bl,
	}
}

func (f *fakeDaemon) addr() string { return f.srv.URL }

func (f *fakeDaemon) mutated() int { return f.b.Mutations() }

func (f *fakeDaemon) lastRequest() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		return ""
	}
	return f.requests[len(f.requests)-1]
}

// defaultPoints is the trajectory the fake serves for a run in state st.
func defaultPoints(st *api.RunStatus) []api.Point { return fakebackend.DefaultPoints(*st) }

// cli runs replayctl against the fake with the given arguments (the fake's
// address is appended as a global flag after the command, which also
// checks that global flags work there).
func (f *fakeDaemon) cli(args ...string) (stdout, stderr string, err error) {
	return runCLI(append(args, "--addr", f.addr())...)
}

// runCLI runs replayctl with exactly args.
func runCLI(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	err = run(args, &o, &e)
	return o.String(), e.String(), err
}

// oneLine checks the error is a single line.
func oneLine(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err.Error())
	}
}
