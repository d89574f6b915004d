// Package web is replayd's live web view: one HTML page, one script and one
// style sheet, embedded in the binary with go:embed, so the page works
// offline (no CDN, no build step, no third-party code) and is versioned
// with the daemon that serves it.
//
// The page speaks only the API of package server: GET /v1/runs and the
// daemon-wide stream GET /v1/events for the runs list (runs created,
// deleted, progressing or failing elsewhere show without a reload), GET
// /v1/runs/{name}/events for the live updates of the run shown (both read
// with fetch, not EventSource, so that they can carry the Authorization
// header), GET /v1/runs/{name}/series for the bucketed curves (smoothed by
// the server when smoothing is on: the page computes none of the values
// it draws),
// and POST pause/resume/reset for the controls.
//
// Invariants:
//   - Handler serves only the embedded files, under the prefix it is
//     mounted at (/ui/ in replayd); they hold no run data, so they need
//     no authorisation. Every data request the page makes goes through
//     the API and its authorisation: a bearer token read from the URL
//     fragment (#token=…, never sent to a server, kept in sessionStorage)
//     or, behind `replayctl ui`, the session cookie of that proxy.
//   - State-changing requests carry the header X-Replay-CSRF: 1, which a
//     cross-site form or image cannot send; `replayctl ui` refuses POST
//     and DELETE without it.
//   - Coarse buckets (wider than 64 steps) are asked for on the server's
//     block grid (width a multiple of 64, from ≡ 1 mod 64), which it
//     answers from its block summaries in O(buckets) (server/series_blocks.go).
//   - Live updates are incremental: after a progress event the page asks
//     only for the buckets from the last one it holds (forward) or from
//     the backward frontier it knew (backward: steps past the frontier may
//     complete out of order); an anchor event or a frontier that moved
//     back refetches the backward series.
package web
