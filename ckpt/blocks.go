package ckpt

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/replay-sgd/replay/internal/blocksum"
)

// Block summaries of the forward metrics (key 'g' + block index): the
// blocksum.Summary of every complete block of blocksum.Steps forward
// steps, written by appendForward in the transaction that logs the
// block's last step, so that no crash leaves a complete block without its
// summary or a summary of metrics that are not stored. They are derived
// data: a summary is a pure function of the block's stored metrics (the
// same bits on every replay of the run), Verify does not read them,
// DeleteRun drops them with the run's prefix. Runs stored before the
// summaries existed have none for their earlier blocks; readers fall back
// to the metrics there (ForwardBlocks reports which blocks it has).

// blockRec is a blocksum.Summary as a msgpack array.
type blockRec struct {
	//lint:ignore U1000 msgpack reads the tag of this field (by reflection)
	_msgpack struct{} `msgpack:",as_array"`
	Last, N  int32
	Min, Max []float64
	End      []float64
	Count    []int32
}

func encodeBlock(s *blocksum.Summary) ([]byte, error) {
	return msgpack.Marshal(&blockRec{Last: s.Last, N: s.N, Min: s.Min[:], Max: s.Max[:], End: s.End[:], Count: s.Count[:]})
}

// decodeBlock decodes a blockRec without msgpack's reflection (five times
// faster: a cold web view reads one record per 64 steps of every run it
// shows) and checks it against the block's index.
func decodeBlock(v []byte, index int) (blocksum.Summary, error) {
	var s blocksum.Summary
	bad := func(err error) (blocksum.Summary, error) {
		return blocksum.Summary{}, fmt.Errorf("%w: block summary: %w", errLayout, err)
	}
	r := bytes.NewReader(v)
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(r)
	if l, err := dec.DecodeArrayLen(); err != nil || l != 6 {
		return bad(fmt.Errorf("%d fields, want 6 (%w)", l, err))
	}
	var err error
	if s.Last, err = dec.DecodeInt32(); err != nil {
		return bad(err)
	}
	if s.N, err = dec.DecodeInt32(); err != nil {
		return bad(err)
	}
	for _, a := range []*[blocksum.M]float64{&s.Min, &s.Max, &s.End} {
		if l, err := dec.DecodeArrayLen(); err != nil || l != blocksum.M {
			return bad(fmt.Errorf("%d measures, want %d (%w)", l, blocksum.M, err))
		}
		for i := range a {
			if a[i], err = dec.DecodeFloat64(); err != nil {
				return bad(err)
			}
		}
	}
	if l, err := dec.DecodeArrayLen(); err != nil || l != blocksum.M {
		return bad(fmt.Errorf("%d counts, want %d (%w)", l, blocksum.M, err))
	}
	for i := range s.Count {
		if s.Count[i], err = dec.DecodeInt32(); err != nil {
			return bad(err)
		}
	}
	if r.Len() != 0 {
		return bad(fmt.Errorf("%d bytes after the record", r.Len()))
	}
	lo, hi := int32(index*blocksum.Steps+1), int32((index+1)*blocksum.Steps)
	if s.N < 0 || s.N > blocksum.Steps || s.N > 0 && (s.Last < lo || s.Last > hi) {
		return bad(fmt.Errorf("%d points ending at step %d under the key of block %d", s.N, s.Last, index))
	}
	return s, nil
}

// measures are m's values in blocksum.Names' order.
func measures(m *Metrics) *[blocksum.M]float64 {
	return &[blocksum.M]float64{m.Loss, m.TestLoss, m.TestAcc, m.StepDist, m.ParamNorm}
}

// putBlocks writes the summary of every block whose last step is among
// steps (contiguous, already set in txn), reading the block's earlier
// steps' metrics from the store. A block with a corrupt earlier record
// gets no summary (readers then read its metrics and report the
// corruption as they do without summaries): derived data never fails an
// append.
func putBlocks(txn *badger.Txn, name string, steps []ForwardStep) error {
	if len(steps) == 0 {
		return nil
	}
	first, last := steps[0].Step, steps[len(steps)-1].Step
	for end := (first + blocksum.Steps - 1) / blocksum.Steps * blocksum.Steps; end <= last; end += blocksum.Steps {
		start := end - blocksum.Steps + 1
		var s blocksum.Summary
		if start < first {
			err := scanMetricsTxn(txn, name, runKey(name, kindFwdMetrics), start, first-1, func(m Metrics) error {
				s.Add(m.Step, measures(&m))
				return nil
			})
			if errors.Is(err, ErrCorrupt) {
				continue
			}
			if err != nil {
				return err
			}
		}
		for i := max(start, first) - first; i <= end-first; i++ {
			if fs := &steps[i]; fs.HasMetrics {
				s.Add(fs.Step, measures(&fs.Metrics))
			}
		}
		b, err := encodeBlock(&s)
		if err != nil {
			return err
		}
		if err := txn.Set(runKey(name, kindFwdBlock, end/blocksum.Steps-1), b); err != nil {
			return err
		}
	}
	return nil
}

// ForwardBlocks calls fn, in order, with the stored summary of every block
// i in [from, to) that has one (see blocksum: block i covers steps
// [1+i·blocksum.Steps, (i+1)·blocksum.Steps]). Blocks without a summary
// (not complete yet, or logged before the store wrote summaries) are
// skipped: the caller reads their metrics with ForwardMetrics.
func (s *Store) ForwardBlocks(name string, from, to int, fn func(i int, sum blocksum.Summary) error) error {
	if err := checkName(name); err != nil {
		return err
	}
	from = max(from, 0)
	prefix := runKey(name, kindFwdBlock)
	return s.view(func(txn *badger.Txn) error {
		if _, err := readConfig(txn, name); err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		for it.Seek(withNum(prefix, from)); it.Valid(); it.Next() {
			item := it.Item()
			i := keyNum(item.Key(), len(prefix), 0)
			if i >= to {
				break
			}
			var sum blocksum.Summary
			if err := readValue(item, name, "block summary", i, func(v []byte) error {
				var err error
				sum, err = decodeBlock(v, i)
				return err
			}); err != nil {
				return err
			}
			if err := fn(i, sum); err != nil {
				return err
			}
		}
		return nil
	})
}
