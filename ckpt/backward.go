package ckpt

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Anchor origins.
const (
	FromInit     = "init"     // θ0 (segment 0)
	FromForward  = "forward"  // the forward iterate θ_r
	FromBackward = "backward" // the backward iterate θ̃_r
)

// AnchorRec is the anchor of a backward segment: the chain of the segment
// starts at step Step from the forward or backward iterate there. Segment 0
// is the anchor at step 0 from θ0 ("init"), written by CreateRun.
type AnchorRec struct {
	Segment, Step int
	From          string
}

// BackwardResult is a backward iterate of one segment at one step: its
// metrics always, its parameters when Theta is not nil.
type BackwardResult struct {
	Segment, Step int
	Metrics       Metrics
	Theta         []float32
}

// PutAnchor stores a segment's anchor and starting point (len = Dim). The
// anchor's step must be logged. Writing the same anchor again (after a
// crash) is allowed; changing an existing segment's anchor is not
// (ErrAnchorExists).
func (s *Store) PutAnchor(name string, a AnchorRec, start []float32) error {
	unlock, err := s.lockRun(name)
	if err != nil {
		return err
	}
	defer unlock()
	switch {
	case a.Segment < 0 || a.Step < 0:
		return fmt.Errorf("%w: anchor segment %d at step %d", ErrInvalid, a.Segment, a.Step)
	case a.From != FromForward && a.From != FromBackward && a.From != FromInit:
		return fmt.Errorf("%w: anchor from %q", ErrInvalid, a.From)
	}
	if err := s.checkSpace(4*int64(len(start)), false); err != nil {
		return s.wrote("anchor", fmt.Errorf("ckpt: put anchor of segment %d of %q: %w", a.Segment, name, err))
	}
	if err := failpoint("anchor"); err != nil {
		return s.wrote("anchor", fmt.Errorf("ckpt: put anchor of segment %d of %q: %w", a.Segment, name, err))
	}
	rec := encodeParams(a.Step, start)
	err = s.update(func(txn *badger.Txn) error {
		cfg, err := readConfig(txn, name)
		if err != nil {
			return err
		}
		if len(start) != cfg.Dim {
			return fmt.Errorf("%w: %d parameters, run has %d", ErrDim, len(start), cfg.Dim)
		}
		st, err := readState(txn, name)
		if err != nil {
			return err
		}
		if a.Step > st.ForwardStep {
			return fmt.Errorf("%w: anchor at step %d, log ends at %d", ErrBeyondForward, a.Step, st.ForwardStep)
		}
		var old AnchorRec
		found, err := getRec(txn, runKey(name, kindAnchor, a.Segment), &old, name, "anchor", a.Segment)
		if err != nil {
			return err
		}
		if found && (old.Step != a.Step || old.From != a.From) {
			return fmt.Errorf("%w: segment %d is anchored at step %d from %s", ErrAnchorExists, a.Segment, old.Step, old.From)
		}
		if err := setRec(txn, runKey(name, kindAnchor, a.Segment), a); err != nil {
			return err
		}
		return txn.Set(runKey(name, kindAnchorData, a.Segment), rec)
	})
	if err != nil {
		return s.wrote("anchor", fmt.Errorf("ckpt: put anchor of segment %d of %q: %w", a.Segment, name, err))
	}
	// Writing the same anchor again is allowed: a failed sync may be
	// retried as a whole.
	return s.wrote("anchor", s.sync())
}

// Anchors returns the run's anchors in segment order.
func (s *Store) Anchors(name string) ([]AnchorRec, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	var out []AnchorRec
	err := s.view(func(txn *badger.Txn) error {
		if _, err := readConfig(txn, name); err != nil {
			return err
		}
		var err error
		out, err = readAnchors(txn, name)
		return err
	})
	return out, err
}

func readAnchors(txn *badger.Txn, name string) ([]AnchorRec, error) {
	var out []AnchorRec
	prefix := runKey(name, kindAnchor)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		seg := keyNum(it.Item().Key(), len(prefix), 0)
		var a AnchorRec
		if err := getRecItem(it.Item(), &a, name, "anchor", seg); err != nil {
			return nil, err
		}
		if a.Segment != seg {
			return nil, corrupt(name, "anchor", seg, fmt.Errorf("%w: anchor of segment %d under the key of segment %d", errLayout, a.Segment, seg))
		}
		out = append(out, a)
	}
	return out, nil
}

// AnchorStart loads a segment's starting point into dst.
func (s *Store) AnchorStart(name string, segment int, dst []float32) error {
	if err := checkName(name); err != nil {
		return err
	}
	return s.view(func(txn *badger.Txn) error {
		if err := checkDst(txn, name, dst); err != nil {
			return err
		}
		return readAnchorStart(txn, name, segment, dst)
	})
}

func readAnchorStart(txn *badger.Txn, name string, segment int, dst []float32) error {
	var a AnchorRec
	found, err := getRec(txn, runKey(name, kindAnchor, segment), &a, name, "anchor", segment)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: run %q: anchor of segment %d", ErrNotFound, name, segment)
	}
	key := runKey(name, kindAnchorData, segment)
	if _, err := txn.Get(key); errors.Is(err, badger.ErrKeyNotFound) && a.From == FromInit {
		// Segment 0 starts at θ0, stored once as checkpoint 0.
		return readParams(txn, name, "checkpoint", runKey(name, kindCheckpoint, a.Step), a.Step, dst)
	}
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return corrupt(name, "anchor", segment, errors.New("starting point missing"))
	}
	if err != nil {
		return ioError(name, "anchor", err)
	}
	return readValue(item, name, "anchor", segment, func(v []byte) error { return decodeParams(v, a.Step, dst) })
}

// PutBackward stores backward results. Parameters are written first (with a
// WriteBatch, then synced); the metrics, and the state when st is not nil,
// follow in one transaction, so a state's BackwardStep never counts a result
// that is not stored. Each result's segment must have an anchor and its step
// must be logged. st.ForwardStep is ignored (the stored one is kept).
func (s *Store) PutBackward(name string, res []BackwardResult, st *RunState) error {
	unlock, err := s.lockRun(name)
	if err != nil {
		return err
	}
	defer unlock()
	need := int64(0)
	for _, r := range res {
		need += 4 * int64(len(r.Theta))
	}
	if err := s.checkSpace(need, false); err != nil {
		return s.wrote("backward", fmt.Errorf("ckpt: put backward results of %q: %w", name, err))
	}
	if err := failpoint("backward"); err != nil {
		return s.wrote("backward", fmt.Errorf("ckpt: put backward results of %q: %w", name, err))
	}
	// A failure after the parameters are stored leaves them without their
	// metrics and state: the same call again rewrites them with the same
	// values, so every failure here may be retried as a whole.
	if err := s.putBackward(name, res, st); err != nil {
		return s.wrote("backward", fmt.Errorf("ckpt: put backward results of %q: %w", name, err))
	}
	return s.wrote("backward", nil)
}

func (s *Store) putBackward(name string, res []BackwardResult, st *RunState) error {
	thetas := 0
	err := s.view(func(txn *badger.Txn) error {
		cfg, err := readConfig(txn, name)
		if err != nil {
			return err
		}
		cur, err := readState(txn, name)
		if err != nil {
			return err
		}
		anchors, err := readAnchors(txn, name)
		if err != nil {
			return err
		}
		has := make(map[int]bool, len(anchors))
		for _, a := range anchors {
			has[a.Segment] = true
		}
		for _, r := range res {
			switch {
			case r.Step < 1 || r.Segment < 0:
				return fmt.Errorf("%w: backward result of segment %d at step %d", ErrInvalid, r.Segment, r.Step)
			case r.Step > cur.ForwardStep:
				return fmt.Errorf("%w: backward result at step %d, log ends at %d", ErrBeyondForward, r.Step, cur.ForwardStep)
			case !has[r.Segment]:
				return fmt.Errorf("%w: segment %d", ErrNoAnchor, r.Segment)
			case r.Theta != nil && len(r.Theta) != cfg.Dim:
				return fmt.Errorf("%w: %d parameters, run has %d", ErrDim, len(r.Theta), cfg.Dim)
			}
			if r.Theta != nil {
				thetas++
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if thetas > 0 {
		s.gate.RLock()
		wb := s.db.NewWriteBatch()
		for _, r := range res {
			if r.Theta != nil {
				if err = wb.Set(runKey(name, kindBwdTheta, r.Segment, r.Step), encodeParams(r.Step, r.Theta)); err != nil {
					break
				}
			}
		}
		if err == nil {
			err = wb.Flush()
		} else {
			wb.Cancel()
		}
		s.gate.RUnlock()
		if err != nil {
			return err
		}
		if err := s.sync(); err != nil {
			return err
		}
	}
	if err := failpoint("metrics"); err != nil {
		return err
	}
	return s.putBackwardMetrics(name, res, st)
}

func (s *Store) putBackwardMetrics(name string, res []BackwardResult, st *RunState) error {
	err := s.update(func(txn *badger.Txn) error {
		for _, r := range res {
			m := r.Metrics
			m.Step, m.Segment = r.Step, r.Segment
			b, err := encodeMetrics(m)
			if err != nil {
				return err
			}
			if err := txn.Set(runKey(name, kindBwdMetrics, r.Segment, r.Step), b); err != nil {
				return err
			}
			// The latest-segment view: keep the result of the highest
			// segment at each step.
			lk := runKey(name, kindLatestBwd, r.Step)
			item, err := txn.Get(lk)
			switch {
			case errors.Is(err, badger.ErrKeyNotFound):
			case err != nil:
				return err
			default:
				var old Metrics
				err := readValue(item, name, "metrics", r.Step, func(v []byte) error {
					var err error
					old, err = decodeMetrics(v)
					return err
				})
				if err != nil {
					return err
				}
				if old.Segment > r.Segment {
					continue
				}
			}
			if err := txn.Set(lk, b); err != nil {
				return err
			}
		}
		if st == nil {
			return nil
		}
		cur, err := readState(txn, name)
		if err != nil {
			return err
		}
		next := *st
		next.ForwardStep = cur.ForwardStep
		if err := next.validate(); err != nil {
			return err
		}
		return setRec(txn, runKey(name, kindState), next)
	})
	if errors.Is(err, badger.ErrTxnTooBig) && len(res) > 1 {
		h := len(res) / 2
		if err := s.putBackwardMetrics(name, res[:h], nil); err != nil {
			return err
		}
		return s.putBackwardMetrics(name, res[h:], st)
	}
	return err
}

// BackwardTheta loads the parameters of a segment's backward iterate at step
// into dst; it reports false when they were not kept.
func (s *Store) BackwardTheta(name string, segment, step int, dst []float32) (bool, error) {
	if err := checkName(name); err != nil {
		return false, err
	}
	found := true
	err := s.view(func(txn *badger.Txn) error {
		if err := checkDst(txn, name, dst); err != nil {
			return err
		}
		err := readParams(txn, name, "backward", runKey(name, kindBwdTheta, segment, step), step, dst)
		if errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
			found = false
			return nil
		}
		return err
	})
	return found && err == nil, err
}
