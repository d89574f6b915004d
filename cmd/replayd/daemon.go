package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/pflag"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/extmodel"
	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/nnfamily"
	"github.com/replay-sgd/replay/scheduler"
	"github.com/replay-sgd/replay/server"
)

// storeDirName is the store's directory inside the data directory (the
// socket sits beside it).
const storeDirName = "store"

// run is the whole daemon; main only prints its error. It returns nil after
// a clean shutdown (SIGTERM, SIGINT) and for --help.
func run(args []string, stdout, stderr io.Writer) error {
	// Signals are caught from the start: one during start-up (loading a data
	// set for --run-preset) ends the daemon cleanly as soon as it is up.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if len(args) > 0 && args[0] == "repair" {
		return runRepair(args[1:], stdout, stderr)
	}
	return runDaemon(args, stdout, stderr, sigs, nil)
}

// runDaemon is run with the signals as a channel (tests send their own) and
// an optional ready callback, called with the listen address once the API
// is being served.
func runDaemon(args []string, stdout, stderr io.Writer, sigs <-chan os.Signal, ready func(addr string)) (err error) {
	cfg, err := parseFlags(args, stdout)
	if errors.Is(err, pflag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	if cfg.memLimitMiB > 0 {
		debug.SetMemoryLimit(int64(cfg.memLimitMiB) << 20)
	}

	privateUmask()
	if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	if fi, err := os.Stat(cfg.dataDir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the data directory was open to other users; making it 0700", "dir", cfg.dataDir, "mode", fi.Mode().Perm().String())
		if err := os.Chmod(cfg.dataDir, 0o700); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
	}
	ep, err := parseListen(cfg.listen, cfg.dataDir, cfg.token != "")
	if err != nil {
		return err
	}
	if ep.network == "unix" {
		// Before the store: a live daemon gets the clearer message.
		if err := clearStaleSocket(ep.addr, log); err != nil {
			return err
		}
	}

	minFree := int64(defaultMinFreeDisk)
	if cfg.minFreeDisk.set {
		minFree = cfg.minFreeDisk.n
	}
	storeOpts := ckpt.DefaultOptions(filepath.Join(cfg.dataDir, storeDirName)).WithLogger(log).WithMinFreeDisk(minFree).WithCloseTimeout(cfg.shutdownGrace)
	store, err := ckpt.Open(storeOpts)
	if errors.Is(err, ckpt.ErrDamaged) {
		return fmt.Errorf("open store: %w; `replayd repair --data-dir %s` backs it up and salvages it", err, cfg.dataDir)
	}
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer func() {
		if cerr := store.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	recordCrashes(cfg.dataDir, log) // crash.go; after the store's lock: no other daemon runs here

	maxMem, maxDisk, err := runLimits(cfg)
	if err != nil {
		return err
	}
	// External models are registered once, here: their children answer
	// hello before the daemon serves (a failed hello: exit 1). They are
	// shut down after the scheduler stopped (the deferred calls run after
	// runGroup returned).
	ext, err := startExtModels(context.Background(), cfg.ext, cfg.extModels, cfg.workers+2, log) // extmodels.go
	if err != nil {
		return err
	}
	defer ext.Close()
	remoteEx, stopRemote, err := startRemote(cfg, modelFamilies(ext), log) // remote.go
	if err != nil {
		return err
	}
	defer stopRemote()
	opts := scheduler.DefaultOptions().WithFamilies(modelFamilies(ext)...)
	if remoteEx != nil {
		opts = opts.WithExecutor(remoteEx)
	}
	sched, err := scheduler.New(store, opts.
		WithWindow(cfg.window).
		WithWorkers(cfg.workers).
		WithMaxLag(cfg.maxLag).
		WithDataDir(cfg.datasetDir).
		WithMaxParams(scheduler.MaxParamsForValueSize(storeOpts.ValueLogFileSize)).
		WithMaxRunMemory(maxMem).
		WithMaxRunDisk(maxDisk).
		WithQuerySlots(cfg.querySlots).
		WithLogger(log))
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if remoteEx != nil {
		reg.MustRegister(remoteEx) // remote.go
	}
	if err := sched.Register(reg); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	if cfg.runPreset != "" && len(sched.List()) == 0 {
		st, err := sched.Create(api.RunSpec{Preset: cfg.runPreset})
		if err != nil {
			return fmt.Errorf("--run-preset %s: %w", cfg.runPreset, err)
		}
		log.Info("created run from preset", "run", st.Name, "preset", cfg.runPreset, "steps", st.Steps)
	}

	ln, err := listen(ep)
	if err != nil {
		return err
	}
	be := backend{Scheduler: sched, store: store}
	if remoteEx != nil {
		be.remote = remoteEx
	}
	handler := server.New(be, server.Options{Token: cfg.token, Logger: log, Registry: reg, Workers: workerList(remoteEx), Models: ext.ModelList})
	httpd := newHTTPComponent(ln, handler, log, cfg.shutdownMax)

	where := ep.String()
	if ep.network == "tcp" {
		where = ln.Addr().String() // the port chosen for ":0"
	}
	log.Info("replayd started", "listen", where, "data_dir", cfg.dataDir, "memory_limit_mib", cfg.memLimitMiB,
		"window", cfg.window, "workers", cfg.workers, "auth", cfg.token != "", "pid", os.Getpid(),
		"max_run_memory", scheduler.FormatBytes(maxMem), "max_run_disk", scheduler.FormatBytes(maxDisk),
		"max_params", scheduler.MaxParamsForValueSize(storeOpts.ValueLogFileSize), "query_slots", cfg.querySlots)
	if ready != nil {
		ready(where)
	}
	err = runGroup(context.Background(),
		component{"signals", signalHandler(sigs, log)},
		component{"scheduler", sched.Run},
		component{"http", httpd.run},
	)
	if err != nil {
		log.Error("replayd stopped on an error", "err", err)
		return err
	}
	log.Info("replayd stopped")
	return nil
}

// runLimits returns the per-run memory and disk limits: the flags when
// given, else the machine's defaults (limits.go).
func runLimits(cfg config) (mem, disk int64, err error) {
	mem, disk = cfg.maxRunMemory.n, cfg.maxRunDisk.n
	if !cfg.maxRunMemory.set {
		mem = defaultRunMemory(totalMemory(), cfg.memLimitMiB)
	}
	if !cfg.maxRunDisk.set {
		free, err := freeDisk(cfg.dataDir)
		if err != nil {
			return 0, 0, err
		}
		disk = defaultRunDisk(free)
	}
	return mem, disk, nil
}

// signalHandler returns a component that ends at the first signal on sigs
// (and so ends the group).
func signalHandler(sigs <-chan os.Signal, log *slog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		select {
		case sig := <-sigs:
			log.Info("shutting down", "signal", sig.String())
		case <-ctx.Done():
		}
		return nil
	}
}

// httpComponent serves the API on a listener and, at shutdown, stops
// accepting, lets open requests finish for up to grace, then closes the
// rest and waits for their handlers: no handler touches the store after the
// component returned.
type httpComponent struct {
	srv      *http.Server
	ln       net.Listener
	log      *slog.Logger
	grace    time.Duration
	inflight tracker
}

func newHTTPComponent(ln net.Listener, h http.Handler, log *slog.Logger, grace time.Duration) *httpComponent {
	c := &httpComponent{ln: ln, log: log, grace: grace}
	c.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !c.inflight.enter() {
				w.Header().Set("Connection", "close")
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				io.WriteString(w, `{"error":"replayd is shutting down"}`+"\n")
				return
			}
			defer c.inflight.leave()
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute, // bodies are small (server.DefaultMaxBodyBytes)
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return c
}

func (c *httpComponent) run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- c.srv.Serve(c.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), c.grace)
	defer cancel()
	if err := c.srv.Shutdown(sctx); err != nil {
		c.log.Warn("open requests cut at shutdown", "err", err)
		c.srv.Close()
	}
	<-errc // Serve returned http.ErrServerClosed
	// Shutdown and Close do not wait for handlers whose connection was cut;
	// their request contexts are cancelled, so they end promptly.
	if !c.inflight.closeAndWait(c.grace) {
		return errors.New("request handlers still running after shutdown")
	}
	return nil
}

// tracker counts running handlers; once closed it admits no new one.
type tracker struct {
	mu struct {
		sync.Mutex
		n      int
		closed bool
		zero   chan struct{} // closed when n drops to 0 after closing
	}
}

func (t *tracker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return false
	}
	t.mu.n++
	return true
}

func (t *tracker) leave() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mu.n--
	if t.mu.n == 0 && t.mu.zero != nil {
		close(t.mu.zero)
		t.mu.zero = nil
	}
}

// closeAndWait stops admitting handlers and waits up to d for the running
// ones; it reports whether they all finished.
func (t *tracker) closeAndWait(d time.Duration) bool {
	t.mu.Lock()
	t.mu.closed = true
	if t.mu.n == 0 {
		t.mu.Unlock()
		return true
	}
	zero := make(chan struct{})
	t.mu.zero = zero
	t.mu.Unlock()
	select {
	case <-zero:
		return true
	case <-time.After(d):
		return false
	}
}

// backend is the scheduler as the server's backend, with the store's and
// the remote engine's health for /healthz (server's optional healther
// capability).
type backend struct {
	*scheduler.Scheduler
	store  *ckpt.Store
	remote interface{ Health() error } // nil without remote workers
}

// Health is nil while the store accepts writes and, with remote workers,
// the daemon is connected to the NATS server; a full disk (below
// --min-free-disk) is reported until a write would fit again, a write the
// store failed (EIO, a read-only file system) until the same kind of write
// succeeds again.
func (b backend) Health() error {
	if err := b.store.Gone(); err != nil {
		return err
	}
	if err := b.store.WriteProblem(); err != nil {
		return err
	}
	if err := b.store.StillFull(); err != nil {
		return err
	}
	if b.remote != nil {
		return b.remote.Health()
	}
	return nil
}

// modelFamilies are the model families the daemon (and repair, and a
// worker) registers: the built-in Go models and, when ext is not nil, the
// external models registered at start. Every scheduler the binary builds
// takes this list, so that a run stored by the daemon is understood by
// repair.
func modelFamilies(ext *extmodel.Family) []family.Family {
	fams := []family.Family{nnfamily.New()}
	if ext != nil {
		fams = append(fams, ext)
	}
	return fams
}
