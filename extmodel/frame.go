package extmodel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/vmihailenco/msgpack/v5"
)

// Version is the operator protocol version this package speaks
// (docs/protocol.md).
const Version = 1

// MaxFrame is the largest frame either side may send (docs/protocol.md:
// L ≤ 1 GiB). A larger length is refused before anything is allocated.
const MaxFrame = 1 << 30

// writeFrame writes payload as one frame: its 4-byte big-endian length,
// then the payload (two writes: a state of many MB is not copied again).
func writeFrame(w io.Writer, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("frame of %d bytes: %w", len(payload), ErrFrameTooLarge)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// readFrame reads one frame of at most limit bytes. A clean end of the
// stream before the header is io.EOF; inside a frame, io.ErrUnexpectedEOF.
func readFrame(r io.Reader, limit int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if int64(n) > int64(limit) {
		return nil, fmt.Errorf("frame of %d bytes, limit %d: %w", n, limit, ErrFrameTooLarge)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("frame of %d bytes: %w", n, err)
	}
	return buf, nil
}

// encodeMsg encodes v (a request or reply struct) as a msgpack map, in a
// buffer of sizeHint bytes to start with (the request's vectors: no
// regrowth copies of a large state).
func encodeMsg(v any, sizeHint int) ([]byte, error) {
	b := bytes.NewBuffer(make([]byte, 0, sizeHint+512))
	enc := msgpack.NewEncoder(b)
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// decodeMsg decodes frame, which must be exactly one msgpack map, into v
// (a pointer to a struct; unknown keys are ignored, so a later minor
// addition on the child's side does not break an older daemon).
func decodeMsg(frame []byte, v any) error {
	if len(frame) == 0 || !isMap(frame[0]) {
		return fmt.Errorf("%w: not a msgpack map", ErrGarbage)
	}
	r := bytes.NewReader(frame)
	dec := msgpack.NewDecoder(r)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrGarbage, err)
	}
	if r.Len() != 0 {
		return fmt.Errorf("%w: %d bytes after the map", ErrGarbage, r.Len())
	}
	return nil
}

// isMap reports whether c is the first byte of a msgpack map (fixmap,
// map16, map32).
func isMap(c byte) bool { return c&0xf0 == 0x80 || c == 0xde || c == 0xdf }

// f32Bytes returns x as raw little-endian float32 bytes.
func f32Bytes(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// bytesF32 decodes raw little-endian float32 bytes into dst, which must
// have exactly len(b)/4 elements.
func bytesF32(dst []float32, b []byte) error {
	if len(b) != 4*len(dst) {
		return fmt.Errorf("%w: vector of %d bytes, want %d (%d float32)", ErrGarbage, len(b), 4*len(dst), len(dst))
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return nil
}

// i32Bytes returns x as raw little-endian int32 bytes.
func i32Bytes(x []int32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
	}
	return b
}
