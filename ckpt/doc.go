// Package ckpt is replay's store: for every run, its configuration and
// state, the batch log, forward checkpoints, backward anchors and iterates,
// and the metrics of both trajectories, in a Badger database. It is the only
// package that imports Badger; it knows nothing of gradients (Verify takes
// the operator as a Replayer callback).
//
// # What is stored
//
// The batch log (the indices of every step's batch) is the source of truth:
// any forward iterate θ_k is the nearest checkpoint ≤ k replayed forward
// through the log, bitwise equal to the original run's θ_k. Checkpoints are
// θ0 (step 0, written by CreateRun) and whatever the scheduler stores,
// normally every RunConfig.CheckpointEvery steps (DefaultCheckpointEvery).
// Backward results are kept per anchor segment, so a reset (a new segment)
// never destroys what earlier segments computed; BackwardMetrics shows, per
// step, the result of the highest segment.
//
// # Key layout
//
// Every key of run R starts with "r" R 0x00 (run names are UTF-8 without
// NUL, so no run's prefix is a prefix of another's), followed by a kind byte
// and numbers as fixed-width 8-byte big-endian integers, so that a prefix
// scan returns steps in numeric order and a reverse seek finds the nearest
// checkpoint ≤ n:
//
//	!format                  format version (msgpack int); a newer one is refused
//	d R                      deletion in progress (see DeleteRun)
//	r R 0 'C'                RunConfig (msgpack map); the run's first key
//	r R 0 'S'                RunState (msgpack map)
//	r R 0 'a' seg            anchor record (msgpack map)
//	r R 0 'b' step           batch of a forward step (blob of int32)
//	r R 0 'f' step           forward metrics (msgpack array)
//	r R 0 'g' block          summary of the forward metrics of steps
//	                         [1+64·block, 64·(block+1)] (msgpack array;
//	                         derived, written with the block's last step)
//	r R 0 'k' step           forward checkpoint (blob of float32)
//	r R 0 'l' step           backward metrics of the highest segment at step
//	r R 0 'm' seg step       backward metrics of one segment
//	r R 0 'p' seg            anchor starting point (blob of float32; absent for
//	                         segment 0, which starts at checkpoint 0)
//	r R 0 't' seg step       backward parameters, where kept (blob of float32)
//
// # Encoding
//
// Records are msgpack (github.com/vmihailenco/msgpack/v5). Parameter vectors
// and batches are "blobs": the msgpack array [n uint64, crc uint32, bin]
// whose bin holds the raw little-endian float32 (or int32) values — not a
// msgpack array of numbers, which is five times slower to encode and decode —
// and crc is their CRC-32C (Castagnoli). n is the step of a parameter vector
// (checked against its key) or the length of a batch. Every read checks the
// checksum and the layout; a mismatch is a *CorruptionError naming the run,
// the kind of record and its step (errors.Is(err, ErrCorrupt)), never
// silently wrong numbers. Vectors of at least Options.ValueThreshold bytes
// live in Badger's value log, the small records (batches, metrics, state) in
// its LSM tree.
//
// # Atomicity and crashes
//
//   - AppendForward writes the steps' batches, their metrics, their
//     checkpoints (ForwardStep.Checkpoint) and the new state in one Badger
//     transaction, then syncs when it stored a checkpoint: after a crash
//     either all of them are there or none, the state's ForwardStep never
//     points past the stored log, and never counts a step whose scheduled
//     checkpoint is lost (a checkpoint is durable no later than the state
//     that depends on it). Appends too large for one transaction are split
//     into consecutive transactions, each with a state ending at its last
//     step. The summary of a block of 64 forward steps ('g') is written in
//     the transaction that logs the block's last step.
//   - PutBackward writes kept parameters first (WriteBatch, then a sync),
//     then the metrics and the state in one transaction, so BackwardStep never
//     counts a result that is not stored.
//   - PutCheckpoint, PutAnchor and CreateRun write one transaction and then
//     sync the database (db.Sync), so a checkpoint is durable when the call
//     returns; checkpoints, anchors and backward results must refer to logged
//     steps (ErrBeyondForward).
//   - DeleteRun first deletes the config and records a deletion marker in one
//     transaction (the run is gone for readers at once), then drops the run's
//     keys with DropPrefix; Open finishes a deletion a crash interrupted.
//
// Every call that returned survives a crash of the process (SIGKILL): Badger
// writes through memory-mapped files the kernel keeps. Against an OS crash or
// power loss, everything up to the last checkpoint (or every write, with
// Options.SyncWrites) survives, and Badger's write-ahead log discards torn
// transactions, so a crash never leaves a half-written step. The crash test
// kills a writer process at random points and checks all of this.
//
// # Faults of the disk and of the store's files
//
//   - Before Badger opens the directory, Open compares it with the MANIFEST
//     and with ckpt.marker, ckpt's own record (rewritten atomically and
//     fsynced after syncs, at most once a second, and at Close): run count,
//     highest version, memtable logs, the newest value log's last complete
//     transaction, the older value logs' sizes, whether value-log GC may
//     have deleted files. A missing or cut MANIFEST, a table it lists that
//     is gone, tables beside a MANIFEST that lists none, a table that fails
//     its checksums, no memtable log (or fewer versions than the marker saw)
//     after a crash, a newest value log that Badger would cut before data
//     that was synced, an older value log gone or cut (GC not running):
//     Open refuses with a *DamagedError naming the file and changes nothing.
//     Options.Salvage (replayd repair, after a backup) opens anyway, keeping
//     a damaged newest value log whole behind an empty one and rebuilding a
//     lost or damaged MANIFEST from the tables that read back (manifest.go).
//     Values in a lost value log read as corrupt records (Verify reports
//     them; RepairCheckpoints recomputes the checkpoints among them when an
//     earlier one is readable).
//   - Badger's panics on damaged tables during reads and writes become
//     CorruptionErrors (Kind "table"); Verify reports them as problems. A
//     panic in Badger's own goroutines (a compaction reading a table that
//     was damaged while the store was open) cannot be recovered and ends
//     the process; the damaged table is then still listed (the compaction
//     did not commit) and the next Open refuses it by its checksums. Block
//     checksums are deliberately not verified on Badger's reads: its
//     compactions ignore their iterators' errors (badger v4.9 levels.go,
//     subcompact), so an error instead of the panic would end the
//     compaction's output early and drop the rest of its inputs silently.
//   - Space (space.go): every write checks statfs and is refused with a
//     *SpaceError (ErrNoSpace) before it starts when it would leave less
//     than Options.MinFreeDisk (half of it for backward results, anchors
//     and new runs). An ENOSPC of the file system before the write
//     committed is a SpaceError too; any other failure of a write (EIO, a
//     read-only file system, a failed sync) is a *WriteError (ErrWrite).
//     Both stay the store's WriteProblem until the same kind of write
//     succeeds (writeerr.go), which /healthz reports. Badger writes its value and memtable logs through
//     memory-mapped sparse files, so a page the file system cannot back is
//     SIGBUS, not an error: the reserve is what keeps those pages backed.
//   - The directory's device and inode are checked every 2 s; once it is
//     gone or replaced every write but PutState fails with ErrStoreGone.
//     Close waits at most Options.CloseTimeout for Badger's final flush.
//   - The directory is made 0700 and its files 0600 at Open and after
//     syncs, whatever they were.
//
// Space: value-log GC runs every Options.GCInterval (RunValueLogGC(0.5) until
// Badger finds nothing to rewrite) on value-log files of
// Options.ValueLogFileSize, small enough that there are older files to
// collect; DeleteRun starts a GC at once.
//
// # Concurrency
//
// A Store is safe for concurrent use by multiple goroutines. Writes to one
// run are serialised by a per-run mutex; different runs are written in
// parallel. Reads see consistent snapshots (Verify checks one snapshot
// throughout). One process at a time may open a directory: a second gets
// ErrLocked, "ckpt: store <dir> is in use by another process".
//
// # Verification
//
// Verify(run, replay) checks that every scheduled checkpoint exists
// (ExpectedCheckpoints: the schedule is in the run's config), re-executes
// the batch log from each checkpoint to the next and compares bitwise, checks every checksum and the structural
// invariants above, and lists every problem; it is what `replayctl verify`
// runs, and the tests run it after every test on every store they used.
// RepairCheckpoints recomputes missing scheduled checkpoints from the batch
// log (`replayctl verify --repair`).
//
// # Fault injection
//
// Built with -tags failpoints, the write paths call failpoint(site) and
// REPLAY_FAILPOINTS chooses a fault per site (kill, enospc, eio, drop; see
// failpoint_on.go), once or, while REPLAY_FAILPOINT_HOLD's file exists, at
// every later hit. In ordinary builds the hook is an empty inlined call.
package ckpt
