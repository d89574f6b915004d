package scheduler

import (
	"testing"

	"github.com/replay-sgd/replay/api"
)

// TestBrokerAllRuns: a daemon-wide subscriber gets the events of every
// run, a deletion included, without a snapshot; one that falls behind gets
// a marker (a snapshot with no run and no status) in place of what it
// missed; Close unregisters it and endAll ends it.
func TestBrokerAllRuns(t *testing.T) {
	b, _ := testBroker(8, 4)
	b.publish(anchorEv("a", 1)) // before subscribing: not delivered
	sub := b.subscribeAll()
	b.publish(anchorEv("a", 2))
	b.publish(anchorEv("b", 3))
	b.publish(api.Event{Run: "b", Kind: api.EventDeleted})
	evs, ok := next(t, sub)
	if got := steps(evs); !ok || got != "anchor2 anchor3 deleted" || evs[0].Run != "a" || evs[1].Run != "b" {
		t.Fatalf("daemon-wide events %q (%v), want anchor2 anchor3 deleted of runs a, b, b", got, ok)
	}
	for i := range 10 { // over the queue of 4
		b.publish(anchorEv("a", 10+i))
	}
	evs, ok = next(t, sub)
	if !ok || len(evs) == 0 || evs[0].Kind != api.EventSnapshot || evs[0].Run != "" || evs[0].Status != nil || evs[0].Fields["why"] != "overflow" {
		t.Fatalf("after an overflow: %+v (%v), want a snapshot marker with no run first", evs, ok)
	}
	sub.Close()
	b.mu.Lock()
	n := len(b.mu.all)
	b.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d daemon-wide subscribers after Close, want 0", n)
	}
	sub2 := b.subscribeAll()
	b.endAll()
	if evs, ok := next(t, sub2); ok {
		t.Fatalf("after endAll: %+v, want the end of the stream", evs)
	}
}
