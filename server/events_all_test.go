package server

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/nnfamily"
	"github.com/replay-sgd/replay/scheduler"
)

var _ AllEventSource = (*scheduler.Scheduler)(nil)

// fakeAll is a Backend with a daemon-wide stream the test drives.
type fakeAll struct {
	*fakeBackend
	evs     chan []api.Event // closed: the stream ends
	stopped chan struct{}
}

func (f *fakeAll) SubscribeAll() (func(context.Context) ([]api.Event, bool), func()) {
	next := func(ctx context.Context) ([]api.Event, bool) {
		select {
		case evs, ok := <-f.evs:
			return evs, ok
		case <-ctx.Done():
			return nil, false
		}
	}
	return next, func() {
		select {
		case <-f.stopped:
		default:
			close(f.stopped)
		}
	}
}

// readEvents reads the stream's events (data lines) until stop holds.
func readEvents(t *testing.T, r *sseReader, stop func(api.Event) bool) []api.Event {
	t.Helper()
	var out []api.Event
	_, ok := r.until(func(line string) bool {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			return false
		}
		var ev api.Event
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		out = append(out, ev)
		return stop(ev)
	})
	if !ok {
		t.Fatalf("stream ended after %+v", out)
	}
	return out
}

func kinds(evs []api.Event) string {
	var b []string
	for _, ev := range evs {
		s := ev.Kind + ":" + ev.Run
		if ev.Status != nil {
			s += "+" + ev.Status.State
		}
		b = append(b, s)
	}
	return strings.Join(b, " ")
}

// TestAllEventsWire: GET /v1/events starts with a listing (a snapshot per
// run, then synced), passes on the events of every run with their status
// attached where they have none, sends the listing again after an overflow
// marker, and unsubscribes when the client goes.
func TestAllEventsWire(t *testing.T) {
	f := &fakeAll{fakeBackend: newFake(), evs: make(chan []api.Event, 8), stopped: make(chan struct{})}
	f.runs["a"] = api.RunStatus{Name: "a", State: "running", Steps: 10}
	f.runs["b"] = api.RunStatus{Name: "b", State: "paused", Steps: 10}
	srv := httptest.NewServer(New(f, Options{}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	r := openStream(t, ctx, srv.URL+"/v1/events")
	if ct := r.resp.Header.Get("Content-Type"); r.resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("GET /v1/events: %d %s", r.resp.StatusCode, ct)
	}
	synced := func(ev api.Event) bool { return ev.Kind == EventSynced }
	if got := kinds(readEvents(t, r, synced)); got != "snapshot:a+running snapshot:b+paused synced:" {
		t.Fatalf("listing %q", got)
	}
	// A run created meanwhile: its created event carries its status.
	f.mu.Lock()
	f.runs["c"] = api.RunStatus{Name: "c", State: "running", Steps: 5}
	delete(f.runs, "b")
	f.mu.Unlock()
	f.evs <- []api.Event{{ID: "x-7", Run: "c", Kind: api.EventCreated}, {ID: "x-8", Run: "b", Kind: api.EventDeleted}}
	if got := kinds(readEvents(t, r, func(ev api.Event) bool { return ev.Kind == api.EventDeleted })); got != "created:c+running deleted:b" {
		t.Fatalf("live events %q, want created:c+running deleted:b", got)
	}
	f.evs <- []api.Event{{ID: "x-20", Kind: api.EventSnapshot, Fields: map[string]string{"why": "overflow"}}}
	evs := readEvents(t, r, synced)
	if got := kinds(evs); got != "snapshot:a+running snapshot:c+running synced:" || evs[0].Fields["why"] != "overflow" {
		t.Fatalf("after an overflow %q %v, want the listing again", got, evs[0].Fields)
	}
	cancel()
	waitClosed(t, f.stopped, "unsubscribed after the client went")

	// A backend without the capability: 404 in one line.
	h := newHarness(t, Options{})
	if a := h.do("GET", "/v1/events", nil); a.code != 404 || strings.Count(string(a.body), "\n") != 1 {
		t.Errorf("GET /v1/events without the capability: %d %s", a.code, a.body)
	}
}

// TestAllEventsThroughScheduler: the real scheduler's daemon-wide stream
// shows a run created through the API after the client connected, its
// progress, its end and its deletion.
func TestAllEventsThroughScheduler(t *testing.T) {
	store, err := ckpt.Open(ckpt.DefaultOptions(t.TempDir()).WithGCInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	sched, err := scheduler.New(store, scheduler.DefaultOptions().WithFamilies(nnfamily.New()).WithWorkers(1))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- sched.Run(runCtx) }()
	defer func() {
		stopRun()
		<-ran
	}()
	srv := httptest.NewServer(New(sched, Options{}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	r := openStream(t, ctx, srv.URL+"/v1/events")
	if got := kinds(readEvents(t, r, func(ev api.Event) bool { return ev.Kind == EventSynced })); got != "synced:" {
		t.Fatalf("listing of an empty daemon %q", got)
	}
	c := api.NewClient(srv.URL, "")
	if _, err := c.CreateRun(ctx, api.RunSpec{Preset: "quadratic", Name: "q", Steps: 100, Window: 16}); err != nil {
		t.Fatal(err)
	}
	evs := readEvents(t, r, func(ev api.Event) bool { return ev.Kind == api.EventDone })
	seen := map[string]int{}
	for _, ev := range evs {
		seen[ev.Kind]++
		if ev.Run != "q" || ev.Status == nil || ev.Status.Name != "q" {
			t.Fatalf("event %+v: want run q with its status", ev)
		}
	}
	if seen[api.EventCreated] != 1 || evs[0].Kind != api.EventCreated || seen[api.EventAnchor] == 0 {
		t.Fatalf("events of q %v (first %s), want created first, anchors, done", seen, evs[0].Kind)
	}
	if err := sched.Delete("q"); err != nil {
		t.Fatal(err)
	}
	readEvents(t, r, func(ev api.Event) bool { return ev.Kind == api.EventDeleted && ev.Run == "q" })
}
