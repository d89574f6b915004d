// Command replayctl controls replayd: it starts runs, shows their status,
// moves backward anchors, streams trajectories, exports parameters and batch
// logs for PyTorch and NumPy, and plots forward against backward training.
// `replayctl ui` serves the daemon's web view to a browser through a
// loopback proxy guarded by a one-time link (see ui.go).
//
// Invariants:
//   - It speaks only replayd's HTTP API (package api); it never opens the
//     store. `ui` forwards the browser's requests to that API unchanged
//     except for the credentials (its cookie out, the daemon's token in).
//   - Every failure is one line on stderr and a non-zero exit: 2 for a bad
//     command line, 1 for everything else (daemon not running, unknown run,
//     a step out of range, a file that cannot be written). Arguments are
//     checked before any request that changes the daemon, so a rejected
//     command changes nothing.
//   - Global flags (--addr, --token, -o) are accepted before or after the
//     command name.
//   - Query output (table, json, csv) goes to stdout; progress to stderr or
//     the terminal. Trajectories are streamed: memory does not grow with the
//     number of points.
//   - Exports are written to a temporary file next to the target, checked by
//     reading them back, then renamed: a failed export leaves no partial file.
package main
