package remote

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/scheduler"
)

// Config configures an Executor.
type Config struct {
	// URL and Token reach the NATS server.
	URL, Token string
	// AckWait is how long a job may go without an ack or a heartbeat
	// before JetStream redelivers it; MaxDeliver bounds the deliveries.
	AckWait    time.Duration
	MaxDeliver int
	// Fingerprint is the daemon's (Fingerprint()): its runs are computed
	// only by workers that announce the same.
	Fingerprint string
	// VerifyShare is the share of remote results the daemon re-executes
	// locally and compares bitwise (besides the first of each worker);
	// DataDir is where it reads data sets for that.
	VerifyShare float64
	DataDir     string
	Logger      *slog.Logger
	// Families are the model families of the spot checks' re-execution:
	// the daemon's own (without them no check can run).
	Families []family.Family
	// Trusted names workers whose results are not spot checked: the
	// daemon's own in-process worker, whose re-execution would be the
	// same code on the same data in the same process. A name is no
	// credential (the token is); a remote worker announcing a trusted
	// name goes unchecked, as a fault, not an attack, is what the checks
	// are for.
	Trusted []string
}

// Defaults of Config.
const (
	DefaultAckWait    = 30 * time.Second
	DefaultMaxDeliver = 5
	// heartbeatEvery is how often workers announce themselves; one silent
	// for workerTimeout is no longer counted.
	heartbeatEvery = 2 * time.Second
	workerTimeout  = 3 * heartbeatEvery
	// WorkerTimeout is how long a worker may be silent and still count.
	WorkerTimeout = workerTimeout
)

// Stats counts an executor's jobs.
type Stats struct {
	Queued, Results, Duplicates, Redelivered, Dead, Failed int64
	// Verified and Mismatches count the spot checks (VerifyShare).
	Verified, Mismatches int64
	// Rechecked and Tainted count the earlier, unchecked results of
	// quarantined workers, re-executed: equal, and different (their runs
	// fail).
	Rechecked, Tainted int64
}

// WorkerInfo is what the daemon knows of a worker from its announcements.
type WorkerInfo struct {
	Name, Fingerprint string
	Slots, Busy       int
	Done, Ops         int64
	OpsPerSec         float64 // between its last two announcements
	LastSeen          time.Time
	Matches           bool // its fingerprint is the daemon's
	// Quarantined: a spot check found a result of it wrong; its results
	// are recomputed by the daemon.
	Quarantined bool
	// Refused are the run configs whose data set differs on the worker;
	// RefusedRuns the names of the open runs among them, sorted (filled by
	// Workers).
	Refused     []string
	RefusedRuns []string
}

// Executor is a scheduler.RemoteExecutor over JetStream. Close it after
// the scheduler has stopped.
type Executor struct {
	cfg  Config
	log  *slog.Logger
	nc   *nats.Conn
	js   jetstream.JetStream
	jobs jetstream.Stream
	obj  jetstream.ObjectStore
	kv   jetstream.KeyValue
	fp   string // FingerprintID(cfg.Fingerprint)

	stop                                                                   context.CancelFunc
	wg                                                                     sync.WaitGroup
	queued, results, dups, redelivered, dead, failed, verified, mismatches atomic.Int64
	rechecked, tainted                                                     atomic.Int64

	mu struct {
		sync.Mutex
		queues  map[string]*queue // by run name
		workers map[string]WorkerInfo
		inputs  map[string]int  // input objects put: how many open queues use each
		configs map[string]bool // run configs put
		seqs    map[uint64]seqJob
		checked map[string]bool // workers whose first result was checked
		quar    map[string]bool // quarantined workers
		dir     map[*queue]dirEntry
		stuck   map[*queue]bool // logged: every worker refuses its run

		// firstCheck: closed when a worker's first check has its verdict (verify.go)
		firstCheck map[string]chan struct{}
	}
	dirKick chan struct{}       // publish the directory now
	comp    *scheduler.Computer // spot checks
	putMu   sync.Mutex          // serialises input puts and deletes
}

// seqJob is a job message's job and queue, by stream sequence, for the
// max-deliveries advisory.
type seqJob struct {
	q   *queue
	job scheduler.Job
}

var _ scheduler.RemoteExecutor = (*Executor)(nil)

// Dial connects to the NATS server, creates (or updates) the streams, the
// buckets and the consumers, and starts receiving results.
func Dial(ctx context.Context, cfg Config) (*Executor, error) {
	if cfg.AckWait <= 0 {
		cfg.AckWait = DefaultAckWait
	}
	if cfg.MaxDeliver <= 0 {
		cfg.MaxDeliver = DefaultMaxDeliver
	}
	if cfg.Fingerprint == "" {
		cfg.Fingerprint = Fingerprint()
	}
	e := &Executor{cfg: cfg, log: cfg.Logger, fp: FingerprintID(cfg.Fingerprint)}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.mu.queues = map[string]*queue{}
	e.mu.workers = map[string]WorkerInfo{}
	e.mu.inputs = map[string]int{}
	e.mu.configs = map[string]bool{}
	e.mu.seqs = map[uint64]seqJob{}
	e.mu.checked = map[string]bool{}
	e.mu.quar = map[string]bool{}
	e.mu.dir = map[*queue]dirEntry{}
	e.mu.stuck = map[*queue]bool{}
	e.dirKick = make(chan struct{}, 1)
	e.comp = scheduler.NewComputer(scheduler.DefaultOptions().WithFamilies(cfg.Families...).WithDataDir(cfg.DataDir).WithLogger(e.log))
	nc, err := connect(cfg.URL, cfg.Token, "replayd", e.log)
	if err != nil {
		return nil, err
	}
	e.nc = nc
	if err := e.setup(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return e, nil
}

// connect connects for good: it reconnects forever after the server goes.
func connect(url, token, name string, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "url", c.ConnectedUrl()) }),
	}
	if token != "" {
		opts = append(opts, nats.Token(token))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}

// jobConsumer is the durable consumer of the jobs of fingerprint token fp
// and data hash dataHash.
func jobConsumer(fp, dataHash string, ackWait time.Duration, maxDeliver int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       consumerName(fp, dataHash),
		FilterSubject: jobSubject + "." + fp + "." + dataToken(dataHash) + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    maxDeliver,
		MaxAckPending: 1024,
	}
}

func (e *Executor) setup(ctx context.Context) error {
	js, err := jetstream.New(e.nc)
	if err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	e.js = js
	e.jobs, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: jobStream, Subjects: []string{jobSubject + ".>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", jobStream, err)
	}
	// The jobs of an earlier daemon process are stale (the loops start a
	// new epoch): drop them rather than have workers compute them.
	if err := e.jobs.Purge(ctx); err != nil {
		return fmt.Errorf("purge stream %s: %w", jobStream, err)
	}
	// So are its consumers (one per fingerprint and data hash, made as
	// runs open): a consumer of another daemon version could overlap the
	// new ones, which a work queue refuses.
	names := e.jobs.ConsumerNames(ctx)
	for name := range names.Name() {
		if err := e.jobs.DeleteConsumer(ctx, name); err != nil {
			return fmt.Errorf("delete the stale consumer %s: %w", name, err)
		}
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("list the consumers of %s: %w", jobStream, err)
	}
	res, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: resultStream, Subjects: []string{resultSubject + ".>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", resultStream, err)
	}
	cons, err := res.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: daemonDurable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute})
	if err != nil {
		return fmt.Errorf("create the daemon's consumer: %w", err)
	}
	e.obj, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: vectorBucket, Storage: jetstream.FileStorage})
	if err != nil {
		return fmt.Errorf("create object store %s: %w", vectorBucket, err)
	}
	e.kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: runBucket, Storage: jetstream.FileStorage})
	if err != nil {
		return fmt.Errorf("create KV bucket %s: %w", runBucket, err)
	}
	if _, err := e.nc.Subscribe(workerSubject, e.onAnnounce); err != nil {
		return fmt.Errorf("subscribe %s: %w", workerSubject, err)
	}
	adv := "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + jobStream + ".>"
	if _, err := e.nc.Subscribe(adv, e.onMaxDeliveries); err != nil {
		return fmt.Errorf("subscribe %s: %w", adv, err)
	}
	rctx, stop := context.WithCancel(context.Background())
	e.stop = stop
	e.wg.Add(2)
	go e.receive(rctx, cons)
	go e.directoryLoop(rctx)
	return nil
}

// directoryLoop publishes the directory of open runs every heartbeatEvery
// and when kicked, and logs a run that every worker refuses.
func (e *Executor) directoryLoop(ctx context.Context) {
	defer e.wg.Done()
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		e.publishDirectory()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.checkRefused()
		case <-e.dirKick:
		}
	}
}

func (e *Executor) kickDirectory() {
	select {
	case e.dirKick <- struct{}{}:
	default:
	}
}

func (e *Executor) publishDirectory() {
	e.mu.Lock()
	d := directory{Runs: make([]dirEntry, 0, len(e.mu.dir))}
	for _, de := range e.mu.dir {
		d.Runs = append(d.Runs, de)
	}
	e.mu.Unlock()
	b, err := msgpack.Marshal(d)
	if err == nil {
		_ = e.nc.Publish(dirSubject, b)
	}
}

// checkRefused logs, once, each run that every live worker of the daemon's
// fingerprint refuses (its data set differs on all of them): its jobs
// stay queued until a worker with the run's data joins.
func (e *Executor) checkRefused() {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	for q, de := range e.mu.dir {
		b := e.blockedLocked(q, now)
		stuck := b.kind == blockedRefused
		if stuck && !e.mu.stuck[q] {
			e.log.Error("no worker can take the run's jobs: every worker refuses it, its data set differs there (the jobs stay queued for a worker with the run's data)",
				"run", de.Run, "data_hash", de.DataHash, "workers", strings.Join(b.refusing, ","))
		}
		e.mu.stuck[q] = stuck
	}
}

// Why a run's jobs can wait for a worker (blockage.kind).
const (
	blockedNot         = iota // a live worker can take them
	blockedNoWorker           // no live worker at all
	blockedFingerprint        // live workers, none of the run's fingerprint
	blockedRefused            // every live worker of its fingerprint refuses it
)

// blockage is why no live worker takes a run's jobs.
type blockage struct {
	kind     int
	refusing []string // the workers that refuse the run, sorted (blockedRefused)
	other    int      // live workers of another fingerprint
}

// blockedLocked classifies q's run against the live workers (e.mu held).
// A worker counts for the run when its fingerprint is the daemon's (or the
// run's is any) and it has not refused the run's config; one that has not
// judged it yet (it just joined, or has not loaded the data) counts, since
// it may take the jobs. A quarantined worker counts too: it gets jobs and
// the daemon recomputes its results, so the run does not stop.
func (e *Executor) blockedLocked(q *queue, now time.Time) blockage {
	de, inDir := e.mu.dir[q]
	var b blockage
	live, able := 0, 0
	for _, w := range e.mu.workers {
		if now.Sub(w.LastSeen) >= workerTimeout {
			continue
		}
		live++
		switch {
		case !w.Matches && !q.anyFP():
			b.other++
		case inDir && slices.Contains(w.Refused, de.Config):
			b.refusing = append(b.refusing, w.Name)
		default:
			able++
		}
	}
	switch {
	case able > 0:
		b.kind = blockedNot
	case live == 0:
		b.kind = blockedNoWorker
	case len(b.refusing) == 0:
		b.kind = blockedFingerprint
	default:
		b.kind = blockedRefused
	}
	slices.Sort(b.refusing)
	return b
}

// reason is why q's run's jobs wait for a worker given b, "" when a
// live worker can take them.
func (e *Executor) reason(q *queue, b blockage) string {
	switch b.kind {
	case blockedNoWorker:
		tok := ""
		if e.cfg.Token != "" {
			tok = " --token TOKEN"
		}
		return fmt.Sprintf("no remote worker connected: start `replayd worker --nats %s%s`", e.cfg.URL, tok)
	case blockedFingerprint:
		return fmt.Sprintf("no worker of the daemon's fingerprint %q connected (%d of another fingerprint; a run started with `--fingerprint any` lets them compute it, not bitwise)",
			e.cfg.Fingerprint, b.other)
	case blockedRefused:
		more := ""
		if b.other > 0 {
			more = fmt.Sprintf("; %d more of another fingerprint", b.other)
		}
		return fmt.Sprintf("no worker can take its jobs: its data set differs (or cannot be loaded) on every worker (%s%s); start a worker with the run's data (data hash %s)",
			strings.Join(b.refusing, ", "), more, q.x.Config.DataHash)
	}
	return ""
}

// Waiting is why run's backward jobs wait for a remote worker — none
// connected, none of the run's fingerprint, or every one refusing the run
// (its data set differs there, or cannot be loaded) — or "" when a live
// worker can take them, when run has no job out (its loop is caught up)
// or no open loop here. Every job of the daemon goes to the remote
// workers once it has an Executor (the in-process pool computes none), so
// this holds whatever --workers says.
func (e *Executor) Waiting(run string) string {
	e.mu.Lock()
	q := e.mu.queues[run]
	var b blockage
	if q != nil {
		b = e.blockedLocked(q, time.Now())
	}
	e.mu.Unlock()
	if q == nil || b.kind == blockedNot || !q.waiting() { // q.mu, never under e.mu
		return ""
	}
	return e.reason(q, b)
}

// Waits is Waiting of every open run whose jobs wait for a worker, by run
// name.
func (e *Executor) Waits() map[string]string {
	out := map[string]string{}
	for q, b := range e.waits() {
		out[q.x.Name] = e.reason(q, b)
	}
	return out
}

// waits are the open queues with a job out that no live worker can take,
// and why.
func (e *Executor) waits() map[*queue]blockage {
	e.mu.Lock()
	now := time.Now()
	out := map[*queue]blockage{}
	for _, q := range e.mu.queues {
		if b := e.blockedLocked(q, now); b.kind != blockedNot {
			out[q] = b
		}
	}
	e.mu.Unlock()
	for q := range out {
		if !q.waiting() { // q.mu, never under e.mu
			delete(out, q)
		}
	}
	return out
}

// waiting reports whether some job of q is out with no result yet (taken
// q.mu alone: never with e.mu).
func (q *queue) waiting() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending) > 0
}

// Health is nil while the daemon is connected to the NATS server (the
// engine that carries the jobs), else why not: /healthz reports it.
func (e *Executor) Health() error {
	if !e.nc.IsConnected() {
		return fmt.Errorf("remote workers: not connected to the NATS server (%s)", e.nc.Status())
	}
	return nil
}

// Close stops receiving and disconnects.
func (e *Executor) Close() {
	e.stop()
	e.wg.Wait()
	e.nc.Close()
}

// Stats returns the counters.
func (e *Executor) Stats() Stats {
	return Stats{Queued: e.queued.Load(), Results: e.results.Load(), Duplicates: e.dups.Load(),
		Redelivered: e.redelivered.Load(), Dead: e.dead.Load(), Failed: e.failed.Load(),
		Verified: e.verified.Load(), Mismatches: e.mismatches.Load(),
		Rechecked: e.rechecked.Load(), Tainted: e.tainted.Load()}
}

// Workers returns the workers heard from, by name.
func (e *Executor) Workers() []WorkerInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	runs := make(map[string][]string, len(e.mu.dir)) // config key → open runs
	for _, de := range e.mu.dir {
		runs[de.Config] = append(runs[de.Config], de.Run)
	}
	out := make([]WorkerInfo, 0, len(e.mu.workers))
	for _, w := range e.mu.workers {
		w.RefusedRuns = nil
		for _, key := range w.Refused {
			w.RefusedRuns = append(w.RefusedRuns, runs[key]...)
		}
		slices.Sort(w.RefusedRuns)
		out = append(out, w)
	}
	return out
}

// Slots implements scheduler.RemoteExecutor: the slots of the live workers
// that may compute the daemon's runs.
func (e *Executor) Slots() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	// While a run with fingerprint any is open, every worker can compute
	// some of the daemon's jobs.
	anyOpen := false
	for _, q := range e.mu.queues {
		anyOpen = anyOpen || q.anyFP()
	}
	n := 0
	for _, w := range e.mu.workers {
		if (w.Matches || anyOpen) && time.Since(w.LastSeen) < workerTimeout {
			n += w.Slots
		}
	}
	return n
}

func (e *Executor) onAnnounce(m *nats.Msg) {
	var a announce
	if err := msgpack.Unmarshal(m.Data, &a); err != nil || a.Name == "" {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if a.Stopping {
		delete(e.mu.workers, a.Name)
		return
	}
	if _, ok := e.mu.workers[a.Name]; !ok {
		e.log.Info("worker joined", "worker", a.Name, "fingerprint", a.Fingerprint, "slots", a.Slots, "matches", a.Fingerprint == e.cfg.Fingerprint)
	}
	now := time.Now()
	wi := WorkerInfo{Name: a.Name, Fingerprint: a.Fingerprint, Slots: a.Slots, Busy: a.Busy,
		Done: a.Done, Ops: a.Ops, LastSeen: now, Matches: a.Fingerprint == e.cfg.Fingerprint, Quarantined: e.mu.quar[a.Name],
		Refused: a.Refused}
	if prev, ok := e.mu.workers[a.Name]; ok && a.Ops >= prev.Ops && now.After(prev.LastSeen) {
		wi.OpsPerSec = float64(a.Ops-prev.Ops) / now.Sub(prev.LastSeen).Seconds()
	}
	e.mu.workers[a.Name] = wi
}

// onMaxDeliveries fails the job whose deliveries are exhausted: its loop
// gets a Result with the reason (which fails the run).
func (e *Executor) onMaxDeliveries(m *nats.Msg) {
	var adv struct {
		StreamSeq  uint64 `json:"stream_seq"`
		Deliveries uint64 `json:"deliveries"`
	}
	if err := json.Unmarshal(m.Data, &adv); err != nil {
		return
	}
	e.mu.Lock()
	sj, ok := e.mu.seqs[adv.StreamSeq]
	delete(e.mu.seqs, adv.StreamSeq)
	e.mu.Unlock()
	e.dead.Add(1)
	// A work queue keeps an unacked message: remove it, nobody computes it.
	_ = e.jobs.DeleteMsg(context.Background(), adv.StreamSeq)
	if !ok {
		return
	}
	if !sj.q.first(sj.job.ID()) {
		return // cancelled meanwhile
	}
	e.log.Error("job exhausted its deliveries", "run", sj.job.Run, "step", sj.job.Step, "deliveries", adv.Deliveries)
	sj.q.deliver(scheduler.Result{Job: sj.job, Err: fmt.Sprintf("remote job (step %d) delivered %d times without a result: workers crash or time out on it", sj.job.Step, adv.Deliveries)})
}

// receive takes results until ctx ends. Results are consumed as they come
// (a Fetch of several would wait for the batch to fill) and handled by
// resultHandlers goroutines, each the results of a shard of job
// identities: two results of one job (a redelivery) carry the same object
// name when their bits agree, and the duplicate's delete must not overtake
// the first one's read, so they are handled in order; everything handlers
// share is locked (the spot checks' runner by its queue's checkMu).
// BenchmarkCoordinator, 64 workers: one handler ≈ 165 jobs/s, four
// 355-459 on this loaded machine.
func (e *Executor) receive(ctx context.Context, cons jetstream.Consumer) {
	defer e.wg.Done()
	for ctx.Err() == nil {
		it, err := cons.Messages(jetstream.PullMaxMessages(64))
		if err != nil {
			e.log.Debug("consume results", "err", err)
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		stopped := make(chan struct{})
		go func() {
			select {
			case <-ctx.Done():
				it.Stop()
			case <-stopped:
			}
		}()
		// Handlers by shard of the job identity: results of one job (a
		// redelivery) are handled in order, others at once.
		var handlers sync.WaitGroup
		shards := make([]chan resultIn, resultHandlers)
		for i := range shards {
			shards[i] = make(chan resultIn, 4)
			handlers.Add(1)
			go func() {
				defer handlers.Done()
				for r := range shards[i] {
					e.handleResult(ctx, r.m, r.rm)
				}
			}()
		}
		for {
			m, err := it.Next()
			if err != nil {
				break
			}
			var rm resultMsg
			if err := msgpack.Unmarshal(m.Data(), &rm); err != nil {
				e.log.Error("undecodable result dropped", "err", err)
				_ = m.Term()
				continue
			}
			shards[shardOf(rm.Job.ID())] <- resultIn{m, rm}
		}
		for _, c := range shards {
			close(c)
		}
		handlers.Wait()
		close(stopped)
		it.Stop()
	}
}

// resultHandlers is how many results are handled at once. Each holds a
// decoded vector, so the number stays small (DESIGN §7's memory bound
// counts model-sized vectors).
const resultHandlers = 4

// resultIn is a result message and its decoding.
type resultIn struct {
	m  jetstream.Msg
	rm resultMsg
}

// shardOf is the handler of a job's results.
func shardOf(id scheduler.JobID) int {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s\x00%d\x00%d\x00%d\x00%d", id.Run, id.Generation, id.Segment, id.Step, id.Side)
	return int(h.Sum32() % resultHandlers)
}

func (e *Executor) handleResult(ctx context.Context, m jetstream.Msg, rm resultMsg) {
	e.results.Add(1)
	if rm.Delivery > 1 {
		e.redelivered.Add(1)
	}
	id := rm.Job.ID()
	e.mu.Lock()
	q := e.mu.queues[rm.Job.Run]
	e.mu.Unlock()
	drop := func() {
		if rm.Theta != "" {
			_ = e.obj.Delete(ctx, rm.Theta)
		}
		_ = m.Ack()
	}
	if q == nil || q.x.Epoch != rm.Job.Generation>>32 {
		drop() // its loop is gone: nobody wants it
		return
	}
	if !q.first(id) {
		e.dups.Add(1)
		drop()
		return
	}
	res := scheduler.Result{Job: rm.Job, Metrics: rm.Metrics, Applied: rm.Applied, Err: rm.Err, Cancelled: rm.Cancelled}
	if rm.Err != "" {
		e.failed.Add(1)
		res.Err = "worker " + rm.Worker + ": " + rm.Err
	}
	if rm.Theta == "" && rm.Vec != nil {
		var err error
		if res.Theta, err = decodeVec(rm.Vec, q.x.Config.Dim); err != nil {
			e.log.Error("undecodable result dropped", "run", rm.Job.Run, "step", rm.Job.Step, "err", err)
			q.forget(rm.Job)
			_ = m.Term()
			return
		}
	}
	if rm.Theta != "" {
		b, err := e.obj.GetBytes(ctx, rm.Theta)
		if err == nil {
			res.Theta, err = decodeVec(b, q.x.Config.Dim)
		}
		if err != nil {
			// Handed back: redelivered in a second, by when the object
			// store may answer again (a worker's second put of the same
			// name, a redelivery, can make one read fail).
			q.forget(rm.Job)
			e.log.Warn("result vector unreadable", "run", rm.Job.Run, "step", rm.Job.Step, "err", err)
			_ = m.NakWithDelay(time.Second)
			return
		}
	}
	// A memo job is checked like the others: the daemon's runner keeps
	// its own memo per side, and a memoized evaluator's bits are a
	// function of the anchor and the step alone (the affine and momentum
	// prefixes compose the same maps in the same order whatever came
	// before; the coalescence memo is direct application), so the
	// worker's history does not reach them. A check costs at most the
	// segment's length in applications (the prefix goes on from the last
	// check, or starts again at the anchor), as a window job's does.
	switch {
	case res.Err != "" || res.Cancelled:
		// A failed or cancelled job has nothing to check.
	case q.anyFP():
		// A run of fingerprint any is not compared: an honest worker of
		// another BLAS kernel or CPU differs in the last bits, and how
		// far rounding differences grow along a chain of W (or n)
		// applications depends on the run's contraction, so no tolerance
		// would both spare honest workers and catch a wrong one. Only a
		// worker already quarantined (by a bitwise run's check) is not
		// trusted here either: its result is recomputed.
		if e.quarantined(rm.Worker) {
			if local, ok := q.compute(ctx, res.Job); ok && local.Err == "" && !local.Cancelled {
				res = local
			}
		}
	default:
		key := checkKey(rm.Worker, rm.Instance)
		if e.shouldCheck(rm.Worker, key, id) || !e.noteUnverified(q, rm.Worker, res) {
			var quarantined bool
			if res, quarantined = e.check(ctx, q, rm.Worker, key, res); quarantined {
				e.recheck(ctx, rm.Worker)
			}
		}
	}
	e.mu.Lock()
	for seq, sj := range e.mu.seqs {
		if sj.q == q && sj.job.ID() == id {
			delete(e.mu.seqs, seq)
		}
	}
	e.mu.Unlock()
	q.deliver(res)
	drop()
}

// OpenRemote implements scheduler.RemoteExecutor.
func (e *Executor) OpenRemote(x scheduler.ExecRun) scheduler.Queue {
	q := &queue{e: e, x: x, jobs: make(chan scheduler.Job), results: make(chan scheduler.Result, max(64, 2*x.Flight)),
		closed: make(chan struct{}), done: map[scheduler.JobID]bool{}, inputs: map[string]bool{},
		pending: map[scheduler.JobID]scheduler.Job{}}
	e.mu.Lock()
	e.mu.queues[x.Name] = q
	e.mu.Unlock()
	q.wg.Add(1)
	go q.publish()
	return q
}

// queue is a Queue of the Executor.
type queue struct {
	e       *Executor
	x       scheduler.ExecRun
	jobs    chan scheduler.Job
	results chan scheduler.Result
	closed  chan struct{}
	wg      sync.WaitGroup
	cfgKey  string
	inputs  map[string]bool   // input objects this queue holds (publish goroutine; Close after it ended)
	checkMu sync.Mutex        // serialises the spot checks' use of local
	local   *scheduler.Runner // spot checks, under checkMu
	// unverified are the results handed to the loop without a spot check,
	// by worker (under e.mu, with the quarantine flags): re-executed if the
	// worker is quarantined later.
	unverified map[string][]unverified
	forgot     map[string]bool // by worker: some were forgotten (maxUnverified), under e.mu

	mu      sync.Mutex
	done    map[scheduler.JobID]bool          // results handed to the loop
	pending map[scheduler.JobID]scheduler.Job // taken from the loop, no result handed back yet
	// tainted, once set, fails the run at its next job: a stored result
	// came from a worker later found faulty.
	tainted string
}

func (q *queue) Jobs() chan<- scheduler.Job       { return q.jobs }
func (q *queue) Results() <-chan scheduler.Result { return q.results }

// Cancel implements scheduler.Queue: workers stop the run's jobs of older
// generations, and those jobs come back Cancelled at once, from here: the
// loop (which waits for every job in flight, at a rollback and at its
// stop) never waits for workers that may be gone. A worker's late result
// of such a job is then a duplicate, and dropped.
func (q *queue) Cancel(gen uint64) {
	b, _ := msgpack.Marshal(cancelMsg{Run: q.x.Name, Gen: gen})
	_ = q.e.nc.Publish(cancelSubject, b)
	var cancelled []scheduler.Job
	q.mu.Lock()
	for id, j := range q.pending {
		if j.Generation < gen {
			delete(q.pending, id)
			q.done[id] = true
			cancelled = append(cancelled, j)
		}
	}
	q.mu.Unlock()
	if len(cancelled) > 0 {
		// Not from the loop's goroutine: it is the one receiving.
		go func() {
			for _, j := range cancelled {
				q.deliver(scheduler.Result{Job: j, Cancelled: true})
			}
		}()
	}
}

// Close implements scheduler.Queue.
func (q *queue) Close() {
	q.e.mu.Lock()
	if q.e.mu.queues[q.x.Name] == q {
		delete(q.e.mu.queues, q.x.Name)
	}
	for seq, sj := range q.e.mu.seqs {
		if sj.q == q {
			delete(q.e.mu.seqs, seq)
		}
	}
	delete(q.e.mu.dir, q)
	delete(q.e.mu.stuck, q)
	q.e.mu.Unlock()
	q.e.kickDirectory()
	close(q.closed)
	q.wg.Wait()
	// Nobody wants the loop's jobs any more: take them off the queue, and
	// the input vectors no other open queue uses off the object store.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	subj := jobSubjectOf(q.fpToken(), q.x.Config.DataHash, q.x.Name)
	if err := q.e.jobs.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
		q.e.log.Debug("purge the jobs of a closed loop", "run", q.x.Name, "err", err)
	}
	var drop []string
	q.e.putMu.Lock()
	defer q.e.putMu.Unlock()
	q.e.mu.Lock()
	for name := range q.inputs {
		if q.e.mu.inputs[name]--; q.e.mu.inputs[name] <= 0 {
			delete(q.e.mu.inputs, name)
			drop = append(drop, name)
		}
	}
	q.e.mu.Unlock()
	for _, name := range drop {
		_ = q.e.obj.Delete(ctx, name)
	}
}

// anyFP reports whether the run accepts workers of every fingerprint.
func (q *queue) anyFP() bool { return q.x.Config.Fingerprint == api.FingerprintAny }

// fpToken is the fingerprint token of the run's subjects and consumer:
// the daemon's, or anyToken.
func (q *queue) fpToken() string {
	if q.anyFP() {
		return anyToken
	}
	return q.e.fp
}

// quarantined reports whether a spot check found a result of worker wrong.
func (e *Executor) quarantined(worker string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mu.quar[worker]
}

// first records that id's result goes to the loop; false if one did.
func (q *queue) first(id scheduler.JobID) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.done[id] {
		return false
	}
	q.done[id] = true
	delete(q.pending, id)
	return true
}

// forget undoes first: the result could not be handed over after all.
func (q *queue) forget(j scheduler.Job) {
	q.mu.Lock()
	delete(q.done, j.ID())
	q.pending[j.ID()] = j
	q.mu.Unlock()
}

// deliver hands a result to the loop, or drops it if the loop is gone.
func (q *queue) deliver(res scheduler.Result) {
	select {
	case q.results <- res:
	case <-q.closed:
	}
}

// publish sends the loop's jobs to the stream until Close. A job that
// cannot be published (its inputs unreadable, the server gone for good)
// comes back to the loop as a failed Result.
func (q *queue) publish() {
	defer q.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-q.closed
		cancel()
	}()
	for {
		select {
		case <-q.closed:
			return
		case j := <-q.jobs:
			q.mu.Lock()
			q.pending[j.ID()] = j
			tainted := q.tainted
			q.mu.Unlock()
			if tainted != "" {
				if q.first(j.ID()) {
					q.deliver(scheduler.Result{Job: j, Err: tainted})
				}
				continue
			}
			if err := q.send(ctx, j); err != nil {
				if ctx.Err() != nil {
					return
				}
				if q.first(j.ID()) {
					q.deliver(scheduler.Result{Job: j, Err: err.Error()})
				}
			}
		}
	}
}

// send publishes j, putting its config and input first if the server does
// not have them yet. Publishing retries while the server is away (a
// restart), up to a minute.
func (q *queue) send(ctx context.Context, j scheduler.Job) error {
	e := q.e
	if q.cfgKey == "" {
		b, err := msgpack.Marshal(q.x.Config)
		if err != nil {
			return fmt.Errorf("encode run config: %w", err)
		}
		key := "cfg-" + hashHex(b)
		// The consumer first: a worker binds to it once the directory
		// names it.
		cc := jobConsumer(q.fpToken(), q.x.Config.DataHash, e.cfg.AckWait, e.cfg.MaxDeliver)
		if _, err := retry(ctx, func() (jetstream.Consumer, error) { return e.jobs.CreateOrUpdateConsumer(ctx, cc) }); err != nil {
			return fmt.Errorf("create the workers' consumer: %w", err)
		}
		if _, err := retry(ctx, func() (jetstream.KeyValueEntry, error) { _, err := e.kv.Put(ctx, key, b); return nil, err }); err != nil {
			return fmt.Errorf("put run config: %w", err)
		}
		q.cfgKey = key
		e.mu.Lock()
		e.mu.dir[q] = dirEntry{Run: q.x.Name, Config: key, DataHash: q.x.Config.DataHash, Consumer: cc.Durable}
		e.mu.Unlock()
		e.kickDirectory()
	}
	jm := jobMsg{Job: j, Config: q.cfgKey}
	var v []float32
	if j.StartForward {
		v = make([]float32, q.x.Config.Dim)
		step, err := q.x.Inputs.NearestCheckpoint(j.Run, j.StartStep, v)
		if err != nil {
			return fmt.Errorf("forward checkpoint for step %d: %w", j.StartStep, err)
		}
		jm.InputStep = step
	} else {
		var err error
		if v, err = q.x.Inputs.AnchorStart(j.Run, j.Segment); err != nil {
			return err
		}
		jm.InputStep = j.AnchorStep
	}
	b := encodeVec(v)
	jm.Input = inputName(b)
	if !q.inputs[jm.Input] {
		// putMu orders this put after the delete of a closing queue
		// that held the same vector.
		e.putMu.Lock()
		defer e.putMu.Unlock()
		e.mu.Lock()
		have := e.mu.inputs[jm.Input] > 0
		e.mu.Unlock()
		if !have {
			if _, err := retry(ctx, func() (*jetstream.ObjectInfo, error) { return e.obj.PutBytes(ctx, jm.Input, b) }); err != nil {
				return fmt.Errorf("put input vector: %w", err)
			}
		}
		e.mu.Lock()
		e.mu.inputs[jm.Input]++
		e.mu.Unlock()
		q.inputs[jm.Input] = true
	}
	data, err := msgpack.Marshal(jm)
	if err != nil {
		return fmt.Errorf("encode job: %w", err)
	}
	subj := jobSubjectOf(q.fpToken(), q.x.Config.DataHash, j.Run)
	ack, err := retry(ctx, func() (*jetstream.PubAck, error) { return e.js.Publish(ctx, subj, data) })
	if err != nil {
		return fmt.Errorf("publish job: %w", err)
	}
	e.queued.Add(1)
	e.mu.Lock()
	e.mu.seqs[ack.Sequence] = seqJob{q: q, job: j}
	e.mu.Unlock()
	return nil
}

// retry calls f until it succeeds, ctx ends or a minute has passed (the
// server restarting).
func retry[T any](ctx context.Context, f func() (T, error)) (T, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		v, err := f()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return v, err
		}
		sleepCtx(ctx, 250*time.Millisecond)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// fetch pulls up to n messages, waiting up to d, returning early when ctx
// ends (FetchMaxWait and FetchContext exclude each other).
func fetch(ctx context.Context, cons jetstream.Consumer, n int, d time.Duration) (jetstream.MessageBatch, error) {
	fctx, cancel := context.WithTimeout(ctx, d)
	go func() {
		<-fctx.Done()
		cancel()
	}()
	return cons.Fetch(n, jetstream.FetchContext(fctx))
}
