package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/internal/echo"
	"github.com/replay-sgd/replay/scheduler"
)

// defaultMemLimitMiB is the default soft heap limit. Measured on the paper's
// run (mlp:500x5, 2 workers): the live heap is ≈ 130 MiB, but with the
// default GOGC the heap grows to twice that between collections (anonymous
// RSS 313 MiB); with a 160 MiB limit it stays at 132 MiB at the same
// throughput. The design's budget is (workers + 3) × model + 256 MiB; the
// limit is soft, so larger runs still get the memory they need, at the cost
// of more frequent collections.
const defaultMemLimitMiB = 256

// defaultMinFreeDisk is the default --min-free-disk: several of the paper
// run's checkpoints (5.6 MB each) and, above all, more than the largest
// single write Badger copies into its memory-mapped value and memtable logs
// (a memtable, 16 MiB; a value-log file, 64 MiB), whose pages must be
// backed when first touched (ckpt/space.go).
const defaultMinFreeDisk = 256 << 20

// config is the daemon's configuration after flags and environment.
type config struct {
	dataDir     string
	listen      string // as given ("" = the default socket)
	token       string
	window      int
	workers     int
	maxLag      int
	datasetDir  string
	logLevel    slog.Level
	logFormat   string
	runPreset   string
	shutdownMax time.Duration
	// shutdownGrace bounds the store's close (its final flush) at exit.
	shutdownGrace time.Duration
	memLimitMiB   int // soft Go heap limit; 0 = none; −1 = GOMEMLIMIT decides
	// Per-run admission limits in bytes; not set: derived from the machine
	// when the daemon starts (limits.go).
	maxRunMemory, maxRunDisk byteSize
	// minFreeDisk is the free space the store's file system keeps
	// (ckpt.Options.MinFreeDisk); not set: defaultMinFreeDisk.
	minFreeDisk byteSize
	querySlots  int
	remote      remoteConfig // remote.go
	ext         extConfig    // extmodels.go
	extModels   []extModel   // parsed from ext
}

const usageHead = `replayd — the replay daemon: trains runs forward, computes backward SGD
iterates at bounded cost, and serves the HTTP/JSON API (see the README).

Usage: replayd [flags]

Examples:
  replayd --window 256 --run-preset fmnist-mlp
  replayd --listen 127.0.0.1:7070
  REPLAYD_TOKEN=$(cat token) replayd --listen 0.0.0.0:7070

Flags:
`

// parseFlags maps args and the environment into a config. It returns
// pflag.ErrHelp after printing the usage to stdout for --help.
func parseFlags(args []string, stdout io.Writer) (config, error) {
	var c config
	fs := pflag.NewFlagSet("replayd", pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned as one line, usage only on --help
	fs.SortFlags = false
	fs.StringVar(&c.dataDir, "data-dir", "", "directory of the store and the default socket (default $REPLAYD_DATA_DIR, else $XDG_STATE_HOME/replayd, else ~/.local/state/replayd)")
	fs.StringVar(&c.listen, "listen", "", "unix:/path, /path.sock, or a TCP host:port (loopback unless a token is set) (default unix:<data-dir>/"+api.SocketName+")")
	fs.StringVar(&c.token, "auth-token", "", "require \"Authorization: Bearer TOKEN\" on every request (default $REPLAYD_TOKEN)")
	tokenFile := fs.String("auth-token-file", "", "read the auth token from this file (first line), so that it is not in /proc/PID/cmdline")
	fs.IntVar(&c.window, "window", scheduler.DefaultWindow, "default backward window W of new runs")
	fs.IntVar(&c.workers, "workers", runtime.NumCPU(), "backward worker pool size (with --remote-workers or --nats: the slots of the daemon's own worker beside the remote ones; 0: only remote workers compute)")
	fs.IntVar(&c.maxLag, "max-lag", scheduler.DefaultMaxLag, "how many steps a run's forward trainer may lead its backward frontier")
	fs.StringVar(&c.datasetDir, "dataset-dir", "", "default Fashion-MNIST directory for runs that name none (default /usr/share/datasets/fashion-mnist)")
	level := fs.String("log-level", "info", "debug | info | warn | error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text | json (log/slog on stderr)")
	fs.StringVar(&c.runPreset, "run-preset", "", "at start, if the store holds no run yet, create one from this preset (quadratic, regression, fmnist-mlp, paper-fig3, fmnist-adam, fmnist-linear; fmnist-cnn and fmnist-resnet18 with their --torch-model)")
	fs.DurationVar(&c.shutdownMax, "shutdown-timeout", time.Second, "how long open API requests may take to finish at shutdown")
	fs.DurationVar(&c.shutdownGrace, "shutdown-grace", 10*time.Second, "how long the store's final flush may take at shutdown before replayd exits anyway (exit 1; writes since the last checkpoint may be lost)")
	fs.IntVar(&c.memLimitMiB, "memory-limit", defaultMemLimitMiB, "soft limit of the Go heap in MiB (runtime/debug.SetMemoryLimit; 0: none; ignored when GOMEMLIMIT is set)")
	fs.Var(&c.maxRunMemory, "max-run-memory", memoryRule)
	fs.Var(&c.maxRunDisk, "max-run-disk", diskRule)
	fs.Var(&c.minFreeDisk, "min-free-disk", "free space the data directory's file system keeps; below it runs pause with the reason (status, /healthz) and go on once space returns; 0: no check (default 256MiB)")
	fs.IntVar(&c.querySlots, "query-slots", scheduler.DefaultQuerySlots, "most recomputations for API queries (params, verify) at once; more get 503 with Retry-After")
	addRemoteFlags(fs, &c.remote)
	addExtFlags(fs, &c.ext)
	help := fs.BoolP("help", "h", false, "show this help")

	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("%w (see replayd --help)", err)
	}
	if *help {
		fmt.Fprint(stdout, usageHead)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return c, pflag.ErrHelp
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (replayd takes flags only; see replayd --help)", fs.Arg(0))
	}

	var errs []error
	if c.dataDir == "" {
		d, err := api.DefaultDataDir()
		if err != nil {
			errs = append(errs, err)
		}
		c.dataDir = d
	}
	if c.dataDir != "" {
		abs, err := filepath.Abs(c.dataDir)
		if err != nil {
			errs = append(errs, fmt.Errorf("--data-dir %q: %w", c.dataDir, err))
		}
		c.dataDir = abs
	}
	if *tokenFile != "" {
		if c.token != "" {
			errs = append(errs, errors.New("--auth-token and --auth-token-file: give one"))
		}
		b, err := os.ReadFile(*tokenFile)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("--auth-token-file: %w", err))
		default:
			line, _, _ := strings.Cut(string(b), "\n")
			if c.token = strings.TrimSpace(line); c.token == "" {
				errs = append(errs, fmt.Errorf("--auth-token-file %s: empty", *tokenFile))
			}
		}
	}
	if c.token == "" {
		c.token = os.Getenv("REPLAYD_TOKEN")
	}
	if strings.ContainsAny(c.token, " \t\r\n") {
		errs = append(errs, errors.New("auth token: must not contain white space"))
	}
	if err := c.logLevel.UnmarshalText([]byte(*level)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", *level))
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format %q: want text or json", c.logFormat))
	}
	if c.window < 1 {
		errs = append(errs, fmt.Errorf("--window %d: must be ≥ 1", c.window))
	}
	if c.runPreset != "" {
		// Named before the data directory is touched, so a typo costs one
		// line and changes nothing on disk.
		var names []string
		for _, p := range scheduler.Presets() {
			names = append(names, p.Name)
		}
		if !slices.Contains(names, c.runPreset) {
			errs = append(errs, fmt.Errorf("--run-preset %q: unknown preset (want %s)", echo.Clip(c.runPreset), strings.Join(names, ", ")))
		}
	}
	if c.workers < 0 || c.workers == 0 && !c.remote.enabled() || c.workers > 1024 {
		errs = append(errs, fmt.Errorf("--workers %d: must be in [1, 1024] (0 with remote workers)", c.workers))
	}
	errs = append(errs, c.remote.validate()...)
	var extErrs []error
	c.extModels, extErrs = c.ext.models()
	errs = append(errs, extErrs...)
	if c.maxLag < 1 {
		errs = append(errs, fmt.Errorf("--max-lag %d: must be ≥ 1", c.maxLag))
	}
	if c.memLimitMiB < 0 {
		errs = append(errs, fmt.Errorf("--memory-limit %d: must be ≥ 0 MiB", c.memLimitMiB))
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		c.memLimitMiB = -1
	}
	if c.querySlots < 1 || c.querySlots > 1024 {
		errs = append(errs, fmt.Errorf("--query-slots %d: must be in [1, 1024]", c.querySlots))
	}
	if c.shutdownGrace <= 0 {
		errs = append(errs, fmt.Errorf("--shutdown-grace %v: must be > 0", c.shutdownGrace))
	}
	if c.shutdownMax <= 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout %v: must be > 0", c.shutdownMax))
	}
	if len(errs) > 0 {
		// One line: the problems joined with "; ".
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return c, errors.New(strings.Join(msgs, "; "))
	}
	return c, nil
}

// newLogger returns the daemon's slog logger on w.
func newLogger(c config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.logLevel}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
