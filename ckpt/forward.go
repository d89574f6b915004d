package ckpt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// Metrics are one step's measurements of an iterate. For backward iterates
// Anchor is the anchor step r and Segment the anchor segment.
type Metrics struct {
	Step      int
	Loss      float64 // training loss on the fixed evaluation subset
	TestLoss  float64
	TestAcc   float64
	ParamNorm float64
	StepDist  float64 // distance to the previous iterate
	Anchor    int
	Segment   int
}

// ForwardStep is one forward step to log: its batch indices, when
// HasMetrics its metrics, and when Checkpoint is not nil the forward
// parameters θ_Step to keep as a checkpoint (len = the run's Dim).
type ForwardStep struct {
	Step       int
	Batch      []int32
	Metrics    Metrics
	HasMetrics bool
	Checkpoint []float32
}

// AppendForward logs forward steps, their checkpoints and the run's new
// state in one transaction: after a crash either the steps, their
// checkpoints and the state are stored or none of them, so the state never
// counts a step whose checkpoint is lost (a restart resumes before it and
// writes it again). When a step carries a checkpoint the store is synced
// before AppendForward returns, as by PutCheckpoint. steps must continue the log (the first is the stored ForwardStep
// + 1) without gaps; st.ForwardStep is set to the last step. When the steps
// do not fit in one Badger transaction they are written in consecutive
// transactions, each with a state whose ForwardStep is its last step, so the
// state never points past the stored log.
func (s *Store) AppendForward(name string, steps []ForwardStep, st RunState) error {
	unlock, err := s.lockRun(name)
	if err != nil {
		return err
	}
	defer unlock()
	for i, fs := range steps {
		if i > 0 && fs.Step != steps[0].Step+i {
			return fmt.Errorf("%w: run %q: step %d follows step %d", ErrNotContiguous, name, fs.Step, steps[i-1].Step)
		}
		if len(fs.Batch) == 0 {
			return fmt.Errorf("%w: run %q: step %d has an empty batch", ErrInvalid, name, fs.Step)
		}
	}
	need := int64(0)
	for _, fs := range steps {
		need += 4*int64(len(fs.Checkpoint)) + 4*int64(len(fs.Batch))
	}
	if err := s.checkSpace(need, true); err != nil {
		return s.wrote("append", fmt.Errorf("ckpt: append forward steps to %q: %w", name, err))
	}
	if err := failpoint("append"); err != nil {
		return s.wrote("append", fmt.Errorf("ckpt: append forward steps to %q: %w", name, err))
	}
	synced := false
	for i, fs := range steps {
		if fs.Checkpoint == nil {
			continue
		}
		synced = true
		switch err := failpoint("checkpoint"); {
		case errors.Is(err, errDrop):
			steps = slices.Clone(steps) // the caller's slice is not ours to change
			steps[i].Checkpoint = nil
		case err != nil:
			return s.wrote("append", fmt.Errorf("ckpt: append forward steps to %q: checkpoint %d: %w", name, fs.Step, err))
		}
	}
	if err := s.appendForward(name, steps, st, true); err != nil {
		return s.wrote("append", fmt.Errorf("ckpt: append forward steps to %q: %w", name, err))
	}
	if synced {
		if err := s.sync(); err != nil {
			// Committed but maybe not durable: never a SpaceError, whose
			// retry would append the same steps again.
			return s.failed("append", fmt.Errorf("ckpt: append forward steps to %q: %w", name, err))
		}
	}
	return s.wrote("append", nil)
}

func (s *Store) appendForward(name string, steps []ForwardStep, st RunState, final bool) error {
	err := s.update(func(txn *badger.Txn) error {
		cfg, err := readConfig(txn, name)
		if err != nil {
			return err
		}
		cur, err := readState(txn, name)
		if err != nil {
			return err
		}
		if len(steps) > 0 && steps[0].Step != cur.ForwardStep+1 {
			return fmt.Errorf("%w: first step %d, stored log ends at %d", ErrNotContiguous, steps[0].Step, cur.ForwardStep)
		}
		for _, fs := range steps {
			if err := txn.Set(runKey(name, kindBatch, fs.Step), encodeBatch(fs.Batch)); err != nil {
				return err
			}
			if fs.HasMetrics {
				m := fs.Metrics
				m.Step = fs.Step
				b, err := encodeMetrics(m)
				if err != nil {
					return err
				}
				if err := txn.Set(runKey(name, kindFwdMetrics, fs.Step), b); err != nil {
					return err
				}
			}
			if fs.Checkpoint != nil {
				if len(fs.Checkpoint) != cfg.Dim {
					return fmt.Errorf("%w: checkpoint %d has %d parameters, run has %d", ErrDim, fs.Step, len(fs.Checkpoint), cfg.Dim)
				}
				if err := txn.Set(runKey(name, kindCheckpoint, fs.Step), encodeParams(fs.Step, fs.Checkpoint)); err != nil {
					return err
				}
			}
		}
		// The summaries of the blocks these steps complete, in the same
		// transaction (blocks.go).
		if err := putBlocks(txn, name, steps); err != nil {
			return err
		}
		next := cur
		if final {
			next = st
		}
		next.ForwardStep = cur.ForwardStep + len(steps)
		if err := next.validate(); err != nil {
			return err
		}
		return setRec(txn, runKey(name, kindState), next)
	})
	if errors.Is(err, badger.ErrTxnTooBig) && len(steps) > 1 {
		h := len(steps) / 2
		if err := s.appendForward(name, steps[:h], st, false); err != nil {
			return err
		}
		return s.appendForward(name, steps[h:], st, final)
	}
	return err
}

// Batches returns the batch indices of steps from..to inclusive.
func (s *Store) Batches(name string, from, to int) ([][]int32, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if from < 1 || to < from {
		return nil, fmt.Errorf("%w: batches %d..%d", ErrInvalid, from, to)
	}
	var out [][]int32
	err := s.view(func(txn *badger.Txn) error {
		if _, err := readConfig(txn, name); err != nil {
			return err
		}
		var err error
		out, err = readBatches(txn, name, from, to)
		return err
	})
	return out, err
}

func readBatches(txn *badger.Txn, name string, from, to int) ([][]int32, error) {
	out := make([][]int32, 0, to-from+1)
	prefix := runKey(name, kindBatch)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	want := from
	for it.Seek(runKey(name, kindBatch, from)); it.Valid() && want <= to; it.Next() {
		item := it.Item()
		step := keyNum(item.Key(), len(prefix), 0)
		if step != want {
			break
		}
		err := readValue(item, name, "batch", step, func(v []byte) error {
			b, err := decodeBatch(v)
			out = append(out, b)
			return err
		})
		if err != nil {
			return nil, err
		}
		want++
	}
	if want <= to {
		return nil, fmt.Errorf("%w: run %q: batch of step %d", ErrNotFound, name, want)
	}
	return out, nil
}

// ForwardMetrics calls fn with the forward metrics of the steps in from..to
// that have them, in step order.
func (s *Store) ForwardMetrics(name string, from, to int, fn func(Metrics) error) error {
	return s.scanMetrics(name, runKey(name, kindFwdMetrics), from, to, fn)
}

// BackwardMetrics calls fn, in step order, with the backward metrics of the
// steps in from..to that have them; a step with results in several segments
// gives the highest segment's.
func (s *Store) BackwardMetrics(name string, from, to int, fn func(Metrics) error) error {
	return s.scanMetrics(name, runKey(name, kindLatestBwd), from, to, fn)
}

// SegmentMetrics calls fn, in step order, with the backward metrics of one
// anchor segment for the steps in from..to that have them.
func (s *Store) SegmentMetrics(name string, segment, from, to int, fn func(Metrics) error) error {
	if segment < 0 {
		return fmt.Errorf("%w: segment %d", ErrInvalid, segment)
	}
	return s.scanMetrics(name, runKey(name, kindBwdMetrics, segment), from, to, fn)
}

func (s *Store) scanMetrics(name string, prefix []byte, from, to int, fn func(Metrics) error) error {
	if err := checkName(name); err != nil {
		return err
	}
	from = max(from, 0)
	return s.view(func(txn *badger.Txn) error {
		if _, err := readConfig(txn, name); err != nil {
			return err
		}
		return scanMetricsTxn(txn, name, prefix, from, to, fn)
	})
}

// scanMetricsTxn is scanMetrics inside txn.
func scanMetricsTxn(txn *badger.Txn, name string, prefix []byte, from, to int, fn func(Metrics) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 256})
	defer it.Close()
	for it.Seek(withNum(prefix, from)); it.Valid(); it.Next() {
		item := it.Item()
		step := keyNum(item.Key(), len(prefix), 0)
		if step > to {
			break
		}
		var m Metrics
		err := readValue(item, name, "metrics", step, func(v []byte) error {
			var err error
			if m, err = decodeMetrics(v); err == nil && m.Step != step {
				err = fmt.Errorf("%w: metrics of step %d under the key of step %d", errLayout, m.Step, step)
			}
			return err
		})
		if err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

// PutCheckpoint stores the forward parameters θ_step and syncs the store.
// step must be logged already (≤ the stored ForwardStep).
func (s *Store) PutCheckpoint(name string, step int, theta []float32) error {
	unlock, err := s.lockRun(name)
	if err != nil {
		return err
	}
	defer unlock()
	if step < 0 {
		return fmt.Errorf("%w: checkpoint step %d", ErrInvalid, step)
	}
	if err := s.checkSpace(4*int64(len(theta)), true); err != nil {
		return s.wrote("checkpoint", fmt.Errorf("ckpt: put checkpoint %d of %q: %w", step, name, err))
	}
	if err := failpoint("checkpoint"); err != nil {
		return s.wrote("checkpoint", fmt.Errorf("ckpt: put checkpoint %d of %q: %w", step, name, err))
	}
	rec := encodeParams(step, theta)
	err = s.update(func(txn *badger.Txn) error {
		cfg, err := readConfig(txn, name)
		if err != nil {
			return err
		}
		if len(theta) != cfg.Dim {
			return fmt.Errorf("%w: %d parameters, run has %d", ErrDim, len(theta), cfg.Dim)
		}
		st, err := readState(txn, name)
		if err != nil {
			return err
		}
		if step > st.ForwardStep {
			return fmt.Errorf("%w: checkpoint %d, log ends at %d", ErrBeyondForward, step, st.ForwardStep)
		}
		return txn.Set(runKey(name, kindCheckpoint, step), rec)
	})
	if err != nil {
		return s.wrote("checkpoint", fmt.Errorf("ckpt: put checkpoint %d of %q: %w", step, name, err))
	}
	return s.wrote("checkpoint", s.sync())
}

// Checkpoint loads the checkpoint of exactly step into dst (len = Dim).
func (s *Store) Checkpoint(name string, step int, dst []float32) error {
	if err := checkName(name); err != nil {
		return err
	}
	return s.view(func(txn *badger.Txn) error {
		if err := checkDst(txn, name, dst); err != nil {
			return err
		}
		return readParams(txn, name, "checkpoint", runKey(name, kindCheckpoint, step), step, dst)
	})
}

// readParams decodes the parameter record at key into dst. A missing key is
// ErrNotFound; a bad record a CorruptionError of kind.
func readParams(txn recGetter, name, kind string, key []byte, step int, dst []float32) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("%w: run %q: %s at step %d", ErrNotFound, name, kind, step)
	}
	if err != nil {
		return ioError(name, kind, err)
	}
	return readValue(item, name, kind, step, func(v []byte) error { return decodeParams(v, step, dst) })
}

// NearestCheckpoint loads the checkpoint with the largest step k ≤ step into
// dst and returns k. A corrupt checkpoint is reported, not skipped.
func (s *Store) NearestCheckpoint(name string, step int, dst []float32) (int, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	if step < 0 {
		return 0, fmt.Errorf("%w: step %d", ErrInvalid, step)
	}
	k := -1
	err := s.view(func(txn *badger.Txn) error {
		if err := checkDst(txn, name, dst); err != nil {
			return err
		}
		var err error
		k, err = nearestCheckpoint(txn, name, step, dst)
		return err
	})
	return k, err
}

func nearestCheckpoint(txn *badger.Txn, name string, step int, dst []float32) (int, error) {
	prefix := runKey(name, kindCheckpoint)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
	defer it.Close()
	it.Seek(runKey(name, kindCheckpoint, step))
	if !it.Valid() {
		return -1, fmt.Errorf("%w: run %q: checkpoint at or before step %d", ErrNotFound, name, step)
	}
	k := keyNum(it.Item().Key(), len(prefix), 0)
	if err := readValue(it.Item(), name, "checkpoint", k, func(v []byte) error { return decodeParams(v, k, dst) }); err != nil {
		return k, err
	}
	return k, nil
}

// Checkpoints returns the steps of the run's checkpoints in order.
func (s *Store) Checkpoints(name string) ([]int, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	var steps []int
	err := s.view(func(txn *badger.Txn) error {
		if _, err := readConfig(txn, name); err != nil {
			return err
		}
		steps = keySteps(txn, runKey(name, kindCheckpoint))
		return nil
	})
	return steps, err
}

// withNum returns prefix followed by n as 8 big-endian bytes.
func withNum(prefix []byte, n int) []byte {
	return binary.BigEndian.AppendUint64(append([]byte{}, prefix...), uint64(n))
}

// keySteps lists the first number of every key under prefix.
func keySteps(txn *badger.Txn, prefix []byte) []int {
	var out []int
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		out = append(out, keyNum(it.Item().Key(), len(prefix), 0))
	}
	return out
}
