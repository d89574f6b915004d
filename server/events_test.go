package server

import (
	"bufio"
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/nnfamily"
	"github.com/replay-sgd/replay/scheduler"
)

var _ EventSource = (*scheduler.Scheduler)(nil)

// fakeEvents is a Backend with an event stream whose subscriptions the
// test drives: every Subscribe hands the test a fakeSub on subs.
type fakeEvents struct {
	*fakeBackend
	subs chan *fakeSub
	mu   sync.Mutex
	n    int // Subscribe calls
}

type fakeSub struct {
	cursor  string
	evs     chan []api.Event // closed: the stream ends
	stopped chan struct{}
	once    sync.Once
}

func newFakeEvents() *fakeEvents {
	f := &fakeEvents{fakeBackend: newFake(), subs: make(chan *fakeSub, 8)}
	f.runs["r1"] = api.RunStatus{Name: "r1", State: "running", Steps: 10}
	return f
}

func (f *fakeEvents) Subscribe(name, cursor string) (func(context.Context) ([]api.Event, bool), func(), error) {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
	if _, err := f.Status(name); err != nil {
		return nil, nil, err
	}
	sub := &fakeSub{cursor: cursor, evs: make(chan []api.Event, 16), stopped: make(chan struct{})}
	f.subs <- sub
	next := func(ctx context.Context) ([]api.Event, bool) {
		select {
		case evs, ok := <-sub.evs:
			return evs, ok
		case <-ctx.Done():
			return nil, false
		}
	}
	return next, func() { sub.once.Do(func() { close(sub.stopped) }) }, nil
}

// sub returns the next subscription (a deadline guards against hangs).
func (f *fakeEvents) sub(t *testing.T) *fakeSub {
	t.Helper()
	select {
	case s := <-f.subs:
		return s
	case <-time.After(time.Minute):
		t.Fatal("no subscription within a minute")
		return nil
	}
}

func waitClosed(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(time.Minute):
		t.Fatalf("%s: not within a minute", what)
	}
}

// sseReader reads an event stream line by line.
type sseReader struct {
	t    *testing.T
	resp *http.Response
	sc   *bufio.Scanner
}

func openStream(t *testing.T, ctx context.Context, url string, hdr ...string) *sseReader {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return &sseReader{t: t, resp: resp, sc: bufio.NewScanner(resp.Body)}
}

// until returns the lines read up to and including the first one for
// which stop is true; false if the stream ended first.
func (r *sseReader) until(stop func(string) bool) ([]string, bool) {
	var lines []string
	for r.sc.Scan() {
		lines = append(lines, r.sc.Text())
		if stop(r.sc.Text()) {
			return lines, true
		}
	}
	return lines, false
}

func TestEventStreamWire(t *testing.T) {
	f := newFakeEvents()
	srv := httptest.NewServer(New(f, Options{}))
	defer srv.Close()
	r := openStream(t, t.Context(), srv.URL+"/v1/runs/r1/events", "Last-Event-ID", "b1-7")
	if r.resp.StatusCode != 200 || r.resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("answer %d %q", r.resp.StatusCode, r.resp.Header.Get("Content-Type"))
	}
	sub := f.sub(t)
	if sub.cursor != "b1-7" {
		t.Errorf("cursor %q, want the Last-Event-ID", sub.cursor)
	}
	nan, loss := math.NaN(), 0.25
	sub.evs <- []api.Event{
		{ID: "b1-8", Run: "r1", Kind: api.EventProgress, Status: &api.RunStatus{Name: "r1", State: "running", ForwardStep: 3, ForwardLoss: &nan, BackwardLoss: &loss, OpsPerSec: math.Inf(1)}},
		{ID: "b1-9", Run: "r1", Kind: api.EventFailed, Fields: map[string]string{"step": "3", "reason": "a \"b\"\nc <d>"}},
	}
	lines, ok := r.until(func(l string) bool { return strings.HasPrefix(l, "data: ") && strings.Contains(l, "b1-9") })
	if !ok {
		t.Fatalf("stream ended: %q", lines)
	}
	want := []string{
		"id: b1-8", "event: progress",
		`data: {"id":"b1-8","run":"r1","kind":"progress","status":{"name":"r1","state":"running","spec":{},"steps":0,"forward_step":3,"backward_step":0,"anchor":{"segment":0,"step":0,"from":""},"window":0,"strategy":"","ops_per_sec":0,"eta_seconds":0,"backward_loss":0.25,"bitwise":false}}`,
		"",
		"id: b1-9", "event: failed",
		`data: {"id":"b1-9","run":"r1","kind":"failed","fields":{"reason":"a \"b\"\nc <d>","step":"3"}}`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("stream\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	// The backend ends the stream: so does the answer.
	close(sub.evs)
	if lines, ok := r.until(func(string) bool { return false }); ok || len(lines) > 1 {
		t.Errorf("after the end: %q", lines)
	}
	waitClosed(t, sub.stopped, "unsubscribed at the end")

	// ?since= is the cursor too; the client going away unsubscribes.
	ctx, cancel := context.WithCancel(t.Context())
	openStream(t, ctx, srv.URL+"/v1/runs/r1/events?since=b1-9")
	sub = f.sub(t)
	if sub.cursor != "b1-9" {
		t.Errorf("cursor %q from ?since=", sub.cursor)
	}
	cancel()
	waitClosed(t, sub.stopped, "unsubscribed when the client went")
}

func TestEventStreamErrors(t *testing.T) {
	f := newFakeEvents()
	srv := httptest.NewServer(New(f, Options{Token: "s3cret"}))
	defer srv.Close()
	h := &harness{t: t, srv: srv}
	wantError(t, h.do("GET", "/v1/runs/r1/events", nil), 401, "bearer token")
	h.tok = "s3cret"
	wantError(t, h.do("GET", "/v1/runs/nope/events", nil), 404, `"nope"`)
	wantError(t, h.do("POST", "/v1/runs/r1/events", nil), 405, "GET")
	// A backend without the capability: 404, not a hang or a 500.
	plain := newHarness(t, Options{})
	wantError(t, plain.do("GET", "/v1/runs/r1/events", nil), 404, "no event stream")
}

func TestEventStreamHeartbeatOutlivesReadTimeout(t *testing.T) {
	f := newFakeEvents()
	srv := httptest.NewUnstartedServer(New(f, Options{Heartbeat: 10 * time.Millisecond}))
	// replayd sets a read timeout for bodies; a stream must outlive it.
	srv.Config.ReadTimeout = 30 * time.Millisecond
	srv.Start()
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel() // before Close, which waits for the stream to end
	r := openStream(t, ctx, srv.URL+"/v1/runs/r1/events")
	sub := f.sub(t)
	start := time.Now()
	beats := 0
	for time.Since(start) < 10*srv.Config.ReadTimeout {
		lines, ok := r.until(func(l string) bool { return l == ": keep-alive" })
		if !ok {
			t.Fatalf("stream ended after %d heartbeats, %v: %q", beats, time.Since(start), lines)
		}
		beats++
	}
	sub.evs <- []api.Event{{ID: "b-1", Run: "r1", Kind: api.EventDone}}
	if lines, ok := r.until(func(l string) bool { return l == "id: b-1" }); !ok {
		t.Fatalf("event after heartbeats not received: %q", lines)
	}
	select {
	case <-sub.stopped:
		t.Fatal("unsubscribed while the client is there")
	default:
	}
}

// TestClientEvents drives api.Client.Events against this server: events
// arrive in order, a dropped stream is resumed with Last-Event-ID, the
// stream ends after "deleted", and errors come back as they should.
func TestClientEvents(t *testing.T) {
	f := newFakeEvents()
	srv := httptest.NewServer(New(f, Options{}))
	defer srv.Close()
	c := api.NewClient(srv.URL, "")
	var got []string
	done := make(chan error, 1)
	go func() {
		done <- c.Events(t.Context(), "r1", "", func(ev api.Event) error {
			got = append(got, ev.ID+" "+ev.Kind)
			return nil
		})
	}()
	sub := f.sub(t)
	sub.evs <- []api.Event{{ID: "b-1", Run: "r1", Kind: api.EventSnapshot, Status: &api.RunStatus{Name: "r1"}}}
	sub.evs <- []api.Event{{ID: "b-2", Run: "r1", Kind: api.EventAnchor}}
	close(sub.evs) // the connection drops
	sub2 := f.sub(t)
	if sub.cursor != "" || sub2.cursor != "b-2" {
		t.Errorf("cursors %q then %q, want \"\" then b-2", sub.cursor, sub2.cursor)
	}
	sub2.evs <- []api.Event{{ID: "b-3", Run: "r1", Kind: api.EventAnchor}, {ID: "b-4", Run: "r1", Kind: api.EventDeleted}}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Events did not return after deleted")
	}
	if strings.Join(got, ",") != "b-1 snapshot,b-2 anchor,b-3 anchor,b-4 deleted" {
		t.Errorf("events %q", got)
	}

	// fn's error ends the stream and comes back as is.
	stopErr := errors.New("enough")
	go func() {
		done <- c.Events(t.Context(), "r1", "", func(api.Event) error { return stopErr })
	}()
	f.sub(t).evs <- []api.Event{{ID: "b-5", Kind: api.EventProgress}}
	if err := <-done; err != stopErr {
		t.Errorf("fn's error: %v", err)
	}
	// A 4xx is not retried.
	f.mu.Lock()
	before := f.n
	f.mu.Unlock()
	err := c.Events(t.Context(), "nope", "", func(api.Event) error { return nil })
	f.mu.Lock()
	calls := f.n - before
	f.mu.Unlock()
	if !errors.Is(err, api.ErrNotFound) || calls != 1 {
		t.Errorf("unknown run: %v after %d attempts", err, calls)
	}
}

// TestEventsThroughScheduler: the real scheduler behind this server and
// api.Client.Events in front: a snapshot first, the run's anchors and
// progress, done once the state says so; after a delete the stream ends
// and Events returns nil.
func TestEventsThroughScheduler(t *testing.T) {
	store, err := ckpt.Open(ckpt.DefaultOptions(t.TempDir()).WithGCInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	sched, err := scheduler.New(store, scheduler.DefaultOptions().WithFamilies(nnfamily.New()).WithWorkers(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sched.Create(api.RunSpec{Preset: "quadratic", Name: "q", Steps: 200, Window: 16}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(sched, Options{}))
	defer srv.Close()
	c := api.NewClient(srv.URL, "")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	kinds := make(chan string, 4096)
	ended := make(chan error, 1)
	go func() {
		ended <- c.Events(ctx, "q", "", func(ev api.Event) error {
			kinds <- ev.Kind
			return nil
		})
	}()
	if k := <-kinds; k != api.EventSnapshot {
		t.Fatalf("first event %s", k)
	}
	// The run starts only now: every later event is seen.
	runCtx, stopRun := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- sched.Run(runCtx) }()
	defer func() {
		stopRun()
		<-ran
	}()
	seen := map[string]int{}
	for seen[api.EventDone] == 0 {
		select {
		case k := <-kinds:
			seen[k]++
		case <-ctx.Done():
			t.Fatalf("no done event; saw %v", seen)
		}
	}
	if st, _ := sched.Status("q"); st.State != "done" || seen[api.EventAnchor] < 200/16 || seen[api.EventProgress] == 0 {
		t.Errorf("state %s, events %v", st.State, seen)
	}
	if err := sched.Delete("q"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("Events after delete: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the stream did not end after the run was deleted")
	}
}
