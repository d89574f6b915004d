// Command replayd is the replay daemon: it trains runs forward, computes
// their backward iterates at bounded cost and serves the HTTP/JSON API of
// package server on a unix socket (default <data-dir>/replayd.sock, mode
// 0600) or a loopback TCP address (any address with a bearer token).
//
//	replayd [--data-dir DIR] [--listen ADDR] [--window N] [--workers N]
//	        [--log-level L] [--log-format text|json] [--run-preset NAME]
//	        [--auth-token T] [--max-lag N] [--dataset-dir DIR] [--shutdown-timeout D]
//	        [--memory-limit MiB] [--max-run-memory SIZE] [--max-run-disk SIZE] [--query-slots N]
//	        [--min-free-disk SIZE] [--shutdown-grace D] [--auth-token-file FILE]
//	replayd repair --data-dir DIR [--dataset-dir DIR] [--torch-model NAME=FILE]… [--model-cmd NAME=CMD]…
//
// A full disk: below --min-free-disk (default 256 MiB) writes are refused
// before they start, and an ENOSPC of the file system is taken the same
// way; the run pauses (status state "paused", reason "disk full: N MiB
// free, need M MiB …", state events on its stream, /healthz 503) and goes
// on by itself once space returns, or at once on `replayctl resume` (which
// is refused with the reason while the write would still not fit). Any
// other write failure of the store (EIO, a read-only file system) fails
// the run with the reason and turns /healthz to 503 naming it until the
// same kind of write succeeds; `replayctl resume` revives the run from
// what the store holds. A store directory deleted or replaced under the
// daemon stops every write (the runs fail with the reason, /healthz 503);
// SIGTERM then exits after at most --shutdown-grace for the store's close. The data directory is made 0700
// and the store's files 0600; --auth-token-file keeps the token out of
// /proc/PID/cmdline.
//
// A store that does not look like the one ckpt last wrote (a missing or cut
// MANIFEST, a vanished table or memtable log, a value log Badger would cut at
// open, an older value log gone or cut) is refused at start with one line
// naming the file; nothing on disk changes. `replayd repair` (the daemon
// stopped) copies the store to <data-dir>/store.backup-<UTC time>, opens it
// in salvage mode (a damaged newest value log is kept whole rather than
// cut; a lost or damaged MANIFEST is rebuilt from the tables that read
// back), recomputes missing or damaged checkpoints bitwise from the batch
// log, verifies every run, and exits non-zero naming the runs that still
// have problems (a lost value log holding θ0 cannot be recomputed: restore
// the backup or a copy).
//
// Admission control: every run is checked at creation (and at start) against
// a per-run memory and disk limit and the store's largest value (4 bytes per
// parameter in one value-log file); one over them is refused with one line
// naming the estimate and the limit. The defaults come from the machine when
// the daemon starts (limits.go): memory, half the machine's, at most
// 4 × --memory-limit but at least 1 GiB; disk, half the free space of the
// data directory. A stored run that cannot start is failed with its reason;
// the daemon serves the others (`replayctl resume` revives it).
//
// The daemon is a group of components, each a Run(ctx) error (the
// Prometheus run.Group pattern on errgroup): the scheduler, the HTTP server
// and the signal handler. The first to return — a signal, a listener that
// dies, a scheduler error — cancels the others. The store is opened before
// the group and closed after it (its value-log GC runs on the store's own
// timer and stops with Close), so everything the scheduler acknowledged is on
// disk when the process exits; the HTTP component returns only when no
// handler can touch the store any more.
//
// Start-up order and its reasons:
//  1. flags, then the logger (so every later failure is logged or printed
//     as one line), then signals are caught;
//  2. a live socket at the listen path means another daemon: refuse with
//     "replayd already running on …" before touching the store; a dead one
//     (a crashed daemon's) is removed;
//  3. the store (its lock is the second guard against two daemons on one
//     data directory), the scheduler, the metrics registry, the run of
//     --run-preset if the store holds none;
//  4. the listener, then the group.
package main
