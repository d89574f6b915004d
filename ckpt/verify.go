package ckpt

import (
	"errors"
	"fmt"
	"math"

	"github.com/dgraph-io/badger/v4"
)

// Replayer re-executes forward steps from+1 … from+len(batches) in place on
// theta, step from+i+1 with batches[i]. It must be deterministic: Verify
// compares its results bitwise with stored checkpoints. ckpt knows nothing of
// gradients; the caller supplies the operator.
type Replayer func(theta []float32, from int, batches [][]int32) error

// VerifyReport is what Verify checked and every problem it found, one line
// each.
type VerifyReport struct {
	Checkpoints    int // checkpoints read and checksummed
	Steps          int // forward steps re-executed between checkpoints
	Anchors        int // anchors whose starting point was read
	BackwardThetas int // backward parameter vectors checksummed
	Problems       []string
}

// OK reports whether Verify found no problem.
func (r VerifyReport) OK() bool { return len(r.Problems) == 0 }

// maxProblems bounds the report of a badly damaged run.
const maxProblems = 1000

func (r *VerifyReport) problem(format string, args ...any) {
	switch {
	case len(r.Problems) < maxProblems:
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	case len(r.Problems) == maxProblems:
		r.Problems = append(r.Problems, "further problems not listed")
	}
}

// Verify checks a run against its own records, in one consistent snapshot:
//   - every checkpoint of the run's schedule exists: θ0, every
//     CheckpointEvery-th step up to ForwardStep, and the last step once the
//     run reached it (ExpectedCheckpoints);
//   - every record decodes and every parameter vector matches its CRC-32C
//     (checkpoints, anchor starting points, backward iterates);
//   - the batch log holds exactly the steps 1…ForwardStep, and nothing else
//     refers to a step beyond it;
//   - re-executing the batch log with replay from each checkpoint to the next
//     reproduces the next one bitwise, and an anchor taken from the forward
//     iterate equals the replayed forward iterate bitwise;
//   - every backward result belongs to a segment with an anchor, and the
//     latest-segment view agrees with the per-segment results.
//
// Problems are collected in the report; the error is for a run that cannot
// be read at all (ErrRunNotFound, I/O).
func (s *Store) Verify(name string, replay Replayer) (VerifyReport, error) {
	var rep VerifyReport
	if err := checkName(name); err != nil {
		return rep, err
	}
	err := s.view(func(txn *badger.Txn) error {
		cfg, err := readConfig(txn, name)
		if errors.Is(err, ErrCorrupt) {
			rep.problem("%v", err)
			return nil
		}
		if err != nil {
			return err
		}
		st, err := readState(txn, name)
		if errors.Is(err, errIO) {
			return err
		}
		if err != nil {
			rep.problem("%v", err)
			return nil
		}
		if err := st.validate(); err != nil {
			rep.problem("state: %v", err)
		}
		if cfg.Dim <= 0 {
			rep.problem("config: dimension %d", cfg.Dim)
			return nil
		}
		v := verifier{txn: txn, name: name, cfg: cfg, st: st, rep: &rep, replay: replay}
		v.batchLog()
		v.forwardMetrics()
		v.checkpoints()
		anchors := v.anchors()
		v.backward(anchors)
		return v.err
	})
	if errors.Is(err, ErrCorrupt) {
		// A damaged table (a recovered Badger panic): a problem to report.
		rep.problem("%v", err)
		return rep, nil
	}
	return rep, err
}

type verifier struct {
	txn    *badger.Txn
	name   string
	cfg    RunConfig
	st     RunState
	rep    *VerifyReport
	replay Replayer
	// err is the first failed read: what cannot be read is not known to
	// be corrupt, so Verify returns it as its error instead of a problem.
	err error
}

// failed reports whether err is a failed read, and keeps the first one.
// Every check stops at a failed read (the report would be incomplete).
func (v *verifier) failed(err error) bool {
	if v.err != nil {
		return true
	}
	if errors.Is(err, errIO) {
		v.err = err
		return true
	}
	return false
}

func (v *verifier) batchLog() {
	prefix := runKey(v.name, kindBatch)
	it := v.txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 256})
	defer it.Close()
	want, beyond := 1, 0
	for it.Rewind(); it.Valid(); it.Next() {
		step := keyNum(it.Item().Key(), len(prefix), 0)
		if step > want {
			v.rep.problem("batch log: steps %d..%d missing", want, step-1)
		}
		want = step + 1
		if step > v.st.ForwardStep {
			beyond++
		}
		if err := readValue(it.Item(), v.name, "batch", step, func(b []byte) error { _, err := decodeBatch(b); return err }); err != nil {
			if v.failed(err) {
				return
			}
			v.rep.problem("%v", err)
		}
	}
	if want <= v.st.ForwardStep {
		v.rep.problem("batch log: steps %d..%d missing (forward step %d)", want, v.st.ForwardStep, v.st.ForwardStep)
	}
	if beyond > 0 {
		v.rep.problem("batch log: %d steps beyond forward step %d", beyond, v.st.ForwardStep)
	}
}

// scanMetrics calls fn with every key under prefix and its decoded metrics.
func (v *verifier) scanMetrics(prefix []byte, fn func(key []byte, m Metrics)) {
	it := v.txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 256})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		key := it.Item().KeyCopy(nil)
		step := keyNum(key, len(key)-8, 0) // the step is the key's last number
		var m Metrics
		err := readValue(it.Item(), v.name, "metrics", step, func(b []byte) error {
			var err error
			if m, err = decodeMetrics(b); err == nil && m.Step != step {
				err = fmt.Errorf("%w: metrics of step %d under the key of step %d", errLayout, m.Step, step)
			}
			return err
		})
		if err != nil {
			if v.failed(err) {
				return
			}
			v.rep.problem("%v", err)
			continue
		}
		fn(key, m)
	}
}

func (v *verifier) forwardMetrics() {
	beyond := 0
	v.scanMetrics(runKey(v.name, kindFwdMetrics), func(_ []byte, m Metrics) {
		if m.Step > v.st.ForwardStep {
			beyond++
		}
	})
	if beyond > 0 {
		v.rep.problem("forward metrics: %d steps beyond forward step %d", beyond, v.st.ForwardStep)
	}
}

func (v *verifier) checkpoints() {
	steps := keySteps(v.txn, runKey(v.name, kindCheckpoint))
	if len(steps) == 0 || steps[0] != 0 {
		v.rep.problem("checkpoint 0 (θ0) missing")
	}
	for _, k := range missingCheckpoints(v.cfg, v.st, steps) {
		v.rep.problem("checkpoint %d missing (a checkpoint every %d steps, forward step %d): replayctl verify --repair recomputes it",
			k, v.cfg.CheckpointEvery, v.st.ForwardStep)
	}
	prev, cur := make([]float32, v.cfg.Dim), make([]float32, v.cfg.Dim)
	work := make([]float32, v.cfg.Dim)
	prevStep := -1
	for _, k := range steps {
		if k > v.st.ForwardStep {
			v.rep.problem("checkpoint %d is beyond forward step %d", k, v.st.ForwardStep)
			continue
		}
		v.rep.Checkpoints++
		if err := readParams(v.txn, v.name, "checkpoint", runKey(v.name, kindCheckpoint, k), k, cur); err != nil {
			if v.failed(err) {
				return
			}
			// Replay from the last good checkpoint across this one.
			v.rep.problem("%v", err)
			continue
		}
		if prevStep >= 0 {
			copy(work, prev)
			if v.forward(work, prevStep, k, fmt.Sprintf("checkpoint %d", k)) {
				v.compare(cur, work, fmt.Sprintf("checkpoint %d differs from the replay of steps %d..%d from checkpoint %d", k, prevStep+1, k, prevStep))
			}
		}
		prev, cur = cur, prev
		prevStep = k
	}
}

// forward replays steps from+1..to on theta; it reports false (and the
// problem) when it could not.
func (v *verifier) forward(theta []float32, from, to int, what string) bool {
	if to == from {
		return true
	}
	bs, err := readBatches(v.txn, v.name, from+1, to)
	if err != nil && v.failed(err) {
		return false
	}
	if err != nil {
		v.rep.problem("%s: cannot replay steps %d..%d: %v", what, from+1, to, err)
		return false
	}
	if err := v.replay(theta, from, bs); err != nil {
		v.rep.problem("%s: replay of steps %d..%d failed: %v", what, from+1, to, err)
		return false
	}
	v.rep.Steps += to - from
	return true
}

func (v *verifier) compare(stored, replayed []float32, what string) {
	diff, first := 0, -1
	for i := range stored {
		if math.Float32bits(stored[i]) != math.Float32bits(replayed[i]) {
			if first < 0 {
				first = i
			}
			diff++
		}
	}
	if diff > 0 {
		v.rep.problem("%s: %d of %d parameters differ (first at %d: stored %g, replayed %g)",
			what, diff, len(stored), first, stored[first], replayed[first])
	}
}

func (v *verifier) anchors() map[int]AnchorRec {
	anchors, err := readAnchors(v.txn, v.name)
	if err != nil {
		if !v.failed(err) {
			v.rep.problem("%v", err)
		}
		return nil
	}
	bySeg := make(map[int]AnchorRec, len(anchors))
	start, work := make([]float32, v.cfg.Dim), make([]float32, v.cfg.Dim)
	for _, a := range anchors {
		bySeg[a.Segment] = a
		v.rep.Anchors++
		if a.Step > v.st.ForwardStep {
			v.rep.problem("anchor of segment %d is at step %d, beyond forward step %d", a.Segment, a.Step, v.st.ForwardStep)
			continue
		}
		if err := readAnchorStart(v.txn, v.name, a.Segment, start); err != nil {
			if v.failed(err) {
				return nil
			}
			v.rep.problem("%v", err)
			continue
		}
		if a.From != FromForward {
			continue
		}
		k, err := nearestCheckpoint(v.txn, v.name, a.Step, work)
		if err != nil {
			if v.failed(err) {
				return nil
			}
			v.rep.problem("anchor of segment %d: no forward iterate to compare with: %v", a.Segment, err)
			continue
		}
		what := fmt.Sprintf("anchor of segment %d", a.Segment)
		if v.forward(work, k, a.Step, what) {
			v.compare(start, work, fmt.Sprintf("%s differs from the forward iterate at step %d", what, a.Step))
		}
	}
	if _, ok := bySeg[0]; !ok {
		v.rep.problem("anchor of segment 0 (θ0) missing")
	}
	return bySeg
}

func (v *verifier) backward(anchors map[int]AnchorRec) {
	// Per-segment metrics: highest segment per step, for the latest view.
	top := make(map[int]int)
	pl := len(runKey(v.name, kindBwdMetrics))
	v.scanMetrics(runKey(v.name, kindBwdMetrics), func(key []byte, m Metrics) {
		seg := keyNum(key, pl, 0)
		if m.Segment != seg {
			v.rep.problem("backward metrics at step %d: segment %d under the key of segment %d", m.Step, m.Segment, seg)
		}
		if _, ok := anchors[seg]; !ok && anchors != nil {
			v.rep.problem("backward result at step %d belongs to segment %d, which has no anchor", m.Step, seg)
		}
		if m.Step > v.st.ForwardStep {
			v.rep.problem("backward result of segment %d at step %d is beyond forward step %d", seg, m.Step, v.st.ForwardStep)
		}
		if t, ok := top[m.Step]; !ok || seg > t {
			top[m.Step] = seg
		}
	})
	seen := 0
	v.scanMetrics(runKey(v.name, kindLatestBwd), func(_ []byte, m Metrics) {
		seen++
		if t, ok := top[m.Step]; !ok || t != m.Segment {
			v.rep.problem("backward view at step %d shows segment %d, the highest stored segment is %d", m.Step, m.Segment, t)
		}
	})
	if seen != len(top) {
		v.rep.problem("backward view has %d steps, the segments have results at %d steps", seen, len(top))
	}

	prefix := runKey(v.name, kindBwdTheta)
	theta := make([]float32, v.cfg.Dim)
	it := v.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		seg, step := keyNum(it.Item().Key(), len(prefix), 0), keyNum(it.Item().Key(), len(prefix), 1)
		v.rep.BackwardThetas++
		err := readValue(it.Item(), v.name, "backward", step, func(b []byte) error {
			if err := decodeParams(b, step, theta); err != nil {
				return fmt.Errorf("segment %d: %w", seg, err)
			}
			return nil
		})
		if err != nil {
			if v.failed(err) {
				return
			}
			v.rep.problem("%v", err)
		}
	}
}
