package server

import (
	"context"
	"net/http"

	"github.com/replay-sgd/replay/api"
)

// AllEventSource is the optional capability of a Backend that serves the
// daemon-wide stream GET /v1/events (*scheduler.Scheduler has it); a
// Backend without it answers that route with 404.
type AllEventSource interface {
	// SubscribeAll follows the events of every run from now on, with no
	// snapshot. next is as in EventSource.Subscribe; after an overflow it
	// returns, in place of the events the caller missed, one snapshot
	// event with no run and no status. stop may be called more than once.
	SubscribeAll() (next func(context.Context) ([]api.Event, bool), stop func())
}

// EventSynced is the kind of the event of GET /v1/events that ends a
// listing: the snapshot events before it are every run there is.
const EventSynced = "synced"

// allEvents streams the events of every run (GET /v1/events), for the
// runs list of the web view: first one "snapshot" event per run (why
// connect) and a "synced" event, then every event of every run as the
// run's own stream has it (progress included) — with the run's status
// attached where the event has none (created, anchor, done, failed…), so
// that a reader keeps a list of runs from this stream alone. After an
// overflow the listing is sent again (snapshots why overflow, then
// synced); a reader drops the runs a listing does not name. There is no
// resumption: Last-Event-ID is ignored and a reconnection starts with a
// listing, which is what a resumption would need to send anyway.
func (s *server) allEvents(w http.ResponseWriter, r *http.Request) {
	es, ok := s.b.(AllEventSource)
	if !ok {
		writeError(w, http.StatusNotFound, "this daemon has no daemon-wide event stream")
		return
	}
	// Subscribe before listing: an event is either reflected in the
	// listing or delivered after it (or both: it carries a status).
	next, stop := es.SubscribeAll()
	defer stop()
	listing := func(why string) []api.Event {
		runs := s.b.List()
		evs := make([]api.Event, 0, len(runs)+1)
		for _, st := range runs {
			evs = append(evs, api.Event{Run: st.Name, Kind: api.EventSnapshot, Status: &st, Fields: map[string]string{"why": why}})
		}
		return append(evs, api.Event{Kind: EventSynced})
	}
	expand := func(evs []api.Event) []api.Event {
		out := make([]api.Event, 0, len(evs))
		for _, ev := range evs {
			switch {
			case ev.Kind == api.EventSnapshot && ev.Run == "":
				out = append(out, listing(ev.Fields["why"])...)
				continue
			case ev.Status == nil && ev.Kind != api.EventDeleted:
				if st, err := s.b.Status(ev.Run); err == nil {
					ev.Status = &st
				}
			}
			out = append(out, ev)
		}
		return out
	}
	s.stream(w, r, next, func() []api.Event { return listing("connect") }, expand)
}
