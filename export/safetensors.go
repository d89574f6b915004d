package export

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// Tensor is one named float32 array. Data holds the elements in row-major
// (C) order; its length must be the product of Shape (1 for an empty shape,
// i.e. a scalar).
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// maxHeader is the largest JSON header the reference implementation accepts.
const maxHeader = 100 << 20

// metadataKey is the reserved header key for free-form string metadata.
const metadataKey = "__metadata__"

// numel returns the number of elements of shape, or an error if a dimension
// is negative or the product overflows.
func numel(shape []int) (int, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d in shape %v", d, shape)
		}
		if d != 0 && n > math.MaxInt/4/d {
			return 0, fmt.Errorf("shape %v is too large", shape)
		}
		n *= d
	}
	return n, nil
}

// WriteSafetensors writes tensors to w in the safetensors format with dtype
// F32. See WriteSafetensorsMeta.
func WriteSafetensors(w io.Writer, tensors []Tensor) error {
	return WriteSafetensorsMeta(w, tensors, nil)
}

// headerEntry is one tensor's header record; the field order is the one the
// reference serializer emits.
type headerEntry struct {
	Dtype       string `json:"dtype"`
	Shape       []int  `json:"shape"`
	DataOffsets [2]int `json:"data_offsets"`
}

// WriteSafetensorsMeta writes tensors to w in the safetensors format with
// dtype F32 and, when meta is non-empty, a "__metadata__" string map. Data is
// laid out in ascending name order; the input slice is not reordered.
func WriteSafetensorsMeta(w io.Writer, tensors []Tensor, meta map[string]string) error {
	order := make([]int, len(tensors))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(tensors[a].Name, tensors[b].Name) })

	// The header is built by hand so that __metadata__ comes first and the
	// tensors follow in data order, like the reference serializer; the
	// values themselves go through encoding/json for correct escaping.
	var hdr bytes.Buffer
	hdr.WriteByte('{')
	first := true
	if len(meta) > 0 {
		b, err := json.Marshal(meta)
		if err != nil {
			return fmt.Errorf("export: encode metadata: %w", err)
		}
		hdr.WriteString(`"` + metadataKey + `":`)
		hdr.Write(b)
		first = false
	}
	off := 0
	for i, idx := range order {
		t := &tensors[idx]
		if t.Name == "" || t.Name == metadataKey {
			return fmt.Errorf("%w: tensor name %q", ErrInvalid, t.Name)
		}
		if i > 0 && tensors[order[i-1]].Name == t.Name {
			return fmt.Errorf("%w: duplicate tensor name %q", ErrInvalid, t.Name)
		}
		n, err := numel(t.Shape)
		if err != nil {
			return fmt.Errorf("%w: tensor %q: %w", ErrInvalid, t.Name, err)
		}
		if n != len(t.Data) {
			return fmt.Errorf("%w: tensor %q has shape %v (%d elements) but %d values",
				ErrInvalid, t.Name, t.Shape, n, len(t.Data))
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{} // a scalar is "shape": [], never null
		}
		name, _ := json.Marshal(t.Name)
		entry, err := json.Marshal(headerEntry{Dtype: "F32", Shape: shape, DataOffsets: [2]int{off, off + 4*n}})
		if err != nil {
			return fmt.Errorf("export: encode header of %q: %w", t.Name, err)
		}
		if !first {
			hdr.WriteByte(',')
		}
		first = false
		hdr.Write(name)
		hdr.WriteByte(':')
		hdr.Write(entry)
		off += 4 * n
	}
	hdr.WriteByte('}')
	// Pad with spaces so that 8 (length prefix) + header is a multiple of 8:
	// readers may then map the data as aligned float32.
	for hdr.Len()%8 != 0 {
		hdr.WriteByte(' ')
	}
	if hdr.Len() > maxHeader {
		return fmt.Errorf("%w: header of %d bytes exceeds %d", ErrInvalid, hdr.Len(), maxHeader)
	}

	bw := bufio.NewWriterSize(w, 64<<10)
	var prefix [8]byte
	binary.LittleEndian.PutUint64(prefix[:], uint64(hdr.Len()))
	bw.Write(prefix[:])
	bw.Write(hdr.Bytes())
	// Encode in chunks: one Write per 64 KiB rather than per value.
	chunk := make([]byte, 0, 64<<10)
	for _, idx := range order {
		for _, v := range tensors[idx].Data {
			chunk = binary.LittleEndian.AppendUint32(chunk, math.Float32bits(v))
			if len(chunk) == cap(chunk) {
				if _, err := bw.Write(chunk); err != nil {
					return fmt.Errorf("export: write safetensors: %w", err)
				}
				chunk = chunk[:0]
			}
		}
	}
	bw.Write(chunk) // an error here is reported by Flush
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export: write safetensors: %w", err)
	}
	return nil
}

// ReadSafetensors reads a safetensors file of F32 tensors and returns them in
// data order. See ReadSafetensorsMeta.
func ReadSafetensors(r io.Reader) ([]Tensor, error) {
	ts, _, err := ReadSafetensorsMeta(r)
	return ts, err
}

// ReadSafetensorsMeta reads a safetensors file of F32 tensors, checking it
// the way the reference reader does (header size, offsets tiling the data
// buffer without gaps or overlaps, element counts, no trailing bytes). It
// returns the tensors in data order and the __metadata__ map (nil if absent).
// Errors wrap ErrFormat, or ErrUnsupported for a dtype other than F32.
func ReadSafetensorsMeta(r io.Reader) ([]Tensor, map[string]string, error) {
	var prefix [8]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return nil, nil, fmt.Errorf("%w: safetensors length prefix: %w", ErrFormat, err)
	}
	n := binary.LittleEndian.Uint64(prefix[:])
	if n < 2 || n > maxHeader {
		return nil, nil, fmt.Errorf("%w: safetensors header length %d out of range", ErrFormat, n)
	}
	hdr := make([]byte, n)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, nil, fmt.Errorf("%w: safetensors header (%d bytes): %w", ErrFormat, n, err)
	}
	if hdr[0] != '{' {
		return nil, nil, fmt.Errorf("%w: safetensors header does not start with '{'", ErrFormat)
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(hdr))
	if err := dec.Decode(&raw); err != nil {
		return nil, nil, fmt.Errorf("%w: safetensors header JSON: %w", ErrFormat, err)
	}
	// Only spaces may follow the JSON object (the padding).
	if rest := hdr[dec.InputOffset():]; len(bytes.Trim(rest, " ")) != 0 {
		return nil, nil, fmt.Errorf("%w: safetensors header has trailing data after JSON", ErrFormat)
	}

	var meta map[string]string
	tensors := make([]Tensor, 0, len(raw))
	offsets := make([][2]int, 0, len(raw))
	for name, msg := range raw {
		if name == metadataKey {
			if err := json.Unmarshal(msg, &meta); err != nil {
				return nil, nil, fmt.Errorf("%w: safetensors __metadata__ must map strings to strings: %w", ErrFormat, err)
			}
			continue
		}
		var e struct {
			Dtype       string `json:"dtype"`
			Shape       []int  `json:"shape"`
			DataOffsets []int  `json:"data_offsets"`
		}
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, nil, fmt.Errorf("%w: safetensors tensor %q: %w", ErrFormat, name, err)
		}
		if e.Dtype == "" || e.Shape == nil || len(e.DataOffsets) != 2 {
			return nil, nil, fmt.Errorf("%w: safetensors tensor %q needs dtype, shape and two data_offsets", ErrFormat, name)
		}
		if e.Dtype != "F32" {
			return nil, nil, fmt.Errorf("%w: tensor %q has dtype %s, only F32 is read", ErrUnsupported, name, e.Dtype)
		}
		cnt, err := numel(e.Shape)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: safetensors tensor %q: %w", ErrFormat, name, err)
		}
		b, end := e.DataOffsets[0], e.DataOffsets[1]
		if b < 0 || end < b || end-b != 4*cnt {
			return nil, nil, fmt.Errorf("%w: safetensors tensor %q: data_offsets %v do not hold shape %v of F32",
				ErrFormat, name, e.DataOffsets, e.Shape)
		}
		tensors = append(tensors, Tensor{Name: name, Shape: e.Shape})
		offsets = append(offsets, [2]int{b, end})
	}

	// Put tensors in data order and check the offsets tile [0, total).
	idx := make([]int, len(tensors))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		if c := offsets[a][0] - offsets[b][0]; c != 0 {
			return c
		}
		return offsets[a][1] - offsets[b][1]
	})
	total := 0
	for _, i := range idx {
		if offsets[i][0] != total {
			return nil, nil, fmt.Errorf("%w: safetensors tensor %q starts at %d, expected %d (gap or overlap)",
				ErrFormat, tensors[i].Name, offsets[i][0], total)
		}
		total = offsets[i][1]
	}
	data := make([]byte, total)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, nil, fmt.Errorf("%w: safetensors data (%d bytes): %w", ErrFormat, total, err)
	}
	if err := expectEOF(r); err != nil {
		return nil, nil, fmt.Errorf("safetensors: %w", err)
	}

	out := make([]Tensor, len(idx))
	for j, i := range idx {
		t := tensors[i]
		buf := data[offsets[i][0]:offsets[i][1]]
		t.Data = make([]float32, len(buf)/4)
		for k := range t.Data {
			t.Data[k] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*k:]))
		}
		out[j] = t
	}
	return out, meta, nil
}

// expectEOF checks that r has nothing left to read.
func expectEOF(r io.Reader) error {
	var one [1]byte
	_, err := io.ReadFull(r, one[:])
	switch {
	case err == nil:
		return fmt.Errorf("%w: bytes after the end of the data", ErrFormat)
	case errors.Is(err, io.EOF):
		return nil
	default:
		return fmt.Errorf("export: read: %w", err)
	}
}
