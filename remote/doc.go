// Package remote computes backward jobs on worker processes through NATS
// JetStream (DESIGN.md §3): Executor is the daemon's side, a
// scheduler.RemoteExecutor; Worker is `replayd worker`'s; Embedded starts
// nats-server in-process.
//
// The wire, all on one NATS server with JetStream:
//
//   - Stream REPLAY_JOBS (work-queue retention, subjects
//     replay.jobs.<fingerprint>.<data-hash>.<run-hash>): one message per
//     job, a reference (the scheduler.Job, the key of its run config, the
//     name of its input vector) — never a vector. A run's jobs are pulled
//     from the durable consumer "workers-<fingerprint>-<data-hash>" (made
//     by the daemon before the run's first job), so a worker of another
//     machine kind never sees a job of a run it could not compute bitwise,
//     and a worker binds to it only after the data set it loaded itself
//     hashes to the run's (ckpt.RunConfig.DataHash, family.DataHasher): a
//     worker whose data differs refuses the run (one log line, listed in
//     its announcements) and never receives its jobs, which go to the
//     other workers, or stay queued while every worker refuses the run
//     (logged by the daemon, metric replay_remote_runs_refused).
//     Executor.Waiting says why a run's jobs wait — no live worker, none of
//     its fingerprint, or every one refusing it — for RunStatus.Waiting and
//     `replayctl workers` (metric replay_remote_runs_waiting). One
//     message per fetch (a small prefetch: a pre-buffered message goes
//     stale past AckWait), from the bound consumers in turn, explicit
//     acks, AckWait and MaxDeliver bounding redelivery; a long job sends
//     InProgress every AckWait/3.
//     A run of fingerprint any (api.FingerprintAny, `replayctl run start
//     --fingerprint any`) has the token "any" in place of the daemon's
//     fingerprint, and its consumer "workers-any-<data-hash>" is bound by
//     workers of every fingerprint (the data hash still must match); while
//     such a run is open, every live worker counts in Slots.
//   - Stream REPLAY_RESULTS (work queue, replay.results.<run-hash>), pulled
//     by the daemon's durable consumer and handled resultHandlers at once
//     (the results of one job in order): the outcome of a job and the name of its θ̃ in the object
//     store, or θ̃ itself when it is at most inlineMax (64 KiB: a small
//     model's result is one message, not an object put, get and delete).
//   - Object store bucket replay-vectors: input vectors (anchor starts,
//     forward checkpoints) named by their content hash, put once and cached
//     by workers; result vectors named by job identity and content hash,
//     deleted by the daemon once handed to the backward loop.
//   - KV bucket replay-runs: run configurations keyed by content hash.
//   - Core subjects replay.cancel (a loop's Cancel: generations below are
//     unwanted), replay.workers (each worker's announcement, every
//     heartbeatEvery: name, fingerprint, slots, jobs done, runs refused)
//     and replay.runs (the daemon's directory of open runs — run, config
//     key, data hash, consumer — every heartbeatEvery and when a run
//     opens; core subscriptions survive a server restart).
//
// Spot checks: the daemon re-executes locally (scheduler.Computer, its
// own inputs) the first result of each worker process (one restarted
// under its name is checked again; results of the worker handled
// meanwhile wait for its verdict: results are handled concurrently),
// every result of a quarantined worker and a share Config.VerifyShare of
// the others, chosen by a hash of the job identity; a result that
// differs in any bit
// quarantines its worker, and the daemon's own result is delivered in its
// place (memo jobs too: a memoized evaluator's bits depend on the anchor
// and the step alone, so the daemon's own memo gives the worker's; not a
// run's of fingerprint any, below). The results a worker delivered unchecked before its
// quarantine (remembered as job and digest, per open run) are then
// re-executed too: if one differs, a stored number came from the faulty
// worker, and its run fails with the worker and the step in the reason
// (the daemon's loop has committed it, and the store is the scheduler's to
// write). A run whose loop has closed is not rechecked.
//
// Runs of fingerprint any are not spot checked: a worker of another BLAS
// kernel or CPU computes other last bits honestly, so a bitwise check would
// quarantine it, and how far those rounding differences grow along a chain
// of W (or, for full, n) operator applications depends on the run's
// contraction, so no fixed tolerance would both spare honest workers and
// catch wrong ones. Their status says "not bitwise" (RunStatus.Bitwise
// false). A worker quarantined by a bitwise run's check is not trusted on
// them either: its results there are recomputed by the daemon.
//
// Clean-up: results are deleted once handed to the loop; when a loop
// closes, its jobs still queued are purged and the input vectors no other
// open loop uses are deleted. A daemon starting purges the job stream and
// deletes its consumers (its loops start new epochs: older jobs are stale;
// workers keep their consumer handles, which are by name).
//
// Invariants: Badger stays the only store of record and the daemon its
// only writer — workers read only the data set files and what NATS gives
// them. A worker computes with scheduler.Runner, the in-process pool's
// code, so a result is bitwise the pool's. A job message is acked only
// after its result is published (JetStream's ack of the publish), so a
// worker killed at any point loses nothing: the job is redelivered after
// AckWait. A result may thus arrive twice; the executor accepts one per
// job identity and counts the others (Stats.Duplicates), and the loop
// drops stale generations (the scheduler's seam).
package remote
