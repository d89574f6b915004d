package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/replay-sgd/replay/ckpt"
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
	cfg  WorkerConfig
	log  *slog.Logger
	nc   *nats.Conn
	js   jetstream.JetStream
	comp *scheduler.Computer

	done, ops, busy atomic.Int64

	mu struct {
		sync.Mutex
		cancelled map[string]uint64 // run → generations below are unwanted
		running   map[*running]struct{}
	}
	cacheMu sync.Mutex
	cache   map[string][]float32 // input vectors by name
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
	w := &Worker{cfg: cfg, log: cfg.Logger, cache: map[string][]float32{}}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.mu.cancelled = map[string]uint64{}
	w.mu.running = map[*running]struct{}{}
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
	cons, err := w.consumer(ctx)
	if err != nil {
		return err
	}
	w.log.Info("worker started", "name", w.cfg.Name, "jobs", w.cfg.Jobs, "fingerprint", w.cfg.Fingerprint, "nats", w.nc.ConnectedUrl())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.announceLoop(ctx)
	}()
	for i := 0; i < w.cfg.Jobs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx, cons)
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

// consumer binds to the durable consumer of the worker's fingerprint,
// creating it (and waiting for the daemon's streams) if needed.
func (w *Worker) consumer(ctx context.Context) (jetstream.Consumer, error) {
	fp := FingerprintID(w.cfg.Fingerprint)
	for {
		s, err := w.js.Stream(ctx, jobStream)
		if err == nil {
			c, cerr := s.Consumer(ctx, "workers-"+fp)
			if cerr == nil {
				return c, nil
			}
			// Not made by a daemon of this fingerprint: make it with the
			// defaults, so that the worker is ready when such a run comes.
			c, cerr = s.CreateOrUpdateConsumer(ctx, jobConsumer(fp, DefaultAckWait, DefaultMaxDeliver))
			if cerr == nil {
				return c, nil
			}
			err = cerr
		}
		w.log.Info("waiting for the daemon's job stream", "err", err)
		sleepCtx(ctx, time.Second)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
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
	b, _ := msgpack.Marshal(announce{Name: w.cfg.Name, Fingerprint: w.cfg.Fingerprint, Slots: w.cfg.Jobs,
		Done: w.done.Load(), Ops: w.ops.Load(), Busy: int(w.busy.Load()), Stopping: stopping})
	_ = w.nc.Publish(workerSubject, b)
}

// loop is one job slot: it fetches one job at a time (no prefetch).
func (w *Worker) loop(ctx context.Context, cons jetstream.Consumer) {
	runners := map[string]*runnerEntry{}
	for ctx.Err() == nil {
		batch, err := fetch(ctx, cons, 1, 2*time.Second)
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
	rm := resultMsg{Job: j, Metrics: res.Metrics, Applied: res.Applied, Err: res.Err, Cancelled: res.Cancelled, Worker: w.cfg.Name, Delivery: delivery}
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
	if ctx.Err() != nil {
		return scheduler.Result{Job: jm.Job, Cancelled: true}, nil
	}
	re := runners[jm.Config]
	if re == nil {
		cfg, err := w.runConfig(ctx, jm.Config)
		if err != nil {
			return scheduler.Result{}, err
		}
		if w.cfg.DataPath != "" && cfg.Dataset == "fashion-mnist" {
			cfg.DataPath = w.cfg.DataPath
		}
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
