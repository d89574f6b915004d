package scheduler

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
)

// Options configure a Scheduler. Build them with DefaultOptions and the WithX
// setters; New calls Validate.
type Options struct {
	// Window is the default window W of new runs that do not set one.
	Window int
	// Workers is the size of the backward worker pool: at most this many
	// jobs run at once, over all runs.
	Workers int
	// DataDir is the default directory of the Fashion-MNIST files for runs
	// that do not name one ("" = nn.DefaultFashionMNISTDir).
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
}

// Defaults of Options.
const (
	DefaultWindow     = 256
	DefaultMaxLag     = 256
	DefaultMemoBudget = 256 << 20
)

// DefaultOptions returns the options replayd uses: window 256, one worker
// per core, MaxLag 256, a 256 MiB memo budget.
func DefaultOptions() Options {
	return Options{
		Window:     DefaultWindow,
		Workers:    runtime.NumCPU(),
		MaxLag:     DefaultMaxLag,
		MemoBudget: DefaultMemoBudget,
	}
}

// WithWindow sets Options.Window.
func (o Options) WithWindow(w int) Options { o.Window = w; return o }

// WithWorkers sets Options.Workers.
func (o Options) WithWorkers(n int) Options { o.Workers = n; return o }

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
	if o.Workers < 1 || o.Workers > 1024 {
		errs = append(errs, fmt.Errorf("workers %d: must be in [1, 1024]", o.Workers))
	}
	if o.MaxLag < 1 {
		errs = append(errs, fmt.Errorf("max lag %d: must be ≥ 1", o.MaxLag))
	}
	if o.MemoBudget < 0 {
		errs = append(errs, fmt.Errorf("memo budget %d: must be ≥ 0", o.MemoBudget))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("scheduler options: %w", err)
	}
	return nil
}
