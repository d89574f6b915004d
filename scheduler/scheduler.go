package scheduler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/internal/echo"
)

// Scheduler trains runs forward and computes their backward iterates with a
// bounded worker pool. Its methods are safe for concurrent use.
type Scheduler struct {
	store *ckpt.Store
	opts  Options
	log   *slog.Logger
	met   *collectors

	jobs chan Job // unbuffered: a job is handed to a free worker
	pool *pool    // the in-process executor over jobs
	exec Executor // pool, or Options.Executor
	wg   sync.WaitGroup
	// loops counts the backward loops running now; each may keep at most
	// its fair share of the workers busy (bwdLoop.flightLimit).
	loops atomic.Int32

	evMu sync.Mutex // serialises Options.Events

	// bus is the event stream (events.go), made on first use.
	busOnce sync.Once
	bus     *broker

	dataMu sync.Mutex // guards data only; never held while loading
	data   map[dataKey]*dataLoad

	// query holds a token per recomputation running for a query (Params,
	// Verify): at most Options.QuerySlots at once.
	query       chan struct{}
	queryActive atomic.Int32
	// queryHook, if set (tests), is called with the number of
	// recomputations running once a query has taken its slot.
	queryHook func(active int)

	mu struct {
		sync.Mutex
		runs    map[string]*run
		ctx     context.Context // of Run; nil when not running
		started bool
	}
}

// New returns a scheduler over store. It loads the runs but starts nothing
// until Run.
func New(store *ckpt.Store, opts Options) (*Scheduler, error) {
	if store == nil {
		return nil, errors.New("scheduler: nil store")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Scheduler{store: store, opts: opts, log: opts.Logger, jobs: make(chan Job),
		data: map[dataKey]*dataLoad{}, query: make(chan struct{}, opts.querySlots())}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.met = newCollectors(s)
	s.pool = newPool(s.jobs, s.met)
	s.exec = s.pool
	if opts.Executor != nil {
		s.exec = remoteAdapter{opts.Executor}
	}
	s.mu.runs = map[string]*run{}
	names, err := store.Runs()
	if err != nil {
		return nil, fmt.Errorf("scheduler: list runs: %w", err)
	}
	// One bad run never keeps the others from being served: a run whose
	// records cannot be read, or that is over the limits, is failed with
	// the reason (step 0: it can be resumed once the cause is fixed).
	for _, name := range names {
		r, err := s.loadRun(name)
		if err != nil {
			s.log.Error("run cannot be loaded", "run", name, "err", err)
		}
		s.mu.runs[name] = r
	}
	return s, nil
}

// loadRun reads a run from the store and checks a running one against the
// admission limits. A run that cannot be read is returned failed in memory
// only (its records stay as they are for `replayctl verify`); one over the
// limits is marked failed in the store. The error says what went wrong.
func (s *Scheduler) loadRun(name string) (*run, error) {
	cfg, st, err := s.store.Run(name)
	if err != nil {
		err = fmt.Errorf("load run %q: %w", echo.Clip(name), err)
		r := newRun(s, ckpt.RunConfig{Name: name}, ckpt.RunState{State: ckpt.StateFailed, Reason: "cannot load: " + oneLine(err.Error())})
		r.broken = true
		return r, err
	}
	r := newRun(s, cfg, st)
	r.loadSummary()
	if st.State == ckpt.StateRunning {
		if _, aerr := admit(cfg, s.opts); aerr != nil {
			r.fail(0, "cannot start: "+oneLine(aerr.Error()))
			return r, aerr
		}
	}
	return r, nil
}

// oneLine folds a message to one line (joined errors have several).
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// loadSummary fills the status fields that come from the store (anchor,
// last losses) for a run that is not computing.
func (r *run) loadSummary() {
	if as, err := r.s.store.Anchors(r.name); err == nil && len(as) > 0 {
		a := slices.MaxFunc(as, func(x, y ckpt.AnchorRec) int { return x.Segment - y.Segment })
		r.mu.anchor = api.AnchorInfo{Segment: a.Segment, Step: a.Step, From: a.From}
	}
	st := r.mu.st
	from := max(1, st.ForwardStep-r.cfg.EvalEvery)
	_ = r.s.store.ForwardMetrics(r.name, from, st.ForwardStep, func(m ckpt.Metrics) error {
		if m.Loss == m.Loss {
			r.mu.fwdLoss = ptr(m.Loss)
		}
		return nil
	})
	from = max(1, st.BackwardStep-r.cfg.EvalEvery)
	_ = r.s.store.BackwardMetrics(r.name, from, st.BackwardStep, func(m ckpt.Metrics) error {
		if m.Loss == m.Loss {
			r.mu.bwdLoss = ptr(m.Loss)
		}
		return nil
	})
}

// Run resumes every running run and computes until ctx is done; then it
// stops every run (jobs in flight are cancelled, finished results and
// logged steps are written) and returns nil. Run may be called again after
// it returned.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.mu.started {
		s.mu.Unlock()
		return fmt.Errorf("scheduler: Run called twice: %w", ErrConflict)
	}
	s.mu.started, s.mu.ctx = true, ctx
	quit := make(chan struct{})
	var workers sync.WaitGroup
	// With an executor the pool would get no job (s.exec is the
	// executor's): its goroutines, each holding a P (reserveWorkerProc),
	// are not started.
	for range s.poolSize() {
		workers.Add(1)
		go func() {
			defer workers.Done()
			s.worker(quit)
		}()
	}
	for _, name := range s.sortedNames() {
		r := s.mu.runs[name]
		if r.state().State == ckpt.StateRunning {
			r.start(ctx)
		}
	}
	s.mu.Unlock()
	if _, ok := s.opts.Executor.(waiter); ok {
		workers.Add(1)
		go func() {
			defer workers.Done()
			s.watchWaiting(quit) // remote.go
		}()
	}

	<-ctx.Done()

	s.mu.Lock()
	s.mu.ctx = nil
	runs := make([]*run, 0, len(s.mu.runs))
	for _, r := range s.mu.runs {
		runs = append(runs, r)
	}
	s.mu.Unlock()
	for _, r := range runs {
		r.stop()
	}
	s.wg.Wait()
	close(quit)
	workers.Wait()
	// Streams end with the scheduler, so that the HTTP server's shutdown
	// does not wait for them; clients resume from their cursor.
	s.eventBroker().endAll()
	s.mu.Lock()
	s.mu.started = false
	s.mu.Unlock()
	return nil
}

func (s *Scheduler) sortedNames() []string {
	names := make([]string, 0, len(s.mu.runs))
	for n := range s.mu.runs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// event publishes one event, "KIND k=v…", on the event stream and writes
// it as one line to Options.Events. It may be called under Scheduler.mu
// and run.mu: the broker's lock is a leaf.
func (s *Scheduler) event(runName, format string, a ...any) {
	text := fmt.Sprintf(format, a...)
	kind, fields, err := parseEventLine(text)
	if err != nil {
		s.log.Error("scheduler: event", "run", runName, "err", err)
	}
	s.eventBroker().publish(api.Event{Run: runName, Kind: kind, Fields: fields})
	s.writeEventLine(runName, text)
}

// writeEventLine writes one line to Options.Events.
func (s *Scheduler) writeEventLine(runName, text string) {
	if s.opts.Events == nil {
		return
	}
	line := fmt.Sprintf("run=%s event=%s\n", runName, text)
	s.evMu.Lock()
	defer s.evMu.Unlock()
	_, _ = io.WriteString(s.opts.Events, line)
}

func (s *Scheduler) get(name string) (*run, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.mu.runs[name]
	if !ok {
		return nil, fmt.Errorf("run %q: %w", echo.Clip(name), ErrNotFound)
	}
	return r, nil
}

// Create resolves spec (presets, defaults), stores the run with its initial
// parameters and starts it if the scheduler is running. A run without a
// name gets "<preset or model>-<k>" with the smallest free k.
func (s *Scheduler) Create(spec api.RunSpec) (api.RunStatus, error) {
	st, err := s.create(spec)
	return st, withAPI(err)
}

func (s *Scheduler) create(spec api.RunSpec) (api.RunStatus, error) {
	cfg, err := Resolve(s.opts.Families, spec, s.opts.Window)
	if err != nil {
		return api.RunStatus{}, err
	}
	if cfg.DataPath == "" && cfg.Dataset == "fashion-mnist" && s.opts.DataDir != "" {
		cfg.DataPath = s.opts.DataDir
	}
	// Admission control before anything is loaded, allocated or stored.
	if _, err := admit(cfg, s.opts); err != nil {
		return api.RunStatus{}, err
	}
	// Load the data now so that a missing data set is a clear error of the
	// request rather than a failed run.
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.dataTimeout())
	defer cancel()
	f, err := s.opts.familyOf(cfg.Model)
	if err != nil {
		return api.RunStatus{}, err
	}
	l, err := s.load(ctx, f, cfg)
	if err != nil {
		return api.RunStatus{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	m, err := f.Open(familySpec(cfg), l.p)
	if err != nil {
		return api.RunStatus{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	// Remote workers refuse the run if their copy of the data differs, and
	// this daemon refuses to go on with it on other files after a restart
	// (checkData).
	if cfg.DataHash, err = l.dataHash(f, familySpec(cfg)); err != nil {
		return api.RunStatus{}, err
	}
	theta0 := make([]float32, m.Dim())
	if err := m.Init(theta0); err != nil {
		return api.RunStatus{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	cfg.Dim = m.Dim()

	s.mu.Lock()
	defer s.mu.Unlock()
	if cfg.Name == "" {
		base := spec.Preset
		if base == "" {
			base = strings.ReplaceAll(cfg.Model, ":", "-")
		}
		for k := 1; ; k++ {
			name := fmt.Sprintf("%s-%d", base, k)
			if _, ok := s.mu.runs[name]; !ok {
				cfg.Name = name
				break
			}
		}
	}
	if _, ok := s.mu.runs[cfg.Name]; ok {
		return api.RunStatus{}, fmt.Errorf("run %q exists: %w", cfg.Name, ErrConflict)
	}
	if err := s.store.CreateRun(cfg, theta0); err != nil {
		if errors.Is(err, ckpt.ErrRunExists) {
			return api.RunStatus{}, fmt.Errorf("run %q exists: %w", cfg.Name, ErrConflict)
		}
		return api.RunStatus{}, fmt.Errorf("create run %q: %w", cfg.Name, err)
	}
	st := ckpt.RunState{State: ckpt.StateRunning}
	for _, n := range cfg.ResetAt {
		st.PendingResets = append(st.PendingResets, ckpt.Reset{Step: n, From: cfg.ResetFrom})
	}
	if err := s.store.PutState(cfg.Name, st); err != nil {
		return api.RunStatus{}, fmt.Errorf("create run %q: %w", cfg.Name, err)
	}
	r := newRun(s, cfg, st)
	r.mu.anchor = api.AnchorInfo{Segment: 0, Step: 0, From: ckpt.FromInit}
	s.mu.runs[cfg.Name] = r
	s.event(cfg.Name, "created model=%s dataset=%s steps=%d strategy=%s window=%d policy=%s backward_from=%d",
		cfg.Model, cfg.Dataset, cfg.Steps, cfg.Strategy, cfg.Window, cfg.ResetPolicy, cfg.BackwardFrom)
	s.event(cfg.Name, "anchor segment=0 step=0 from=init reason=create")
	for _, p := range st.PendingResets {
		s.event(cfg.Name, "reset-scheduled at=%d from=%s", p.Step, p.From)
	}
	if s.mu.ctx != nil {
		r.start(s.mu.ctx)
	}
	return r.status(), nil
}

// List returns the status of every run, sorted by name.
func (s *Scheduler) List() []api.RunStatus {
	s.mu.Lock()
	names := s.sortedNames()
	runs := make([]*run, len(names))
	for i, n := range names {
		runs[i] = s.mu.runs[n]
	}
	s.mu.Unlock()
	out := make([]api.RunStatus, len(runs))
	for i, r := range runs {
		out[i] = r.status()
	}
	return out
}

// Status returns one run's status.
func (s *Scheduler) Status(name string) (api.RunStatus, error) {
	r, err := s.get(name)
	if err != nil {
		return api.RunStatus{}, err
	}
	return r.status(), nil
}

// Pause stops a running run's computation; its state becomes paused.
// Pausing a paused or done run changes nothing; a failed run cannot be
// paused.
func (s *Scheduler) Pause(name string) (api.RunStatus, error) {
	r, err := s.get(name)
	if err != nil {
		return api.RunStatus{}, err
	}
	var conflict string
	err = r.update(func(st *ckpt.RunState) bool {
		switch st.State {
		case ckpt.StateFailed:
			conflict = "failed"
			return false
		case ckpt.StateRunning:
			st.State, st.Reason = ckpt.StatePaused, "paused by request"
			return true
		}
		return false
	})
	if err != nil {
		return api.RunStatus{}, fmt.Errorf("pause %q: %w", name, err)
	}
	if conflict != "" {
		return api.RunStatus{}, fmt.Errorf("run %q has failed: %w", name, ErrConflict)
	}
	r.stop()
	s.publishState(r)
	return r.status(), nil
}

// Resume restarts a paused run. Resuming a running or done run changes
// nothing. A run paused for a full disk retries its writes at once when
// they would fit now, and is refused with the store's reason (ErrNoSpace)
// while they would not. A run that failed to start (FailedStep 0: its records could not
// be read, it is over the limits, its data set could not be loaded) is
// revived once the cause is gone: the records are read again, admission
// and the data set are checked, and it runs on from where it stopped; while
// the cause remains the error says why (ErrTooLarge, ErrConflict); so is
// one whose write the store failed (ckpt.ErrWrite). A run that failed
// while computing (divergence, a refused record at a step) stays failed
// (ErrConflict): its results would fail again the same way.
func (s *Scheduler) Resume(name string) (api.RunStatus, error) {
	r, err := s.get(name)
	if err != nil {
		return api.RunStatus{}, err
	}
	if st := r.state(); st.State == ckpt.StateFailed && st.FailedStep == 0 {
		return s.revive(r)
	}
	if err := r.resumeFull(); err != nil {
		return api.RunStatus{}, withAPI(fmt.Errorf("resume %q: %w", name, err))
	}
	failed := false
	err = r.update(func(st *ckpt.RunState) bool {
		switch st.State {
		case ckpt.StateFailed:
			failed = true
		case ckpt.StatePaused:
			st.State, st.Reason = ckpt.StateRunning, ""
			return true
		}
		return false
	})
	if err != nil {
		return api.RunStatus{}, fmt.Errorf("resume %q: %w", name, err)
	}
	if failed {
		return api.RunStatus{}, fmt.Errorf("run %q has failed and cannot resume: %w", name, ErrConflict)
	}
	s.startIfRunning(r)
	s.publishState(r)
	return r.status(), nil
}

// revive is Resume of a run that failed to start.
func (s *Scheduler) revive(old *run) (api.RunStatus, error) {
	name := old.name
	old.stop()
	cfg, st, err := s.store.Run(name)
	if err != nil {
		return api.RunStatus{}, fmt.Errorf("resume %q: %w: %w", echo.Clip(name), ErrConflict, err)
	}
	if _, err := admit(cfg, s.opts); err != nil {
		return api.RunStatus{}, fmt.Errorf("resume %q: %w", echo.Clip(name), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.dataTimeout())
	defer cancel()
	f, err := s.opts.familyOf(cfg.Model)
	if err != nil {
		return api.RunStatus{}, fmt.Errorf("resume %q: %w", echo.Clip(name), err)
	}
	if _, err := s.loadData(ctx, f, cfg); err != nil {
		return api.RunStatus{}, fmt.Errorf("resume %q: %w: %w", echo.Clip(name), ErrConflict, err)
	}
	if st.State == ckpt.StateFailed && st.FailedStep == 0 {
		st.State, st.Reason = ckpt.StateRunning, ""
	}
	r := newRun(s, cfg, st)
	r.loadSummary()
	s.mu.Lock()
	if s.mu.runs[name] != old {
		s.mu.Unlock()
		return api.RunStatus{}, fmt.Errorf("run %q changed while resuming: %w", echo.Clip(name), ErrConflict)
	}
	if err := s.store.PutState(name, st); err != nil {
		s.mu.Unlock()
		return api.RunStatus{}, fmt.Errorf("resume %q: %w", echo.Clip(name), err)
	}
	s.mu.runs[name] = r
	s.mu.Unlock()
	s.event(name, "resumed after failure")
	s.startIfRunning(r)
	return r.status(), nil
}

func (s *Scheduler) startIfRunning(r *run) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.ctx != nil && r.state().State == ckpt.StateRunning && s.mu.runs[r.name] == r {
		r.start(s.mu.ctx)
	}
}

// Delete stops a run and removes it and all its records.
func (s *Scheduler) Delete(name string) error {
	r, err := s.get(name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.mu.closed = true
	r.mu.Unlock()
	r.stop()
	s.mu.Lock()
	if s.mu.runs[name] == r {
		delete(s.mu.runs, name)
	}
	s.mu.Unlock()
	if err := s.store.DeleteRun(name); err != nil {
		// Nothing was deleted (the store refused or failed the write
		// before the run's config went): the run is back as it was.
		s.mu.Lock()
		if _, taken := s.mu.runs[name]; !taken {
			s.mu.runs[name] = r
		}
		s.mu.Unlock()
		r.mu.Lock()
		r.mu.closed = false
		r.mu.Unlock()
		s.startIfRunning(r)
		return withAPI(fmt.Errorf("delete %q: %w", name, err))
	}
	s.event(name, "deleted")
	return nil
}

// Reset moves the backward anchor of a run to step req.At, starting from
// the backward (default) or forward iterate there. A step up to the
// backward frontier is applied at once (later iterates are recomputed
// under the new anchor; earlier segments stay stored); a later step is
// applied when the frontier reaches it. A step beyond the run's steps or
// before backward_from is ErrInvalid; a failed run is ErrConflict. A reset
// of a done run reopens its backward computation.
func (s *Scheduler) Reset(name string, req api.ResetRequest) (api.RunStatus, error) {
	r, err := s.get(name)
	if err != nil {
		return api.RunStatus{}, err
	}
	from := req.From
	if from == "" {
		from = FromBackward
	}
	lo := max(1, r.cfg.BackwardFrom)
	switch {
	case from != FromBackward && from != FromForward:
		return api.RunStatus{}, fmt.Errorf("reset from %q: want backward or forward: %w", req.From, ErrInvalid)
	case req.At > r.cfg.Steps:
		return api.RunStatus{}, fmt.Errorf("reset at %d: run %q has only %d steps: %w", req.At, name, r.cfg.Steps, ErrInvalid)
	case req.At < lo:
		return api.RunStatus{}, fmt.Errorf("reset at %d: must be ≥ %d (backward iterates start after step %d): %w", req.At, lo, r.cfg.BackwardFrom, ErrInvalid)
	}
	var conflict bool
	var when string
	err = r.updateThen(func(st *ckpt.RunState) bool {
		if st.State == ckpt.StateFailed {
			conflict = true
			return false
		}
		when = "immediate"
		if req.At > st.ForwardStep {
			when = "scheduled"
		}
		st.PendingResets = append(st.PendingResets, ckpt.Reset{Step: req.At, From: from})
		sortResets(st.PendingResets)
		if st.State == ckpt.StateDone {
			st.State = ckpt.StateRunning
		}
		return true
	}, func() {
		// Under the run's lock: before the backward loop can see the reset.
		s.event(name, "reset-requested at=%d from=%s when=%s", req.At, from, when)
	})
	if err != nil {
		return api.RunStatus{}, fmt.Errorf("reset %q: %w", name, err)
	}
	if conflict {
		return api.RunStatus{}, fmt.Errorf("run %q has failed: %w", name, ErrConflict)
	}
	kick(r.bwdKick)
	s.startIfRunning(r)
	return r.status(), nil
}
