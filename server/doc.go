// Package server is replayd's HTTP/JSON API: the routes under /v1/ plus
// /healthz and /metrics, in front of a Backend (the scheduler).
//
// Invariants:
//   - Every answer that is not a success is a one-line JSON api.Error with a
//     4xx or 5xx status: 400 for malformed requests and scheduler.ErrInvalid,
//     404 for unknown routes and scheduler.ErrNotFound, 405 for a known path
//     with the wrong method, 409 for scheduler.ErrConflict, 413 for a body
//     over Options.MaxBodyBytes, 401 without the bearer token when one is
//     set, and 500 for anything else (logged, never the daemon's death: a
//     panicking handler is recovered and answered with a 500).
//   - The server holds no run state of its own. Every request is translated
//     into one Backend call, so the scheduler's consistency rules are the
//     only ones; a failed or aborted request changes nothing.
//   - Trajectories are streamed (application/x-ndjson, one api.Point per
//     line) with periodic flushes; memory per request does not grow with
//     the number of points. If the backend fails after the first line was
//     sent, a last line {"error": "..."} says why and the connection is
//     aborted, so the client sees a truncated stream rather than a short one
//     that looks complete.
package server
