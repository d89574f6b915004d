// Package server is replayd's HTTP/JSON API: the routes under /v1/ plus
// /healthz and /metrics, in front of a Backend (the scheduler).
//
// Routes (types from package api; a run name is one path segment):
//
//	GET    /healthz                         200 "ok", or 503 "unhealthy: <the store's or engine's problem>"
//	GET    /metrics                         Prometheus text format
//	GET    /v1/runs                         api.RunList
//	POST   /v1/runs                         api.RunSpec → 201 api.RunStatus
//	GET    /v1/runs/{name}                  api.RunStatus
//	DELETE /v1/runs/{name}                  204
//	POST   /v1/runs/{name}/pause            api.RunStatus
//	POST   /v1/runs/{name}/resume           api.RunStatus
//	POST   /v1/runs/{name}/reset            api.ResetRequest → api.RunStatus
//	GET    /v1/runs/{name}/trajectory       ?kind=forward|backward|both (both)
//	                                        &from=N (0) &to=N (0: latest) &every=N (1)
//	                                        → application/x-ndjson, one api.Point a line
//	GET    /v1/runs/{name}/params           ?kind=forward|backward&step=N
//	                                        → safetensors (float32, the model's tensor names)
//	GET    /v1/runs/{name}/batches          → .npy int64 [steps, batch]
//	POST   /v1/runs/{name}/verify           api.VerifyReport
//	GET    /v1/runs/{name}/events           Last-Event-ID: ID or ?since=ID
//	                                        → text/event-stream of api.Event
//	GET    /v1/events                       → text/event-stream of api.Event of every
//	                                        run, after a listing (events_all.go)
//	GET    /v1/runs/{name}/series           ?kind=forward|backward &from=N (1) &to=N
//	                                        &buckets=N (1000) or &width=N
//	                                        &smooth=none|ema:K|ma:N
//	                                        → min, max, last per bucket (series.go),
//	                                        of the smoothed values too
//	                                        (series_smooth.go)
//	GET    /  and  /ui/…                    the web view (package web), without the
//	                                        token: it holds no data and asks for it
//
// JSON bodies are decoded strictly (unknown fields are errors) whatever the
// Content-Type, so `curl -d '{"preset":"quadratic"}'` works. JSON has no NaN
// or ±Inf: such values (a regression's accuracy, a diverged loss) are
// written as null; all other floats round-trip bitwise.
//
// Invariants:
//   - Every answer that is not a success is a one-line JSON api.Error with a
//     4xx or 5xx status: 400 for malformed requests and api.ErrInvalid,
//     404 for unknown routes and api.ErrNotFound, 405 for a known path
//     with the wrong method, 409 for api.ErrConflict, 413 for a body
//     over Options.MaxBodyBytes, 401 without the bearer token when one is
//     set, 503 with Retry-After for api.ErrBusy (503 without it when the
//     backend is stopping), and 500 for anything else (logged, never the
//     daemon's death: a panicking handler is recovered and answered with a
//     500).
//   - The server owns its error mapping: it knows the api sentinels, not
//     the backend's package (a backend's errors match api's through
//     errors.Is; the scheduler's sentinels do). It imports neither the
//     scheduler nor a model package: parameters reach it as named tensors
//     (Backend.Tensors), whatever the model family.
//   - Browsers: a POST or DELETE a browser marks as cross-origin
//     (Sec-Fetch-Site, Origin) is refused with 403, and without a token so
//     is any request whose Host is a DNS name other than localhost (DNS
//     rebinding); see origin.go. The web view under /ui/ is served without
//     the token; everything it shows comes from the routes above.
//   - The server holds no run state of its own. Every request is translated
//     into one Backend call, so the scheduler's consistency rules are the
//     only ones; a failed or aborted request changes nothing. The one
//     exception is a cache of what cannot change: summaries of blocks of
//     stored forward points (series_blocks.go), which make answers
//     cheaper, never different.
//   - Trajectories are streamed (application/x-ndjson, one api.Point per
//     line) with periodic flushes; memory per request does not grow with
//     the number of points. If the backend fails after the first line was
//     sent, a last line {"error": "..."} says why and the connection is
//     aborted, so the client sees a truncated stream rather than a short one
//     that looks complete.
//   - Event streams (Server-Sent Events, when the Backend is an
//     EventSource): the first event is a snapshot of the run's status
//     unless the cursor resumes a stream; a comment line every
//     Options.Heartbeat keeps an idle stream alive; the stream ends when the
//     client goes, after the run's "deleted" event, and when the backend
//     stops. A slow client costs the scheduler nothing: it gets a resync
//     snapshot instead of the events it could not take.
package server
