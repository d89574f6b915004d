package ckpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/vmihailenco/msgpack/v5"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Blob records (parameter vectors and batches) are a msgpack array
// [n uint64, crc uint32, bin], where bin holds the raw little-endian values
// and crc is the CRC-32C of bin. n is the step for parameters (checked
// against the key) and the count for batches. The bin is last so that a
// reader can check the checksum and convert the numbers straight from
// Badger's buffer.

func encodeBlob(n uint64, payloadLen int, fill func([]byte)) []byte {
	// The payload is filled in place after a fixed-size header: array (1),
	// uint64 (9), uint32 (5), bin length (2, 3 or 5 bytes).
	hl := 1 + 9 + 5 + 5
	switch {
	case payloadLen <= math.MaxUint8:
		hl -= 3
	case payloadLen <= math.MaxUint16:
		hl -= 2
	}
	out := make([]byte, hl+payloadLen)
	payload := out[hl:]
	fill(payload)
	var buf bytes.Buffer
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	// Errors are impossible: the writer is a bytes.Buffer.
	_ = enc.EncodeArrayLen(3)
	_ = enc.EncodeUint64(n)
	_ = enc.EncodeUint32(crc32.Checksum(payload, castagnoli))
	_ = enc.EncodeBytesLen(payloadLen)
	if buf.Len() != hl {
		panic(fmt.Sprintf("ckpt: blob header of %d bytes, want %d", buf.Len(), hl))
	}
	copy(out, buf.Bytes())
	return out
}

var (
	errChecksum = errors.New("checksum mismatch")
	errLayout   = errors.New("malformed record")
)

// decodeBlob checks the record's layout and checksum and returns n and the
// payload, which aliases val.
func decodeBlob(val []byte) (uint64, []byte, error) {
	r := bytes.NewReader(val)
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(r)
	l, err := dec.DecodeArrayLen()
	if err != nil || l != 3 {
		return 0, nil, fmt.Errorf("%w: header (%d fields): %w", errLayout, l, err)
	}
	n, err := dec.DecodeUint64()
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", errLayout, err)
	}
	sum, err := dec.DecodeUint32()
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", errLayout, err)
	}
	bl, err := dec.DecodeBytesLen()
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", errLayout, err)
	}
	if bl != r.Len() {
		return 0, nil, fmt.Errorf("%w: payload of %d bytes, %d present", errLayout, bl, r.Len())
	}
	payload := val[len(val)-bl:]
	if got := crc32.Checksum(payload, castagnoli); got != sum {
		return 0, nil, fmt.Errorf("%w: stored %08x, computed %08x", errChecksum, sum, got)
	}
	return n, payload, nil
}

func encodeParams(step int, theta []float32) []byte {
	return encodeBlob(uint64(step), 4*len(theta), func(b []byte) {
		for i, v := range theta {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
	})
}

// decodeParams fills dst from a parameter record stored for step.
func decodeParams(val []byte, step int, dst []float32) error {
	n, p, err := decodeBlob(val)
	if err != nil {
		return err
	}
	if n != uint64(step) {
		return fmt.Errorf("%w: record of step %d under the key of step %d", errLayout, n, step)
	}
	if len(p) != 4*len(dst) {
		return fmt.Errorf("%w: %d parameters stored, %d expected", ErrDim, len(p)/4, len(dst))
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(p[4*i:]))
	}
	return nil
}

func encodeBatch(idx []int32) []byte {
	return encodeBlob(uint64(len(idx)), 4*len(idx), func(b []byte) {
		for i, v := range idx {
			binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
		}
	})
}

func decodeBatch(val []byte) ([]int32, error) {
	n, p, err := decodeBlob(val)
	if err != nil {
		return nil, err
	}
	if uint64(len(p)) != 4*n {
		return nil, fmt.Errorf("%w: %d indices announced, %d bytes stored", errLayout, n, len(p))
	}
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(p[4*i:]))
	}
	return out, nil
}

// metricsRec is Metrics as a msgpack array (no field names: it is stored
// once per step and trajectory).
type metricsRec struct {
	//lint:ignore U1000 msgpack reads the tag of this field (by reflection)
	_msgpack  struct{} `msgpack:",as_array"`
	Step      int
	Loss      float64
	TestLoss  float64
	TestAcc   float64
	ParamNorm float64
	StepDist  float64
	Anchor    int
	Segment   int
}

func encodeMetrics(m Metrics) ([]byte, error) {
	return msgpack.Marshal(&metricsRec{
		Step: m.Step, Loss: m.Loss, TestLoss: m.TestLoss, TestAcc: m.TestAcc,
		ParamNorm: m.ParamNorm, StepDist: m.StepDist, Anchor: m.Anchor, Segment: m.Segment,
	})
}

func decodeMetrics(val []byte) (Metrics, error) {
	var r metricsRec
	if err := msgpack.Unmarshal(val, &r); err != nil {
		return Metrics{}, fmt.Errorf("%w: %w", errLayout, err)
	}
	return Metrics{
		Step: r.Step, Loss: r.Loss, TestLoss: r.TestLoss, TestAcc: r.TestAcc,
		ParamNorm: r.ParamNorm, StepDist: r.StepDist, Anchor: r.Anchor, Segment: r.Segment,
	}, nil
}
