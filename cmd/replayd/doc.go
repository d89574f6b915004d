// replayd is built as a group of components, each a Run(ctx) error (the
// Prometheus run.Group pattern on errgroup): the scheduler, the HTTP server
// and the signal handler. The first to return — a signal, a listener that
// dies, a scheduler error — cancels the others; the store, opened before the
// group and closed after it, outlives them all, so everything the scheduler
// acknowledged is on disk when the process exits.
//
// Start-up order and its reasons:
//  1. flags, then the logger (so every later failure is logged or printed
//     as one line);
//  2. a live socket at the listen path means another daemon: refuse with
//     "replayd already running on …" before touching the store; a dead one
//     (a crashed daemon's) is removed;
//  3. the store (its lock is the second guard against two daemons on one
//     data directory), the scheduler, the metrics registry;
//  4. the listener, then the group.
package main
