package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/replay-sgd/replay/api"
)

// EventSource is the optional capability of a Backend that serves GET
// /v1/runs/{name}/events (*scheduler.Scheduler has it); a Backend without
// it answers that route with 404. It is a separate interface so that
// backends that do not stream (test fakes) need not implement it.
type EventSource interface {
	// Subscribe follows the events of a run after cursor ("" for none).
	// next blocks until there are events, returns them in order, and
	// returns false when the stream has ended or ctx is done; stop
	// unregisters and may be called more than once. The error wraps
	// api.ErrNotFound for an unknown run. next must never make the
	// backend wait for the caller: a slow reader gets fewer, coarser
	// events (snapshots), never a blocked scheduler.
	Subscribe(name, cursor string) (next func(context.Context) ([]api.Event, bool), stop func(), err error)
}

// DefaultHeartbeat is how often an idle event stream gets a comment line,
// so that proxies and clients see a live connection.
const DefaultHeartbeat = 15 * time.Second

// events streams a run's events as Server-Sent Events: "id:", "event:" (the
// kind) and "data:" (the api.Event as one line of JSON) per event; a
// comment line every heartbeat when idle. The cursor is the Last-Event-ID
// header or ?since=. The stream ends when the client goes, when the run is
// deleted (after its "deleted" event) and when the backend stops.
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	es, ok := s.b.(EventSource)
	if !ok {
		writeError(w, http.StatusNotFound, "this daemon has no event stream")
		return
	}
	cursor := r.Header.Get("Last-Event-ID")
	if cursor == "" {
		cursor = r.URL.Query().Get("since")
	}
	next, stop, err := es.Subscribe(r.PathValue("name"), cursor)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer stop()

	s.stream(w, r, next, nil, nil)
}

// stream writes the events next returns as Server-Sent Events, after the
// events of first (if any), until next ends, the client goes or a write
// fails; expand, if not nil, rewrites each batch before it is written.
func (s *server) stream(w http.ResponseWriter, r *http.Request, next func(context.Context) ([]api.Event, bool), first func() []api.Event, expand func([]api.Event) []api.Event) {
	// No deadline to lift: net/http clears the read deadline when the
	// request body is done (replayd's ReadTimeout does not cut streams:
	// TestEventStreamHeartbeatOutlivesReadTimeout), and replayd sets no
	// write timeout.
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	if first != nil {
		for _, ev := range first() {
			appendEvent(&buf, ev)
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return
		}
	}
	if err := rc.Flush(); err != nil {
		return
	}

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	batches := make(chan []api.Event)
	go func() {
		defer close(batches)
		for {
			evs, ok := next(ctx)
			if !ok {
				return
			}
			select {
			case batches <- evs:
			case <-ctx.Done():
				return
			}
		}
	}()
	beat := time.NewTicker(s.heartbeat)
	defer beat.Stop()
	for {
		select {
		case evs, ok := <-batches:
			if !ok {
				return
			}
			if expand != nil {
				evs = expand(evs)
			}
			buf.Reset()
			for _, ev := range evs {
				appendEvent(&buf, ev)
			}
			if _, err := w.Write(buf.Bytes()); err != nil {
				return
			}
		case <-beat.C:
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
				return
			}
		case <-ctx.Done():
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		beat.Reset(s.heartbeat)
	}
}

// appendEvent writes one SSE event. JSON without HTML escaping is one line
// (encoding/json escapes newlines in strings), so one data line suffices.
func appendEvent(buf *bytes.Buffer, ev api.Event) {
	if ev.Status != nil {
		st := finiteStatus(*ev.Status)
		ev.Status = &st
	}
	if ev.ID != "" {
		buf.WriteString("id: ")
		buf.WriteString(ev.ID)
		buf.WriteString("\n")
	}
	buf.WriteString("event: ")
	buf.WriteString(ev.Kind)
	buf.WriteString("\ndata: ")
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil { // cannot happen: finite values only
		buf.WriteString(`{"kind":"error"}` + "\n")
	}
	buf.WriteString("\n") // Encode ended the data line; a blank line ends the event
}
