// Package scheduler runs replay's runs: for each run a forward trainer and
// a stream of backward jobs computed by a bounded worker pool, with anchor
// resets (periodic, manual, adaptive), divergence detection and resumption.
// It is what replayd exposes over HTTP.
//
// # Run lifecycle
//
// Create resolves an api.RunSpec (Resolve: preset, then explicit fields,
// then defaults; every problem reported in one ErrInvalid error; the model's
// fields are checked and its size counted by its family, family.Size,
// never by building it),
// checks it against the admission limits (below), loads the data set, draws
// θ0 and stores the run (ckpt.CreateRun: checkpoint 0 and anchor segment
// 0 = (0, θ0, "init")) with its configured resets pending. A refused spec
// changes nothing in the store.
// States: running → done, or failed (divergence, store error, or a failure
// to start); running ⇄ paused by request. A reset of a done run makes it
// running again until the recomputed iterates are stored.
//
// A run that cannot start — its records cannot be read, it is over the
// limits, its data set cannot be loaded — or whose write the store failed
// (ckpt.ErrWrite) is failed with FailedStep 0 and
// the reason, and the others go on: New never fails for one run, so the
// daemon never crash-loops on its own store. Resume revives such a run once
// its cause is gone (records, limits and data set are checked again). A run
// that failed while computing (FailedStep ≥ 1: divergence, a refused
// record at a step) stays failed: it would fail the same way again.
//
// # Admission control
//
// Before a run is stored or started, its needs are estimated from its
// configuration alone (admission.go): memory — the parameter vectors of the
// bounds below, every goroutine's scratch, the memo, the batch log's epochs,
// the data set — and disk — checkpoints every checkpoint_every, the batch
// log, three metrics records per step, anchors. A run whose model exceeds
// Options.MaxParams (one parameter vector must fit one store value), or whose
// estimate exceeds MaxRunMemory or MaxRunDisk, is refused with ErrTooLarge
// (an ErrInvalid) and one line naming the estimate, its largest part and the
// limit. The estimate bounds what the run holds at once, not the collector's
// headroom or Badger's write amplification.
//
// # Queries
//
// Params and Verify recompute (forward from a checkpoint, backward from an
// anchor, every checkpoint interval) in the run's own environment while it
// computes, else in a new one; the batch log is never reloaded. Every such
// recomputation holds one of Options.QuerySlots slots; a query that finds
// them all taken fails at once with ErrBusy (the server's 503 with
// Retry-After), so queries never take more than QuerySlots cores from
// training. Stored iterates (checkpoints, kept backward iterates) need no
// slot.
//
// Run(ctx) starts every running run and returns when ctx is done, after
// every run has stopped: jobs in flight are cancelled (replay's evaluators
// check the context every few applications and return its error, so this
// takes milliseconds), results
// that continue the frontier are written, and the state on disk describes
// exactly what is stored. A later Run resumes each running run from its
// last committed step: the trainer from the nearest checkpoint ≤ ForwardStep
// replayed with the logged batches, the backward loop from the stored
// frontier under the stored anchors (θ̃ at the frontier is recomputed).
// Every stored number is a pure function of the run's configuration — no
// map order, timing or worker count reaches a stored value — so a resumed
// run is bitwise identical to an uninterrupted one (TestResumeBitwise).
//
// # Forward trainer
//
// Step n applies the family's operator (the optimizer's step) with batch n of the run's
// sampler (Family.Sampler, a pure function of n, batch and seed). Steps are logged in chunks (batch, metrics, state in one
// ckpt.AppendForward); a checkpoint is stored every CheckpointEvery steps
// and at the last step. Metrics: parameter norm and distance to the
// previous iterate every step; training loss (fixed evaluation subset of
// the training split), test loss and accuracy (fixed test subset, both of
// eval_size, the family's Measurer) every eval_every steps and at the last
// step, NaN elsewhere.
//
// # Backward jobs
//
// Every logged step n > backward_from yields a Job: a plain value (run,
// generation, segment, anchor step, step, strategy, trial side, where the
// chain starts, whether to use the memo and to measure losses; no pointers,
// no channels, msgpack-serialisable), and so is its Result (θ̃ and the
// metrics). What a job reads besides itself — the anchor start, a forward
// checkpoint for sliding windows — comes through JobInputs. The backward
// loop of a run is one goroutine that hands jobs in step order to an
// Executor through its Queue and commits results in step order. The
// executor is the in-process pool: Options.Workers goroutines
// (Scheduler.worker) take jobs from one unbuffered channel, find the job's
// run by name and epoch, and keep per run an operators clone, a measurer and
// scratch (and, for memo, the run's memoized evaluators) — or, when
// Options.Executor is set, a RemoteExecutor (package remote: workers over
// NATS JetStream), whose workers compute with Runner, the pool's own code
// (remote.go); the loops' pacing then follows its Slots. Results arrive
// out of order into a reorder buffer and are accounted by job identity
// (JobID: run, generation, segment, step, side), never by counters: a
// result whose job is not in flight (a duplicate, or of an earlier process)
// is dropped, and one of an earlier generation (dispatched before a
// rollback) is counted out and dropped. A generation is the loop's epoch
// (ckpt.RunState.Epoch, incremented and stored at every start of the loop)
// in its high 32 bits and the rollbacks of this start below, so it is
// unique across restarts. The committer computes the step distance to
// θ̃_{n−1}, checks for divergence and writes results with the frontier
// (ckpt.PutBackward with the state), so the stored frontier is always
// contiguous. Parameters are kept for anchor starts (ckpt.PutAnchor) and
// for the last step of a run; any other backward iterate is recomputed
// from its anchor on request (Params).
//
// Where the anchor goes is decided by one replay.Policy per run (built by
// strategyOf from the run's configuration and, at a restart, from the
// stored anchors and frontier); the backward loop performs its actions
// (dispatch, move the anchor, start a trial, roll back, done), reorders
// and commits. The same rule gives the status' ETA (remainingOps, via
// Policy.Project). Strategies:
//   - window (default): anchor (r, x_r); the window's periodic reset moves
//     the anchor to r+W before r+W+1 is computed, with x = θ̃_{r+W}
//     (reset_from backward) or θ_{r+W} (forward). Moving needs θ̃_{r+W}
//     committed: a barrier, during which at most one job's time is lost.
//   - sliding: θ̃_n = T_{n−W+1}∘…∘T_n(θ_{n−W}) with θ_{n−W} from the forward
//     checkpoints (each worker keeps a cursor, so consecutive jobs cost one
//     forward step); no barriers, no periodic resets.
//   - full: anchor 0 and manual resets only; job n costs n applications.
//   - memo: the anchors of window (periodic and manual resets, both start
//     points, improve), each segment evaluated by one sequential evaluator
//     per run (replay.AffinePrefix when the operators are affine, else
//     replay.Coalescing within Options.MemoBudget; one more per side during
//     an adaptive trial); its jobs are dispatched one at a time.
//
// Manual resets (Reset, or reset_at in the spec) move the anchor to step N
// (a new segment) from the backward or forward iterate there. If N is
// before the frontier, the jobs after N are cancelled and the frontier goes
// back to N: later iterates are recomputed under the new anchor, while the
// earlier segments' results stay stored (ckpt.SegmentMetrics); the latest
// segment's result is what BackwardMetrics returns. If N is ahead, the
// reset waits in RunState.PendingResets until the frontier reaches it.
//
// Adaptive resets (reset_policy improve, strategies window, memo and full): at a
// periodic or manual reset to N, both the candidate anchor and the old
// anchor continued are computed over the horizon N+1..N+H (H = reset_horizon,
// default min(W, 50)), with losses at every step; the candidate is kept
// only if its mean training loss is lower (the paper's suggestion). The
// decision and the two losses go to the event log; only the winner's
// results are stored. A rejected periodic reset lets the old anchor run on
// and is tried again W steps later, so each rejection adds W to the cost
// of later steps of that anchor: the policy trades the window's cost bound
// for quality.
//
// backward_from S: no backward iterates for n ≤ S; when the trainer reaches
// S, segment 1 is anchored at (S, θ_S forward) and the frontier starts at S
// (RunState.BackwardStep = S although steps ≤ S have no backward result).
//
// Divergence: a NaN or ±Inf parameter norm, or a NaN/Inf loss at a step
// where losses are measured, forward or backward, marks the run failed with
// the step and the reason; other runs go on.
//
// A full disk (a ckpt.SpaceError: nothing was committed) pauses rather
// than fails: the trainer keeps its unwritten chunk and the backward loop
// its pending results, anchor and states in memory, and both retry every
// spacePoll, or at once on Resume, until the store has room or the run
// stops. Meanwhile the status shows state paused with the store's reason
// ("disk full: N MiB free, need M MiB …") while the stored state stays
// running (a restart goes on by itself); the event stream has a state
// event (event log: paused reason=…) when the first loop starts waiting
// and one (resumed reason=space) when the last one's write went through;
// Resume is refused with the reason (ErrNoSpace) while the refused write
// would still not fit. The retried writes are the same writes, so the run
// stays bitwise what it would have been. A write the store failed
// (ckpt.ErrWrite: EIO, a read-only file system) fails the run with
// FailedStep 0: it is not the run's own failure, and Resume revives it
// from what the store holds.
//
// # Model families
//
// The scheduler reaches models only through the seam of package family
// (it imports no model package): Options.Families are asked in order and a
// run's model belongs to the first whose Knows accepts its name; New
// refuses options without one (replayd registers the built-in nnfamily; an
// external process speaking the operator protocol will be one more). Of a
// family the scheduler uses:
//   - Resolve: the family's defaults (init, loss), its checks of model, data
//     set, init and loss, and family.Size — state length, split sizes,
//     outputs, data set, per-goroutine scratch and affine memo bytes — for
//     validation and admission control, all without loading data;
//   - DataKey and LoadData: one load per key, outside the scheduler's locks
//     and under Options.DataTimeout (loadData);
//   - Open, then of the Model: Init (θ0 of the spec's seed), Layout (the
//     state's named tensors: parameters, then optimizer state; Tensors cuts
//     iterates into them for the server, which sees no model package),
//     Operators over the run's batch log (cloned per goroutine; their
//     Affine capability selects the affine memo), Measurer (one per
//     goroutine);
//   - Sampler: the batch schedule, the same for every family, since the
//     daemon owns the batch log.
//
// A family's objects follow package family's concurrency contract: Family
// and Model are shared read-only; Operators and Measurer belong to one
// goroutine. Every number a family computes is a pure function of the spec,
// the data and its arguments, so the scheduler's determinism holds for
// every family. A stored run is checked against its family's size again
// before its environment is built (buildEnv), so a record that no longer
// fits its family fails that run at start instead of allocating.
//
// # Optimizer state
//
// A run's optimizer (ckpt.RunConfig.Optimizer and its settings, resolved
// with their defaults; "" in an old record is sgd) reaches the family in
// family.Spec.Optim. The vectors the scheduler moves are the whole state
// s = (θ, optimizer buffers, step count), family.Model.Dim long:
// checkpoints, anchor starts, backward results, verify and admission all
// count and compare it. Norms, step distances, measures, divergence
// checks and the default export use θ = s[:ThetaDim] only; StateTensors
// (the params endpoint's with_state) exports the rest too.
//
// # Pacing and memory bounds
//
// The trainer never computes step n while n − max(frontier, backward_from)
// > Options.MaxLag, and the backward loop keeps at most 2·Workers jobs in
// flight per run (1 for memo) and their results in its reorder buffer. So a
// run holds at most 2·Workers + 4 parameter vectors (jobs, reorder buffer,
// θ̃ at the frontier, the current anchor start, the trainer's θ and its
// previous iterate), two more during an adaptive trial, Workers + 1
// recycled ones, and each worker's scratch. The batch log in memory is the
// sampler's batches of at most Workers + QuerySlots + 3 whole epochs
// (computed from the seed on first use, replaced by clock), each at most
// the training split's size in int32, never Steps × Batch; the operators
// read it, never the stored log (the same numbers: TestResumeBitwise).
// Nothing grows with the number of steps.
// Results are written at least every 64 steps or 250 ms.
//
// # Event log
//
// Options.Events receives one line per event, "run=NAME event=KIND k=v…":
//
//	created model=M dataset=D steps=N strategy=S window=W policy=P backward_from=B
//	anchor segment=K step=R from=init|backward|forward reason=create|window|manual|backward-from
//	reset-scheduled at=N from=F                       (a reset of the spec, at creation)
//	reset-requested at=N from=F when=immediate|scheduled
//	adaptive step=N reason=window|manual decision=kept|rejected new_loss=L old_loss=L horizon=H
//	done forward=N backward=N
//	failed step=N reason="…"
//	resumed after failure                             (Resume of a run that failed to start)
//	deleted
//
// The events of one run come in a deterministic order (testdata/*.golden).
//
// The same events, parsed (api.Event: the kind and the k=v fields), feed the
// event stream (events.go, Subscribe; GET /v1/runs/{name}/events), with
// three more kinds: snapshot (the run's status: the first event of a
// subscription, or a resync), progress (the forward step or the backward
// frontier moved: published after each forward and backward store write,
// coalesced to one per 200 ms per run, the status computed on a timer
// goroutine rather than by the trainer or the backward loop) and state
// (pause, resume). The broker keeps the last 256 events of each run for
// subscribers that resume with a cursor ("<boot>-<seq>"); a cursor of an
// earlier process, or one whose successors were dropped, gets a snapshot.
// Publishing never blocks: a subscriber queue is bounded and, when full, is
// replaced by a snapshot taken when the subscriber next reads. Streams end
// with the run's deleted event and when Run returns. The broker's lock is a
// leaf (event runs under Scheduler.mu and run.mu); statuses are computed
// without it.
//
// # Concurrency
//
// Each run has one trainer goroutine and one backward goroutine; the
// backward goroutine owns the anchor policy, the anchors, the frontier, the
// reorder buffer and its executor Queue. Workers share with it only the
// anchor starts it publishes in its JobInputs (under their own lock; a
// start is never modified once published).
// The run's state (ckpt.RunState) is shared and changed only under run.mu,
// which is also held while the state is written to the store, so the
// trainer's and the committer's writes never lose each other's progress.
// Events about a state change are written under the same lock, so the
// event log orders them as the state changes happened. Lock order:
// Scheduler.mu before run.mu; no lock is held while waiting for a job.
// Scheduler.dataMu guards the map of data-set loads only: a load runs in
// its own goroutine, outside every lock, and its waiters give up at their
// own deadline (Options.DataTimeout), so a hung file system blocks only the
// runs of that data set.
package scheduler
