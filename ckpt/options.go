package ckpt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// DefaultCheckpointEvery is the forward checkpoint interval used when a run
// does not choose one. The paper's run (mlp:500x5, 1,399,510 parameters =
// 5.6 MB per checkpoint, 2000 steps) then keeps 41 checkpoints (θ0 and every
// 50th step), about 230 MB, well under 1 GiB; replaying to any step costs at
// most 49 operator applications.
const DefaultCheckpointEvery = 50

// Options configure a Store. Build them with DefaultOptions and the WithX
// setters; Open calls Validate.
type Options struct {
	// Dir is the directory of the store; it is created if missing.
	Dir string
	// ValueLogFileSize is the size at which Badger starts a new value-log
	// file. Value-log GC works file by file and never on the newest file,
	// so files must be small compared with the store for GC to reclaim
	// anything. Badger accepts [1 MiB, 2 GiB).
	ValueLogFileSize int64
	// MemTableSize bounds Badger's memtables; a transaction may hold at most
	// 15% of it in small (inline) values.
	MemTableSize int64
	// NumMemtables is how many memtables Badger keeps before stalling writes.
	NumMemtables int
	// ValueThreshold: values of at least this many bytes (parameter vectors)
	// go to the value log, smaller ones (batch log, metrics) stay in the
	// LSM tree.
	ValueThreshold int64
	// BlockCacheSize is Badger's block cache, in bytes.
	BlockCacheSize int64
	// GCInterval is the period of value-log garbage collection; 0 disables
	// the timer (GC can still be run with Store.GC).
	GCInterval time.Duration
	// SyncWrites makes every write durable against power loss before it
	// returns. Without it, writes survive a process crash when they return
	// and an OS crash once the next checkpoint (which syncs) returns.
	SyncWrites bool
	// MinFreeDisk is the free space (bytes) the store's file system keeps:
	// a write that would leave less is refused with a *SpaceError before it
	// starts (backward results and anchors may use half of it). 0 disables
	// the check. See space.go for why this, not preallocation, keeps
	// Badger's memory-mapped writes from SIGBUS.
	MinFreeDisk int64
	// FreeSpace, if set, replaces statfs as the source of the store's free
	// bytes (tests: a disk that fills and empties on cue). It must be safe
	// for concurrent use; ok false means unknown (never refuse).
	FreeSpace func(dir string) (free int64, ok bool)
	// CloseTimeout bounds how long Close waits for Badger's final flush;
	// 0 waits as long as it takes.
	CloseTimeout time.Duration
	// Salvage skips the check of the directory against ckpt's marker and
	// Badger's MANIFEST before Badger opens it (see DamagedError): Badger
	// then recovers what it can, cutting and deleting what it cannot read.
	// Only `replayd repair` sets it, after a backup.
	Salvage bool
	// Logger receives Badger's warnings and errors (its informational
	// messages at debug level); nil means slog.Default().
	Logger *slog.Logger
}

// DefaultOptions returns the options used by replayd for a store in dir.
func DefaultOptions(dir string) Options {
	return Options{
		Dir:              dir,
		ValueLogFileSize: 64 << 20,
		MemTableSize:     16 << 20,
		NumMemtables:     3,
		ValueThreshold:   1 << 10,
		BlockCacheSize:   8 << 20,
		GCInterval:       5 * time.Minute,
	}
}

// WithDir returns o with Dir set.
func (o Options) WithDir(dir string) Options { o.Dir = dir; return o }

// WithValueLogFileSize returns o with ValueLogFileSize set.
func (o Options) WithValueLogFileSize(n int64) Options { o.ValueLogFileSize = n; return o }

// WithMemTableSize returns o with MemTableSize set.
func (o Options) WithMemTableSize(n int64) Options { o.MemTableSize = n; return o }

// WithNumMemtables returns o with NumMemtables set.
func (o Options) WithNumMemtables(n int) Options { o.NumMemtables = n; return o }

// WithValueThreshold returns o with ValueThreshold set.
func (o Options) WithValueThreshold(n int64) Options { o.ValueThreshold = n; return o }

// WithBlockCacheSize returns o with BlockCacheSize set.
func (o Options) WithBlockCacheSize(n int64) Options { o.BlockCacheSize = n; return o }

// WithGCInterval returns o with GCInterval set.
func (o Options) WithGCInterval(d time.Duration) Options { o.GCInterval = d; return o }

// WithSyncWrites returns o with SyncWrites set.
func (o Options) WithSyncWrites(b bool) Options { o.SyncWrites = b; return o }

// WithMinFreeDisk returns o with MinFreeDisk set.
func (o Options) WithMinFreeDisk(n int64) Options { o.MinFreeDisk = n; return o }

// WithFreeSpace returns o with FreeSpace set.
func (o Options) WithFreeSpace(f func(dir string) (int64, bool)) Options { o.FreeSpace = f; return o }

// WithCloseTimeout returns o with CloseTimeout set.
func (o Options) WithCloseTimeout(d time.Duration) Options { o.CloseTimeout = d; return o }

// WithSalvage returns o with Salvage set.
func (o Options) WithSalvage(b bool) Options { o.Salvage = b; return o }

// WithLogger returns o with Logger set.
func (o Options) WithLogger(l *slog.Logger) Options { o.Logger = l; return o }

// Validate reports every problem with o at once.
func (o Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("ckpt: options: "+format, args...))
	}
	if o.Dir == "" {
		bad("Dir is empty")
	}
	if o.ValueLogFileSize < 1<<20 || o.ValueLogFileSize >= 2<<30 {
		bad("ValueLogFileSize %d is outside [1 MiB, 2 GiB)", o.ValueLogFileSize)
	}
	if o.MemTableSize < 1<<20 {
		bad("MemTableSize %d is below 1 MiB", o.MemTableSize)
	}
	if o.NumMemtables < 1 {
		bad("NumMemtables %d is below 1", o.NumMemtables)
	}
	// Badger refuses a threshold above 15% of the memtable (the largest
	// transaction); we keep room for several inline values per transaction.
	if o.ValueThreshold < 1 || o.ValueThreshold > 1<<20 || o.ValueThreshold > o.MemTableSize*15/100/4 {
		bad("ValueThreshold %d is outside [1, min(1 MiB, MemTableSize×15%%/4)]", o.ValueThreshold)
	}
	if o.BlockCacheSize < 0 {
		bad("BlockCacheSize %d is negative", o.BlockCacheSize)
	}
	if o.MinFreeDisk < 0 {
		bad("MinFreeDisk %d is negative", o.MinFreeDisk)
	}
	if o.GCInterval < 0 {
		bad("GCInterval %v is negative", o.GCInterval)
	}
	return errors.Join(errs...)
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
}

func (o Options) badger() badger.Options {
	lg := o.logger()
	return badger.DefaultOptions(o.Dir).
		WithLogger(badgerLogger{lg}).
		WithValueLogFileSize(o.ValueLogFileSize).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(o.NumMemtables).
		WithValueThreshold(o.ValueThreshold).
		WithBlockCacheSize(o.BlockCacheSize).
		WithSyncWrites(o.SyncWrites).
		// Parameter vectors do not compress; batches and metrics barely.
		WithCompression(options.None).
		WithNumCompactors(2).
		WithNumLevelZeroTables(3).
		WithNumLevelZeroTablesStall(8).
		WithMetricsEnabled(false).
		WithNumVersionsToKeep(1)
}

// badgerLogger routes Badger's log through slog: its Info messages (table
// counts, replay progress) are debug-level noise for replayd's operators.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !b.l.Enabled(ctx, level) {
		return
	}
	b.l.Log(ctx, level, "badger: "+strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (b badgerLogger) Errorf(f string, a ...any)   { b.log(slog.LevelError, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(slog.LevelWarn, f, a) }
func (b badgerLogger) Infof(f string, a ...any)    { b.log(slog.LevelDebug, f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.log(slog.LevelDebug-4, f, a) }
