package scheduler

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"time"

	"github.com/replay-sgd/replay/family"
)

// Options configure a Scheduler. Build them with DefaultOptions and the WithX
// setters; New calls Validate.
type Options struct {
	// Window is the default window W of new runs that do not set one.
	Window int
	// Workers is the size of the backward worker pool: at most this many
	// jobs run at once, over all runs. With an Executor the pool is not
	// started (every job goes to the executor, which has its own workers:
	// replayd gives the executor an in-process worker of Workers slots);
	// Workers then only sizes the memory admission counts.
	Workers int
	// Families are the model families runs can use, asked in order: a
	// run's model belongs to the first that knows its name. replayd
	// registers the built-in one (nnfamily); at least one is required.
	Families []family.Family
	// DataDir is the default data directory of runs that do not name one
	// ("" = the family's default; the built-in family's Fashion-MNIST
	// directory).
	DataDir string
	// Logger receives operational messages; nil means a discarding logger.
	Logger *slog.Logger
	// Events, if not nil, receives one line per scheduler event (run
	// created, anchor set, reset scheduled, adaptive decision, run done or
	// failed). Writes are serialised.
	Events io.Writer
	// MaxLag bounds how many steps the forward trainer of a run may run
	// ahead of its backward frontier.
	MaxLag int
	// MemoBudget is the byte budget of the coalescence memo of a run with
	// strategy memo whose operators are not affine.
	MemoBudget int64
	// MaxParams bounds a run's model (parameters); 0 means no limit. The
	// store cannot hold a parameter vector larger than one value-log file:
	// use MaxParamsForValueSize of the store's options.
	MaxParams int64
	// MaxRunMemory and MaxRunDisk bound a run's estimated memory and disk
	// (see admission.go); 0 means no limit. A run over a limit is refused
	// at creation (ErrTooLarge) and marked failed when it is loaded or
	// resumed.
	MaxRunMemory, MaxRunDisk int64
	// QuerySlots bounds the recomputations done for queries (Params,
	// Verify) at once, over all runs: each takes a core for its duration,
	// so queries never take more than QuerySlots cores from training. A
	// query finding every slot taken fails at once with ErrBusy.
	QuerySlots int
	// DataTimeout bounds the loading of a data set (a data_path on a slow
	// or hung file system); 0 means DefaultDataTimeout.
	DataTimeout time.Duration
	// Executor, if set, computes backward jobs instead of the in-process
	// pool (remote workers); Workers may then be 0. The pacing follows
	// its Slots alone.
	Executor RemoteExecutor
}

// Defaults of Options.
const (
	DefaultWindow     = 256
	DefaultMaxLag     = 256
	DefaultMemoBudget = 256 << 20
	DefaultQuerySlots = 1
	// DefaultDataTimeout is generous: Fashion-MNIST loads in about a
	// second from a local disk.
	DefaultDataTimeout = time.Minute
)

// DefaultOptions returns the options replayd starts from: window 256, one
// worker per core, MaxLag 256, a 256 MiB memo budget, DefaultMaxParams (the
// store's default value size), one query slot, no memory or disk limit
// (replayd derives those from the machine).
func DefaultOptions() Options {
	return Options{
		Window:      DefaultWindow,
		Workers:     runtime.NumCPU(),
		MaxLag:      DefaultMaxLag,
		MemoBudget:  DefaultMemoBudget,
		MaxParams:   DefaultMaxParams,
		QuerySlots:  DefaultQuerySlots,
		DataTimeout: DefaultDataTimeout,
	}
}

// WithMaxParams sets Options.MaxParams.
func (o Options) WithMaxParams(n int64) Options { o.MaxParams = n; return o }

// WithMaxRunMemory sets Options.MaxRunMemory.
func (o Options) WithMaxRunMemory(n int64) Options { o.MaxRunMemory = n; return o }

// WithMaxRunDisk sets Options.MaxRunDisk.
func (o Options) WithMaxRunDisk(n int64) Options { o.MaxRunDisk = n; return o }

// WithQuerySlots sets Options.QuerySlots.
func (o Options) WithQuerySlots(n int) Options { o.QuerySlots = n; return o }

// WithDataTimeout sets Options.DataTimeout.
func (o Options) WithDataTimeout(d time.Duration) Options { o.DataTimeout = d; return o }

// querySlots is QuerySlots with 0 read as the default.
func (o Options) querySlots() int {
	if o.QuerySlots <= 0 {
		return DefaultQuerySlots
	}
	return o.QuerySlots
}

func (o Options) dataTimeout() time.Duration {
	if o.DataTimeout <= 0 {
		return DefaultDataTimeout
	}
	return o.DataTimeout
}

// batchLogSlots is how many epochs of batches a run's batch log keeps:
// enough for every goroutine that applies its operators (the workers, the
// trainer, the backward loop, its recomputations and the query slots) to
// find its current epoch.
func batchLogSlots(o Options) int { return o.Workers + o.querySlots() + 3 }

// WithWindow sets Options.Window.
func (o Options) WithWindow(w int) Options { o.Window = w; return o }

// WithWorkers sets Options.Workers.
func (o Options) WithWorkers(n int) Options { o.Workers = n; return o }

// WithFamilies sets Options.Families.
func (o Options) WithFamilies(f ...family.Family) Options { o.Families = f; return o }

// WithDataDir sets Options.DataDir.
func (o Options) WithDataDir(dir string) Options { o.DataDir = dir; return o }

// WithLogger sets Options.Logger.
func (o Options) WithLogger(l *slog.Logger) Options { o.Logger = l; return o }

// WithEvents sets Options.Events.
func (o Options) WithEvents(w io.Writer) Options { o.Events = w; return o }

// WithMaxLag sets Options.MaxLag.
func (o Options) WithMaxLag(n int) Options { o.MaxLag = n; return o }

// WithMemoBudget sets Options.MemoBudget.
func (o Options) WithMemoBudget(n int64) Options { o.MemoBudget = n; return o }

// Validate reports every problem of o at once.
func (o Options) Validate() error {
	var errs []error
	if o.Window < 1 {
		errs = append(errs, fmt.Errorf("window %d: must be ≥ 1", o.Window))
	}
	if o.Workers < 0 || o.Workers == 0 && o.Executor == nil || o.Workers > 1024 {
		errs = append(errs, fmt.Errorf("workers %d: must be in [1, 1024] (0 with a remote executor)", o.Workers))
	}
	if o.MaxLag < 1 {
		errs = append(errs, fmt.Errorf("max lag %d: must be ≥ 1", o.MaxLag))
	}
	if o.MemoBudget < 0 {
		errs = append(errs, fmt.Errorf("memo budget %d: must be ≥ 0", o.MemoBudget))
	}
	if len(o.Families) == 0 {
		errs = append(errs, errors.New("no model family registered (Options.Families)"))
	}
	if o.MaxParams < 0 || o.MaxRunMemory < 0 || o.MaxRunDisk < 0 {
		errs = append(errs, fmt.Errorf("limits (params %d, memory %d, disk %d): must be ≥ 0 (0: none)", o.MaxParams, o.MaxRunMemory, o.MaxRunDisk))
	}
	if o.QuerySlots < 0 || o.QuerySlots > 1024 {
		errs = append(errs, fmt.Errorf("query slots %d: must be in [0, 1024]", o.QuerySlots))
	}
	if o.DataTimeout < 0 {
		errs = append(errs, fmt.Errorf("data timeout %v: must be ≥ 0", o.DataTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("scheduler options: %w", err)
	}
	return nil
}
