package remote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/extmodel"
	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/scheduler"
)

// WorkerConfig configures a Worker.
type WorkerConfig struct {
	URL, Token string
	Name       string
	// Jobs is how many jobs the worker computes at once (≥ 1).
	Jobs int
	// DataPath, if set, is where the worker reads Fashion-MNIST (the
	// daemon's path may not exist here).
	DataPath string
	// Fingerprint is the worker's (Fingerprint() when empty; tests set
	// another to play a different machine).
	Fingerprint string
	MemoBudget  int64
	Logger      *slog.Logger
	// Families are the model families the worker computes with: the
	// daemon's (replayd registers the same list for both).
	Families []family.Family
}

// Worker pulls jobs of its fingerprint and computes them with
// scheduler.Runner.
type Worker struct {
	cfg      WorkerConfig
	instance string // random per process (resultMsg.Instance)
	log      *slog.Logger
	nc       *nats.Conn
	js       jetstream.JetStream
	comp     *scheduler.Computer

	done, ops, busy atomic.Int64

	mu struct {
		sync.Mutex
		cancelled map[string]uint64 // run → generations below are unwanted
		running   map[*running]struct{}
		// consumers are the bound consumers, by name: those of the
		// directory's runs whose data set is this worker's.
		consumers map[string]jetstream.Consumer
		changed   chan struct{} // closed when consumers change
		verdicts  map[string]verdict
		// changedModel are the consumers whose model changed here since
		// the worker started (refuseChanged), with the reason.
		changedModel map[string]string
	}
	dirCh   chan directory // the latest directory, for bindLoop
	cacheMu sync.Mutex
	cache   map[string][]float32 // input vectors by name
}

// verdict is whether the worker takes a run config's jobs.
type verdict struct {
	take bool
	why  string // of a refusal
}

type running struct {
	job    scheduler.Job
	cancel context.CancelFunc
}

// NewWorker connects to the NATS server.
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	if cfg.Jobs < 1 {
		cfg.Jobs = 1
	}
	if cfg.Fingerprint == "" {
		cfg.Fingerprint = Fingerprint()
	}
	w := &Worker{cfg: cfg, log: cfg.Logger, cache: map[string][]float32{}, instance: newInstance()}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.mu.cancelled = map[string]uint64{}
	w.mu.running = map[*running]struct{}{}
	w.mu.consumers = map[string]jetstream.Consumer{}
	w.mu.changed = make(chan struct{})
	w.mu.verdicts = map[string]verdict{}
	w.mu.changedModel = map[string]string{}
	w.dirCh = make(chan directory, 1)
	w.comp = scheduler.NewComputer(scheduler.DefaultOptions().WithFamilies(cfg.Families...).WithDataDir(cfg.DataPath).WithLogger(w.log))
	nc, err := connect(cfg.URL, cfg.Token, "replayd worker "+cfg.Name, w.log)
	if err != nil {
		return nil, err
	}
	w.nc = nc
	if w.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		return nil, fmt.Errorf("JetStream: %w", err)
	}
	return w, nil
}

// Run computes jobs until ctx ends; a job running then is handed back
// (Nak: redelivered at once to another worker). It returns nil after a
// clean stop.
func (w *Worker) Run(ctx context.Context) error {
	defer w.nc.Close()
	sub, err := w.nc.Subscribe(cancelSubject, w.onCancel)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", cancelSubject, err)
	}
	defer sub.Unsubscribe()
	dsub, err := w.nc.Subscribe(dirSubject, w.onDirectory)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", dirSubject, err)
	}
	defer dsub.Unsubscribe()
	w.log.Info("worker started", "name", w.cfg.Name, "jobs", w.cfg.Jobs, "fingerprint", w.cfg.Fingerprint, "nats", w.nc.ConnectedUrl())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		w.announceLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		w.bindLoop(ctx)
	}()
	for i := 0; i < w.cfg.Jobs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx)
		}()
	}
	wg.Wait()
	w.announce(true)
	if w.nc.IsConnected() {
		_ = w.nc.FlushTimeout(time.Second) // the goodbye; never wait for a server that is gone
	}
	w.log.Info("worker stopped", "name", w.cfg.Name, "done", w.done.Load())
	return nil
}

// onDirectory hands the daemon's latest directory to bindLoop (the
// newest wins: each one lists every open run).
func (w *Worker) onDirectory(m *nats.Msg) {
	var d directory
	if msgpack.Unmarshal(m.Data, &d) != nil {
		return
	}
	for {
		select {
		case w.dirCh <- d:
			return
		default:
		}
		select {
		case <-w.dirCh:
		default:
		}
	}
}

// bindLoop binds the worker to the consumers of the runs it can compute,
// as directories come.
func (w *Worker) bindLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-w.dirCh:
			w.bind(ctx, d)
		}
	}
}

// bind makes the bound consumers those of d's runs of the worker's
// fingerprint, or of fingerprint any, whose data set is the worker's (a run
// it refuses is never pulled from, so its jobs go to other workers).
func (w *Worker) bind(ctx context.Context, d directory) {
	own := "workers-" + FingerprintID(w.cfg.Fingerprint) + "-"
	anyFP := "workers-" + anyToken + "-"
	want := map[string]bool{}
	for _, de := range d.Runs {
		if (strings.HasPrefix(de.Consumer, own) || strings.HasPrefix(de.Consumer, anyFP)) && w.judge(ctx, de) {
			want[de.Consumer] = true
		}
	}
	w.mu.Lock()
	next := make(map[string]jetstream.Consumer, len(want))
	for name := range want {
		if c, ok := w.mu.consumers[name]; ok {
			next[name] = c
		}
	}
	w.mu.Unlock()
	for name := range want {
		if next[name] != nil {
			continue
		}
		c, err := w.js.Consumer(ctx, jobStream, name)
		if err != nil {
			w.log.Debug("bind to the jobs' consumer", "consumer", name, "err", err)
			continue // the next directory tries again
		}
		next[name] = c
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	same := len(next) == len(w.mu.consumers)
	for name := range next {
		if _, ok := w.mu.consumers[name]; !ok {
			same = false
		}
	}
	if !same {
		w.mu.consumers = next
		close(w.mu.changed)
		w.mu.changed = make(chan struct{})
	}
}

// judge decides, once per run config, whether the worker takes the run's
// jobs: when the run records no data hash, or when the data set loaded
// here hashes to the run's. A refusal is logged once, in one line.
func (w *Worker) judge(ctx context.Context, de dirEntry) bool {
	w.mu.Lock()
	v, ok := w.mu.verdicts[de.Config]
	if why, changed := w.mu.changedModel[de.Consumer]; changed && (!ok || v.take) {
		v, ok = verdict{why: why}, true
		w.mu.verdicts[de.Config] = v
	}
	w.mu.Unlock()
	if ok {
		return v.take
	}
	cfg, err := w.runConfig(ctx, de.Config)
	if err != nil {
		w.log.Debug("run config", "run", de.Run, "err", err)
		return false // not judged: the next directory tries again
	}
	cfg = w.localConfig(cfg)
	v = verdict{take: true}
	if cfg.DataHash != "" {
		h, err := w.comp.DataHash(ctx, cfg)
		switch {
		case ctx.Err() != nil:
			return false
		case err != nil:
			v = verdict{why: err.Error()}
			w.log.Error("refusing the run's jobs: its data set cannot be loaded here", "run", cfg.Name, "dataset", cfg.Dataset, "data_path", cfg.DataPath, "err", err)
		case h != cfg.DataHash:
			v = verdict{why: "data set differs"}
			w.log.Error("refusing the run's jobs: its data set differs here", "run", cfg.Name, "dataset", cfg.Dataset,
				"data_path", cfg.DataPath, "data_hash", h, "run_data_hash", cfg.DataHash)
		}
	}
	if v.take {
		w.log.Info("taking the run's jobs", "run", cfg.Name, "dataset", cfg.Dataset, "data_hash", cfg.DataHash)
	}
	w.mu.Lock()
	if len(w.mu.verdicts) >= 256 {
		clear(w.mu.verdicts) // runs come and go; judge again rather than grow
	}
	w.mu.verdicts[de.Config] = v
	w.mu.Unlock()
	return v.take
}

// refuseChanged stops the worker pulling from cons, whose runs' model
// changed here since the worker started (extmodel.ErrChanged): every run
// of the consumer has the model's data hash. One log line; the run config
// key is listed as refused in the announcements.
func (w *Worker) refuseChanged(cons jetstream.Consumer, key, run, why string) {
	name := ""
	if info := cons.CachedInfo(); info != nil {
		name = info.Name
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.verdicts[key] = verdict{why: why}
	if _, done := w.mu.changedModel[name]; done || name == "" {
		return
	}
	w.mu.changedModel[name] = why
	w.log.Error("refusing the run's jobs: its model changed here since this worker started (restart the worker to register it again)",
		"run", run, "err", why)
	if _, ok := w.mu.consumers[name]; ok {
		delete(w.mu.consumers, name)
		close(w.mu.changed)
		w.mu.changed = make(chan struct{})
	}
}

// localConfig is cfg with this machine's data path (--data-path) for the
// data sets read from files.
func (w *Worker) localConfig(cfg ckpt.RunConfig) ckpt.RunConfig {
	if w.cfg.DataPath != "" && cfg.Dataset == "fashion-mnist" {
		cfg.DataPath = w.cfg.DataPath
	}
	return cfg
}

// bound returns the bound consumers, in name order, and a channel closed
// when they change.
func (w *Worker) bound() ([]jetstream.Consumer, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	names := make([]string, 0, len(w.mu.consumers))
	for name := range w.mu.consumers {
		names = append(names, name)
	}
	slices.Sort(names)
	out := make([]jetstream.Consumer, len(names))
	for i, name := range names {
		out[i] = w.mu.consumers[name]
	}
	return out, w.mu.changed
}

func (w *Worker) onCancel(m *nats.Msg) {
	var c cancelMsg
	if msgpack.Unmarshal(m.Data, &c) != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if c.Gen > w.mu.cancelled[c.Run] {
		w.mu.cancelled[c.Run] = c.Gen
	}
	for r := range w.mu.running {
		if r.job.Run == c.Run && r.job.Generation < c.Gen {
			r.cancel()
		}
	}
}

func (w *Worker) announceLoop(ctx context.Context) {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		w.announce(false)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Worker) announce(stopping bool) {
	var refused []string
	w.mu.Lock()
	for key, v := range w.mu.verdicts {
		if !v.take {
			refused = append(refused, key)
		}
	}
	w.mu.Unlock()
	b, _ := msgpack.Marshal(announce{Name: w.cfg.Name, Fingerprint: w.cfg.Fingerprint, Slots: w.cfg.Jobs,
		Done: w.done.Load(), Ops: w.ops.Load(), Busy: int(w.busy.Load()), Stopping: stopping, Refused: refused})
	_ = w.nc.Publish(workerSubject, b)
}

// loop is one job slot: it fetches one job at a time (no prefetch), from
// the bound consumers in turn.
func (w *Worker) loop(ctx context.Context) {
	// As the in-process pool's workers do (scheduler/procs.go): a slot
	// spends its time in cgo BLAS calls, which lose their P otherwise.
	for _, f := range w.cfg.Families {
		if r, ok := f.(family.ProcReserver); ok {
			defer r.ReserveProc()()
			break
		}
	}
	runners := map[string]*runnerEntry{}
	for turn := 0; ctx.Err() == nil; turn++ {
		all, changed := w.bound()
		if len(all) == 0 {
			select {
			case <-ctx.Done():
			case <-changed:
			}
			continue
		}
		cons := all[turn%len(all)]
		// One consumer: a long poll. Several: a short one each, so that
		// no run waits long behind an idle one.
		wait := max(100*time.Millisecond, 2*time.Second/time.Duration(len(all)))
		batch, err := fetch(ctx, cons, 1, wait)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Debug("fetch jobs", "err", err)
				sleepCtx(ctx, 500*time.Millisecond)
			}
			continue
		}
		for m := range batch.Messages() {
			w.handle(ctx, cons, m, runners)
		}
	}
}

type runnerEntry struct {
	r  *scheduler.Runner
	in *msgInputs
}

func (w *Worker) handle(ctx context.Context, cons jetstream.Consumer, m jetstream.Msg, runners map[string]*runnerEntry) {
	var jm jobMsg
	if err := msgpack.Unmarshal(m.Data(), &jm); err != nil {
		w.log.Error("undecodable job dropped", "err", err)
		_ = m.Term()
		return
	}
	j := jm.Job
	meta, _ := m.Metadata()
	var delivery uint64
	if meta != nil {
		delivery = meta.NumDelivered
	}
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rn := &running{job: j, cancel: cancel}
	w.mu.Lock()
	if j.Generation < w.mu.cancelled[j.Run] {
		cancel()
	}
	w.mu.running[rn] = struct{}{}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.mu.running, rn)
		w.mu.Unlock()
	}()

	// Heartbeats: a long job tells JetStream it is alive, so AckWait
	// bounds the silence of a dead worker, not the length of a job.
	ackWait := DefaultAckWait
	if info := cons.CachedInfo(); info != nil && info.Config.AckWait > 0 {
		ackWait = info.Config.AckWait
	}
	hbDone := make(chan struct{})
	go func() {
		t := time.NewTicker(ackWait / 3)
		defer t.Stop()
		for {
			select {
			case <-hbDone:
				return
			case <-t.C:
				_ = m.InProgress()
			}
		}
	}()
	w.busy.Add(1)
	res, err := w.compute(jctx, jm, runners)
	w.busy.Add(-1)
	close(hbDone)
	if err != nil {
		// Inputs unreachable (the server restarting) or this machine
		// cannot compute the run: hand the job back.
		w.log.Warn("job handed back", "run", j.Run, "step", j.Step, "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	if res.Cancelled && ctx.Err() != nil {
		_ = m.Nak() // stopping: another worker takes it now
		return
	}
	if res.Err != "" && strings.Contains(res.Err, extmodel.ErrChanged.Error()) {
		// This machine's model file (or data) changed since the worker
		// started: its numbers are not the run's, and the failure is
		// this worker's, not the run's. Handed back, and the run's
		// consumer refused, as for a data set that differs here.
		delete(runners, jm.Config)
		w.refuseChanged(cons, jm.Config, j.Run, res.Err)
		_ = m.Nak()
		return
	}
	rm := resultMsg{Job: j, Metrics: res.Metrics, Applied: res.Applied, Err: res.Err, Cancelled: res.Cancelled, Worker: w.cfg.Name, Instance: w.instance, Delivery: delivery}
	// The result is worth publishing through a server restart (up to a
	// minute), but a stopping worker gives up after a short grace: the job
	// is redelivered after AckWait.
	pctx, pcancel := context.WithTimeout(context.Background(), time.Minute)
	defer pcancel()
	go func() {
		select {
		case <-ctx.Done():
			sleepCtx(pctx, 5*time.Second)
			pcancel()
		case <-pctx.Done():
		}
	}()
	if res.Theta != nil {
		corrupt(res.Theta)
		b := encodeVec(res.Theta)
		rm.Vec = b
	}
	if len(rm.Vec) > inlineMax {
		// A model's vector (MBs) goes through the object store.
		b := rm.Vec
		rm.Vec = nil
		rm.Theta = resultName(j.ID(), b)
		if _, err := retry(pctx, func() (*jetstream.ObjectInfo, error) {
			return objectStore(pctx, w.js, func(o jetstream.ObjectStore) (*jetstream.ObjectInfo, error) { return o.PutBytes(pctx, rm.Theta, b) })
		}); err != nil {
			w.log.Warn("result not stored; job handed back", "run", j.Run, "step", j.Step, "err", err)
			_ = m.Nak()
			return
		}
	}
	data, err := msgpack.Marshal(rm)
	if err != nil {
		_ = m.Nak()
		return
	}
	if _, err := retry(pctx, func() (*jetstream.PubAck, error) {
		return w.js.Publish(pctx, resultSubject+"."+token(j.Run), data)
	}); err != nil {
		w.log.Warn("result not published; job handed back", "run", j.Run, "step", j.Step, "err", err)
		_ = m.Nak()
		return
	}
	// Acked only now: a crash before this redelivers the job, and the
	// daemon drops the second result by its identity.
	if err := m.DoubleAck(pctx); err != nil {
		w.log.Debug("ack", "run", j.Run, "step", j.Step, "err", err)
	}
	w.done.Add(1)
	w.ops.Add(int64(res.Applied))
}

func objectStore[T any](ctx context.Context, js jetstream.JetStream, f func(jetstream.ObjectStore) (T, error)) (T, error) {
	o, err := js.ObjectStore(ctx, vectorBucket)
	if err != nil {
		var zero T
		return zero, err
	}
	return f(o)
}

// compute runs the job; an error means it was not computed here.
func (w *Worker) compute(ctx context.Context, jm jobMsg, runners map[string]*runnerEntry) (scheduler.Result, error) {
	slow(ctx) // fault injection (build tag replayfault): a long job
	if ctx.Err() != nil {
		return scheduler.Result{Job: jm.Job, Cancelled: true}, nil
	}
	re := runners[jm.Config]
	if re == nil {
		cfg, err := w.runConfig(ctx, jm.Config)
		if err != nil {
			return scheduler.Result{}, err
		}
		cfg = w.localConfig(cfg)
		in := &msgInputs{w: w, dim: cfg.Dim}
		r, err := w.comp.NewRunner(ctx, cfg, in, w.cfg.MemoBudget)
		if err != nil {
			return scheduler.Result{}, fmt.Errorf("run %q: %w", cfg.Name, err)
		}
		if len(runners) > 4 {
			clear(runners) // runs come and go; never hold more than a few
		}
		re = &runnerEntry{r: r, in: in}
		runners[jm.Config] = re
	}
	v, err := w.input(ctx, jm.Input, re.in.dim)
	if err != nil {
		return scheduler.Result{}, err
	}
	re.in.set(jm, v)
	return re.r.Compute(ctx, jm.Job), nil
}

func (w *Worker) runConfig(ctx context.Context, key string) (ckpt.RunConfig, error) {
	var cfg ckpt.RunConfig
	kv, err := w.js.KeyValue(ctx, runBucket)
	if err != nil {
		return cfg, fmt.Errorf("KV bucket %s: %w", runBucket, err)
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return cfg, fmt.Errorf("run config %s: %w", key, err)
	}
	if err := msgpack.Unmarshal(e.Value(), &cfg); err != nil {
		return cfg, fmt.Errorf("run config %s: %w", key, err)
	}
	return cfg, nil
}

// input returns the input vector name, from the cache or the object store
// (vectors are named by content hash, so a cached one is never stale).
func (w *Worker) input(ctx context.Context, name string, dim int) ([]float32, error) {
	w.cacheMu.Lock()
	v, ok := w.cache[name]
	w.cacheMu.Unlock()
	if ok {
		return v, nil
	}
	b, err := objectStore(ctx, w.js, func(o jetstream.ObjectStore) ([]byte, error) { return o.GetBytes(ctx, name) })
	if err != nil {
		return nil, fmt.Errorf("input vector %s: %w", name, err)
	}
	if inputName(b) != name {
		return nil, errors.New("input vector " + name + ": content does not match its hash")
	}
	if v, err = decodeVec(b, dim); err != nil {
		return nil, fmt.Errorf("input vector %s: %w", name, err)
	}
	w.cacheMu.Lock()
	if len(w.cache) >= 64 {
		clear(w.cache)
	}
	w.cache[name] = v
	w.cacheMu.Unlock()
	return v, nil
}

// msgInputs is a run's scheduler.JobInputs on a worker: the vector of the
// job being computed (the Runner computes one job at a time).
type msgInputs struct {
	w   *Worker
	dim int
	jm  jobMsg
	vec []float32
}

func (in *msgInputs) set(jm jobMsg, v []float32) { in.jm, in.vec = jm, v }

// AnchorStart implements scheduler.JobInputs.
func (in *msgInputs) AnchorStart(run string, seg int) ([]float32, error) {
	if in.jm.Job.StartForward || seg != in.jm.Job.Segment {
		return nil, fmt.Errorf("anchor start of segment %d: not sent with the job", seg)
	}
	return in.vec, nil
}

// NearestCheckpoint implements scheduler.JobInputs.
func (in *msgInputs) NearestCheckpoint(run string, k int, dst []float32) (int, error) {
	if !in.jm.Job.StartForward || in.jm.InputStep > k {
		return 0, fmt.Errorf("forward checkpoint ≤ %d: not sent with the job", k)
	}
	copy(dst, in.vec)
	return in.jm.InputStep, nil
}

// newInstance is a random name for this Worker's process life.
func newInstance() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return hex.EncodeToString(b[:])
}
