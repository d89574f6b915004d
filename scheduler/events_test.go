package scheduler

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
)

// fakeStatuses is the statusFunc of broker tests: a run exists while it
// has an entry; its forward step tells snapshots apart.
type fakeStatuses struct {
	mu   sync.Mutex
	runs map[string]int
}

func (f *fakeStatuses) status(name string) (api.RunStatus, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.runs[name]
	return api.RunStatus{Name: name, State: ckpt.StateRunning, ForwardStep: n}, ok
}

func (f *fakeStatuses) set(name string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs[name] = n
}

func testBroker(kept, queue int) (*broker, *fakeStatuses) {
	f := &fakeStatuses{runs: map[string]int{"a": 0, "b": 0}}
	return newBroker(f.status, kept, queue, time.Millisecond), f
}

// next returns the next batch of sub, failing after a generous deadline
// (a guard against hangs, not a speed requirement).
func next(t *testing.T, sub *Subscription) ([]api.Event, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	evs, ok := sub.Next(ctx)
	if ctx.Err() != nil {
		t.Fatal("no events within a minute")
	}
	return evs, ok
}

func anchorEv(run string, step int) api.Event {
	return api.Event{Run: run, Kind: api.EventAnchor, Fields: map[string]string{"step": strconv.Itoa(step)}}
}

func steps(evs []api.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		if ev.Kind == api.EventSnapshot {
			fmt.Fprintf(&b, "snapshot(%s,%d) ", ev.Fields["why"], ev.Status.ForwardStep)
			continue
		}
		fmt.Fprintf(&b, "%s%s ", ev.Kind, ev.Fields["step"])
	}
	return strings.TrimSpace(b.String())
}

func TestBrokerSnapshotFirstThenEvents(t *testing.T) {
	b, f := testBroker(8, 8)
	b.publish(anchorEv("a", 1))
	f.set("a", 7)
	sub, err := b.subscribe("a", "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	b.publish(anchorEv("b", 99)) // another run's: not delivered
	b.publish(anchorEv("a", 2))
	evs, _ := next(t, sub)
	if got := steps(evs); got != "snapshot(connect,7) anchor2" {
		t.Fatalf("got %q", got)
	}
	// The snapshot's id is the cursor of what it reflects: resuming from
	// it gives the events after it.
	if evs[0].ID != b.id(1) || evs[1].ID != b.id(3) {
		t.Errorf("ids %s %s", evs[0].ID, evs[1].ID)
	}
	if _, err := b.subscribe("nope", ""); !isErr(err, ErrNotFound) {
		t.Errorf("unknown run: %v", err)
	}
	if _, ok := b.mu.runs["nope"]; ok {
		t.Error("a subscription to an unknown run left state behind")
	}
}

func TestBrokerCursorResume(t *testing.T) {
	b, _ := testBroker(8, 8)
	var ids []string
	for i := 1; i <= 5; i++ {
		b.publish(anchorEv("a", i))
		ids = append(ids, b.id(b.mu.seq))
	}
	sub, err := b.subscribe("a", ids[1]) // saw events 1 and 2
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	evs, _ := next(t, sub)
	if got := steps(evs); got != "anchor3 anchor4 anchor5" {
		t.Fatalf("resumed: %q", got)
	}
	b.publish(anchorEv("a", 6))
	evs, _ = next(t, sub)
	if got := steps(evs); got != "anchor6" {
		t.Fatalf("live: %q", got)
	}
}

// TestBrokerKeepsLatestProgress: a resumed subscriber gets the event log's
// events it missed and the latest progress only.
func TestBrokerKeepsLatestProgress(t *testing.T) {
	b, _ := testBroker(8, 8)
	b.publish(anchorEv("a", 1))
	cursor := b.id(b.mu.seq)
	progress := func(n int) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.publishLocked(b.runLocked("a"), api.Event{Run: "a", Kind: api.EventProgress, Status: &api.RunStatus{ForwardStep: n}})
	}
	progress(10)
	b.publish(anchorEv("a", 2))
	progress(20)
	progress(30)
	sub, err := b.subscribe("a", cursor)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	evs, _ := next(t, sub)
	if got := steps(evs); got != "anchor2 progress" || evs[1].Status.ForwardStep != 30 {
		t.Errorf("resumed: %q", got)
	}
	if len(b.mu.runs["a"].ring) != 3 {
		t.Errorf("kept %d events, want 3", len(b.mu.runs["a"].ring))
	}
}

func TestBrokerStaleCursorGetsSnapshot(t *testing.T) {
	b, f := testBroker(4, 4)
	first := ""
	for i := 1; i <= 10; i++ {
		b.publish(anchorEv("a", i))
		if i == 1 {
			first = b.id(b.mu.seq)
		}
	}
	f.set("a", 10)
	other, _ := testBroker(4, 4) // an earlier daemon: another boot id
	if other.boot == b.boot {
		t.Fatal("two brokers share a boot id")
	}
	for _, cursor := range []string{first, other.id(9), "garbage", b.id(11)} {
		sub, err := b.subscribe("a", cursor)
		if err != nil {
			t.Fatal(err)
		}
		evs, _ := next(t, sub)
		sub.Close()
		if got := steps(evs); got != "snapshot(cursor,10)" {
			t.Errorf("cursor %q: %q", cursor, got)
		}
	}
	// The oldest kept event's predecessor is still a valid cursor.
	sub, err := b.subscribe("a", b.id(6))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if evs, _ := next(t, sub); steps(evs) != "anchor7 anchor8 anchor9 anchor10" {
		t.Errorf("edge of the kept events: %q", steps(evs))
	}
}

func TestBrokerOverflowResyncs(t *testing.T) {
	b, f := testBroker(4, 4)
	slow, err := b.subscribe("a", "")
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast, err := b.subscribe("a", "")
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	next(t, fast) // its snapshot
	var fastSeen []api.Event
	// The slow subscriber never reads while 1000 events are published: the
	// publisher is not held back, the slow one's queue stays bounded, and
	// the fast one sees every event in order.
	for i := 1; i <= 1000; i++ {
		b.publish(anchorEv("a", i))
		if i%3 == 0 {
			evs, _ := next(t, fast)
			fastSeen = append(fastSeen, evs...)
		}
		slow.mu.Lock()
		n := len(slow.mu.queue)
		slow.mu.Unlock()
		if n > 4 {
			t.Fatalf("slow subscriber holds %d events, limit 4", n)
		}
	}
	evs, _ := next(t, fast)
	fastSeen = append(fastSeen, evs...)
	if len(fastSeen) != 1000 {
		t.Fatalf("fast subscriber saw %d events", len(fastSeen))
	}
	for i, ev := range fastSeen {
		if ev.Fields["step"] != strconv.Itoa(i+1) {
			t.Fatalf("event %d is %s", i, steps([]api.Event{ev}))
		}
	}
	f.set("a", 1000)
	evs, _ = next(t, slow)
	if got := steps(evs); got != "snapshot(overflow,1000)" {
		t.Fatalf("slow subscriber: %q", got)
	}
	if evs[0].ID != fastSeen[999].ID {
		t.Errorf("resync id %s, want the last event's %s", evs[0].ID, fastSeen[999].ID)
	}
	b.publish(anchorEv("a", 1001))
	if evs, _ := next(t, slow); steps(evs) != "anchor1001" {
		t.Errorf("after the resync: %q", steps(evs))
	}
}

func TestBrokerDeleteEndsStream(t *testing.T) {
	b, f := testBroker(8, 8)
	sub, err := b.subscribe("a", "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	next(t, sub)
	f.mu.Lock()
	delete(f.runs, "a")
	f.mu.Unlock()
	b.publish(api.Event{Run: "a", Kind: api.EventDeleted})
	evs, ok := next(t, sub)
	if !ok || steps(evs) != "deleted" {
		t.Fatalf("got %q %v", steps(evs), ok)
	}
	if evs, ok := next(t, sub); ok || len(evs) != 0 {
		t.Fatalf("stream goes on after deleted: %q", steps(evs))
	}
	// endAll ends the other streams.
	other, err := b.subscribe("b", "")
	if err != nil {
		t.Fatal(err)
	}
	next(t, other)
	b.endAll()
	if _, ok := next(t, other); ok {
		t.Error("stream goes on after endAll")
	}
}

func TestBrokerProgressCoalesced(t *testing.T) {
	f := &fakeStatuses{runs: map[string]int{"a": 0}}
	const interval = 20 * time.Millisecond
	b := newBroker(f.status, 8, 1024, interval)
	sub, err := b.subscribe("a", "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	next(t, sub)
	var calls atomic.Int64
	start := time.Now()
	const n = 2000
	for i := 1; i <= n; i++ {
		b.progress("a", func() api.RunStatus {
			calls.Add(1)
			st, _ := f.status("a")
			return st
		})
		f.set("a", i)
	}
	// The last progress is not lost: a progress event reflecting step n
	// arrives (the deadline in next only guards against a hang).
	var got []api.Event
	for len(got) == 0 || got[len(got)-1].Status.ForwardStep != n {
		evs, _ := next(t, sub)
		got = append(got, evs...)
		if len(got) == 0 {
			continue
		}
		if last := got[len(got)-1]; last.Kind != api.EventProgress {
			t.Fatalf("event %s", last.Kind)
		}
		// The publisher never waited for a progress event to go out: if
		// the last call was still pending, one more will come.
		if got[len(got)-1].Status.ForwardStep != n {
			b.progress("a", func() api.RunStatus { st, _ := f.status("a"); return st })
		}
	}
	elapsed := time.Since(start)
	// At most one event per interval, plus the first (not delayed).
	if limit := int(elapsed/interval) + 2; len(got) > limit {
		t.Errorf("%d progress events in %v, at most %d at one per %v", len(got), elapsed, limit, interval)
	}
	if int(calls.Load()) > len(got)+1 {
		t.Errorf("status computed %d times for %d events", calls.Load(), len(got))
	}
}

func TestParseEventLine(t *testing.T) {
	for _, tc := range []struct {
		line, kind string
		fields     map[string]string
	}{
		{"anchor segment=2 step=16 from=backward reason=window", "anchor",
			map[string]string{"segment": "2", "step": "16", "from": "backward", "reason": "window"}},
		{`failed step=3 reason="backward step 3 (segment 0): training loss is NaN"`, "failed",
			map[string]string{"step": "3", "reason": "backward step 3 (segment 0): training loss is NaN"}},
		{"deleted", "deleted", map[string]string{}},
		{`failed step=1 reason="a \"quoted\" word" after=x`, "failed",
			map[string]string{"step": "1", "reason": `a "quoted" word`, "after": "x"}},
	} {
		kind, fields, err := parseEventLine(tc.line)
		if err != nil || kind != tc.kind || fmt.Sprint(fields) != fmt.Sprint(tc.fields) {
			t.Errorf("%q: %s %v %v", tc.line, kind, fields, err)
		}
	}
	if _, _, err := parseEventLine(`failed reason="unterminated`); err == nil {
		t.Error("unterminated quote accepted")
	}
}

// TestSchedulerEventStream follows a real run: the first event is a
// snapshot, the event log's events arrive parsed, progress events show the
// frontier moving, and done comes last, after the state is stored.
func TestSchedulerEventStream(t *testing.T) {
	// Subscribed before the scheduler runs, so that no event is missed.
	opts := testOptions()
	opts.Events = &syncBuffer{}
	s, err := New(openStore(t, t.TempDir()), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Subscribe("none", ""); !isErr(err, ErrNotFound) {
		t.Fatalf("unknown run: %v", err)
	}
	if _, err := s.Create(api.RunSpec{Preset: "quadratic", Name: "q", Steps: 300, Window: 16}); err != nil {
		t.Fatal(err)
	}
	next, stop, err := s.Subscribe("q", "")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	runCtx, stopRun := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(runCtx) }()
	defer func() {
		stopRun()
		if err := <-ran; err != nil {
			t.Error(err)
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var kinds []string
	anchors, progress := 0, 0
	for done := false; !done; {
		evs, ok := next(ctx)
		if !ok {
			t.Fatalf("stream ended after %v", kinds)
		}
		for _, ev := range evs {
			kinds = append(kinds, ev.Kind)
			switch ev.Kind {
			case api.EventAnchor:
				anchors++
			case api.EventProgress:
				progress++
				if ev.Status.Name != "q" || ev.Status.ForwardStep < ev.Status.BackwardStep {
					t.Errorf("progress %+v", ev.Status)
				}
			case api.EventDone:
				done = true
				if ev.Fields["backward"] != "300" {
					t.Errorf("done fields %v", ev.Fields)
				}
				if st, _ := s.Status("q"); st.State != ckpt.StateDone {
					t.Errorf("done event before the state: %s", st.State)
				}
			}
		}
	}
	if kinds[0] != api.EventSnapshot || anchors < 300/16 || progress == 0 {
		t.Errorf("kinds %v", kinds)
	}
	// Pause and resume have no event log line, but are state events.
	if _, err := s.Pause("q"); err != nil {
		t.Fatal(err)
	}
	evs, _ := next(ctx)
	if evs[len(evs)-1].Kind != api.EventState || evs[len(evs)-1].Status.State != ckpt.StateDone {
		t.Errorf("pause of a done run: %q", steps(evs))
	}
	if err := s.Delete("q"); err != nil {
		t.Fatal(err)
	}
	for {
		evs, ok := next(ctx)
		if !ok {
			break
		}
		if evs[len(evs)-1].Kind == api.EventDeleted {
			if _, ok := next(ctx); ok {
				t.Error("stream goes on after the run was deleted")
			}
			break
		}
	}
}
