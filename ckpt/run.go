package ckpt

import (
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/y"
	"github.com/vmihailenco/msgpack/v5"
)

// RunConfig is a run's resolved specification (api.RunSpec after presets
// and defaults). Dim is the length of every parameter vector of the run.
type RunConfig struct {
	Name, Model, Init, Loss, Dataset, DataPath string

	LR    float64
	Batch int
	Steps int
	Seed  uint64

	Window       int
	Strategy     string
	ResetAt      []int
	ResetFrom    string
	ResetPolicy  string
	ResetHorizon int

	BackwardFrom    int
	EvalEvery       int
	EvalSize        int
	CheckpointEvery int

	// The optimizer and its resolved settings (family.Optimizer); ""
	// (records written before optimizers existed) is plain SGD.
	Optimizer           string
	Momentum, Dampening float64
	Beta1, Beta2, Eps   float64
	WeightDecay         float64

	// DataHash is the content hash of the run's data set as its family
	// computes it ("" when unknown): remote workers refuse a run whose data
	// differs.
	DataHash string

	// Fingerprint is the run's api.RunSpec.Fingerprint: "" (bitwise: the
	// daemon's workers only) or "any".
	Fingerprint string

	Dim int
}

// Run states.
const (
	StateRunning = "running"
	StatePaused  = "paused"
	StateDone    = "done"
	StateFailed  = "failed"
)

// RunState is a run's mutable progress.
type RunState struct {
	State      string // StateRunning | StatePaused | StateDone | StateFailed
	Reason     string // why it failed or was paused
	FailedStep int
	// ForwardStep is the last forward step whose batch is logged. It is
	// owned by AppendForward: PutState and PutBackward keep the stored
	// value whatever the argument says.
	ForwardStep int
	// BackwardStep is the backward frontier: every n ≤ it has a stored
	// backward result. It never exceeds ForwardStep.
	BackwardStep  int
	PendingResets []Reset // manual resets not yet applied
	// Epoch counts the starts of the run's backward loop (the scheduler's
	// job generations are unique across restarts through it).
	Epoch uint64
}

// Reset is a requested move of the backward anchor to Step, starting from
// the "forward" or "backward" iterate there.
type Reset struct {
	Step int
	From string
}

func (st RunState) validate() error {
	switch st.State {
	case StateRunning, StatePaused, StateDone, StateFailed:
	default:
		return fmt.Errorf("%w: state %q", ErrInvalid, st.State)
	}
	if st.BackwardStep < 0 || st.BackwardStep > st.ForwardStep {
		return fmt.Errorf("%w: backward step %d outside [0, forward step %d]", ErrInvalid, st.BackwardStep, st.ForwardStep)
	}
	return nil
}

func corrupt(run, kind string, step int, err error) error {
	return &CorruptionError{Run: run, Kind: kind, Step: step, Err: err}
}

// recGetter is the part of a Badger transaction the record readers use;
// tests inject read failures through it.
type recGetter interface {
	Get(key []byte) (*badger.Item, error)
}

// valueReader is the part of a *badger.Item that readValue uses.
type valueReader interface {
	Value(fn func([]byte) error) error
}

// errIO marks a failed read (see readValue): errors.Is(err, errIO) tells
// the consistency checker to stop and return the error instead of
// reporting the record as a problem. It adds no text to the message.
var errIO = errors.New("ckpt: read failed")

// ioError wraps a failed read of a record of run.
func ioError(run, kind string, err error) error {
	return fmt.Errorf("ckpt: run %q: read %s: %w%w", run, kind, err, silent{errIO})
}

// readValue passes item's value to decode. It tells corruption from I/O:
// a value that decode rejects, or that Badger reports as failing its
// checksum, is a CorruptionError of (run, kind, step); any other failure to
// read the value (the value log's file read failing, a closed database) is
// returned wrapped, not as corruption, so that a transient read error never
// marks a run corrupt.
func readValue(item valueReader, run, kind string, step int, decode func([]byte) error) error {
	var decErr error
	err := item.Value(func(b []byte) error {
		decErr = decode(b)
		return decErr
	})
	switch {
	case decErr != nil:
		return corrupt(run, kind, step, decErr)
	case errors.Is(err, y.ErrChecksumMismatch):
		return corrupt(run, kind, step, err)
	case err != nil:
		return ioError(run, kind, err)
	}
	return nil
}

// getRec decodes the msgpack record at key into v. found is false when the
// key is absent. A record that does not decode is a CorruptionError of
// (run, kind, step); a failed read is an I/O error (see readValue).
func getRec(txn recGetter, key []byte, v any, run, kind string, step int) (found bool, err error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, ioError(run, kind, err)
	}
	return true, readValue(item, run, kind, step, func(b []byte) error { return msgpack.Unmarshal(b, v) })
}

func setRec(txn *badger.Txn, key []byte, v any) error {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return fmt.Errorf("ckpt: encode %T: %w", v, err)
	}
	return txn.Set(key, b)
}

// readConfig reads a run's configuration: ErrRunNotFound when it is absent,
// a CorruptionError when it does not decode, the read error otherwise.
func readConfig(txn recGetter, name string) (RunConfig, error) {
	var cfg RunConfig
	found, err := getRec(txn, runKey(name, kindConfig), &cfg, name, "config", -1)
	if err != nil {
		return cfg, err
	}
	if !found {
		return cfg, fmt.Errorf("%w: %q", ErrRunNotFound, name)
	}
	return cfg, nil
}

func readState(txn recGetter, name string) (RunState, error) {
	var st RunState
	found, err := getRec(txn, runKey(name, kindState), &st, name, "state", -1)
	if err != nil {
		return st, err
	}
	if !found {
		return st, corrupt(name, "state", -1, errors.New("missing"))
	}
	return st, nil
}

// CreateRun stores a new run with state "running", θ0 as checkpoint 0 and
// segment 0's anchor (step 0, from "init", starting at θ0). cfg.Dim must be
// len(theta0).
func (s *Store) CreateRun(cfg RunConfig, theta0 []float32) error {
	unlock, err := s.lockRun(cfg.Name)
	if err != nil {
		return err
	}
	defer unlock()
	if cfg.Dim <= 0 || cfg.Dim != len(theta0) {
		return fmt.Errorf("%w: run %q: Dim %d, θ0 has %d parameters", ErrDim, cfg.Name, cfg.Dim, len(theta0))
	}
	// θ0 and the config may use half the reserve, as backward results: the
	// run's trainer then waits for the full reserve before its first step.
	if err := s.checkSpace(4*int64(len(theta0)), false); err != nil {
		return s.wrote("create", fmt.Errorf("ckpt: create run %q: %w", cfg.Name, err))
	}
	if err := failpoint("create"); err != nil {
		return s.wrote("create", fmt.Errorf("ckpt: create run %q: %w", cfg.Name, err))
	}
	// A deletion of the same name interrupted by a crash is finished first,
	// so that no key of the old run survives into the new one.
	if err := s.finishDeletes(); err != nil {
		return err
	}
	err = s.update(func(txn *badger.Txn) error {
		if _, err := txn.Get(runKey(cfg.Name, kindConfig)); err == nil {
			return fmt.Errorf("%w: %q", ErrRunExists, cfg.Name)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if err := setRec(txn, runKey(cfg.Name, kindConfig), cfg); err != nil {
			return err
		}
		if err := setRec(txn, runKey(cfg.Name, kindState), RunState{State: StateRunning}); err != nil {
			return err
		}
		if err := setRec(txn, runKey(cfg.Name, kindAnchor, 0), AnchorRec{Segment: 0, Step: 0, From: FromInit}); err != nil {
			return err
		}
		return txn.Set(runKey(cfg.Name, kindCheckpoint, 0), encodeParams(0, theta0))
	})
	if err != nil {
		return s.wrote("create", fmt.Errorf("ckpt: create run %q: %w", cfg.Name, err))
	}
	return s.failed("create", s.sync()) // committed: a retry would find the run
}

// Run returns a run's configuration and state.
func (s *Store) Run(name string) (RunConfig, RunState, error) {
	if err := checkName(name); err != nil {
		return RunConfig{}, RunState{}, err
	}
	var cfg RunConfig
	var st RunState
	err := s.view(func(txn *badger.Txn) error {
		var err error
		if cfg, err = readConfig(txn, name); err != nil {
			return err
		}
		st, err = readState(txn, name)
		return err
	})
	return cfg, st, err
}

// Runs returns the names of all runs, sorted.
func (s *Store) Runs() ([]string, error) {
	var names []string
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: runsPrefix})
		defer it.Close()
		it.Rewind()
		for it.Valid() {
			k := it.Item().Key()
			i := slices.Index(k, 0)
			if i < 0 || i+1 >= len(k) {
				return corrupt("", "key", -1, fmt.Errorf("malformed key %q", k))
			}
			name := string(k[len(runsPrefix):i])
			// The config is each run's first key; a run without one is
			// being deleted.
			if k[i+1] == kindConfig {
				names = append(names, name)
			}
			next := append(runPrefix(name)[:len(runsPrefix)+len(name)], 1)
			it.Seek(next)
		}
		return nil
	})
	return names, err
}

// PutState replaces a run's state. The stored ForwardStep is kept (it is
// owned by AppendForward); st.BackwardStep must not exceed it.
func (s *Store) PutState(name string, st RunState) error {
	unlock, err := s.lockRun(name)
	if err != nil {
		return err
	}
	defer unlock()
	if err := failpoint("state"); err != nil {
		return s.wrote("state", fmt.Errorf("ckpt: put state of %q: %w", name, err))
	}
	err = s.updateAlways(func(txn *badger.Txn) error {
		if _, err := readConfig(txn, name); err != nil {
			return err
		}
		cur, err := readState(txn, name)
		if err != nil {
			return err
		}
		st.ForwardStep = cur.ForwardStep
		if err := st.validate(); err != nil {
			return err
		}
		return setRec(txn, runKey(name, kindState), st)
	})
	if err != nil {
		return s.wrote("state", fmt.Errorf("ckpt: put state of %q: %w", name, err))
	}
	return s.wrote("state", nil)
}

// DeleteRun removes every key of the run; value-log GC (started here in the
// background) then reclaims the space. The run disappears atomically: a
// crash part-way leaves a deletion marker and Open finishes the job.
func (s *Store) DeleteRun(name string) error {
	unlock, err := s.lockRun(name)
	if err != nil {
		return err
	}
	defer unlock()
	if err := failpoint("delete"); err != nil {
		return s.wrote("delete", fmt.Errorf("ckpt: delete run %q: %w", name, err))
	}
	err = s.update(func(txn *badger.Txn) error {
		if _, err := readConfig(txn, name); err != nil {
			return err
		}
		if err := txn.Set(deletingKey(name), nil); err != nil {
			return err
		}
		return txn.Delete(runKey(name, kindConfig))
	})
	if err != nil {
		return s.wrote("delete", fmt.Errorf("ckpt: delete run %q: %w", name, err))
	}
	// The run is deleted (its config is gone, the marker says so): a
	// failure to drop its keys is finished by the next Open, or by a
	// CreateRun of the same name.
	if err := s.dropRun(name); err != nil {
		s.log.Warn("ckpt: the deleted run's records stay until the store is opened again", "run", name, "err", s.wrote("delete", err))
	} else {
		_ = s.wrote("delete", nil) // clears an earlier failure; nil
	}
	s.kickGC()
	return nil
}

// dropRun removes every key under the run's prefix, then its deletion
// marker. DropPrefix compacts the dropped keys away at once (plain deletes
// would wait for compaction to reach them) and records their value-log
// entries as garbage for GC.
func (s *Store) dropRun(name string) error {
	s.gate.Lock()
	err := s.db.DropPrefix(runPrefix(name))
	s.gate.Unlock()
	if err != nil {
		return fmt.Errorf("ckpt: drop keys of run %q: %w", name, err)
	}
	err = s.update(func(txn *badger.Txn) error { return txn.Delete(deletingKey(name)) })
	if err != nil {
		return fmt.Errorf("ckpt: delete run %q: %w", name, err)
	}
	return nil
}

func getRecItem(item *badger.Item, v any, run, kind string, step int) error {
	return readValue(item, run, kind, step, func(b []byte) error { return msgpack.Unmarshal(b, v) })
}

// checkDst checks that the run exists and dst has its dimension: a wrong
// length is the caller's mistake, not corruption.
func checkDst(txn *badger.Txn, name string, dst []float32) error {
	cfg, err := readConfig(txn, name)
	if err != nil {
		return err
	}
	if len(dst) != cfg.Dim {
		return fmt.Errorf("%w: destination of %d parameters, run %q has %d", ErrDim, len(dst), name, cfg.Dim)
	}
	return nil
}
