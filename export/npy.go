package export

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// npyMagic starts every .npy file.
const npyMagic = "\x93NUMPY"

// npyAlign is the alignment NumPy gives the start of the data.
const npyAlign = 64

// WriteNpyInt64 writes data as a .npy version 1.0 file holding a C-order
// little-endian int64 ('<i8') array of shape (rows, cols). len(data) must be
// rows*cols.
func WriteNpyInt64(w io.Writer, rows, cols int, data []int64) error {
	if rows < 0 || cols < 0 {
		return fmt.Errorf("%w: npy shape (%d, %d)", ErrInvalid, rows, cols)
	}
	if cols != 0 && rows > math.MaxInt/8/cols {
		return fmt.Errorf("%w: npy shape (%d, %d) is too large", ErrInvalid, rows, cols)
	}
	if rows*cols != len(data) {
		return fmt.Errorf("%w: npy shape (%d, %d) needs %d values, got %d", ErrInvalid, rows, cols, rows*cols, len(data))
	}
	dict := fmt.Sprintf("{'descr': '<i8', 'fortran_order': False, 'shape': (%d, %d), }", rows, cols)
	// magic(6) + version(2) + header length(2) + dict + padding + '\n'
	// must be a multiple of npyAlign.
	total := 10 + len(dict) + 1
	pad := (npyAlign - total%npyAlign) % npyAlign
	hlen := len(dict) + pad + 1
	if hlen > math.MaxUint16 {
		return fmt.Errorf("%w: npy header too long", ErrInvalid)
	}

	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString(npyMagic)
	bw.Write([]byte{1, 0})
	var u16 [2]byte
	binary.LittleEndian.PutUint16(u16[:], uint16(hlen))
	bw.Write(u16[:])
	bw.WriteString(dict)
	bw.WriteString(strings.Repeat(" ", pad))
	bw.WriteByte('\n')
	chunk := make([]byte, 0, 64<<10)
	for _, v := range data {
		chunk = binary.LittleEndian.AppendUint64(chunk, uint64(v))
		if len(chunk) == cap(chunk) {
			if _, err := bw.Write(chunk); err != nil {
				return fmt.Errorf("export: write npy: %w", err)
			}
			chunk = chunk[:0]
		}
	}
	bw.Write(chunk) // an error here is reported by Flush
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export: write npy: %w", err)
	}
	return nil
}

// ReadNpyInt64 reads a .npy file (version 1.0, 2.0 or 3.0) holding a
// two-dimensional C-order '<i8' array and returns its shape and values.
// Errors wrap ErrFormat for malformed files and ErrUnsupported for other
// dtypes, Fortran order or other ranks.
func ReadNpyInt64(r io.Reader) (rows, cols int, data []int64, err error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return 0, 0, nil, fmt.Errorf("%w: npy preamble: %w", ErrFormat, err)
	}
	if string(pre[:6]) != npyMagic {
		return 0, 0, nil, fmt.Errorf("%w: not a .npy file (bad magic)", ErrFormat)
	}
	var hlen int
	switch pre[6] {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, 0, nil, fmt.Errorf("%w: npy header length: %w", ErrFormat, err)
		}
		hlen = int(binary.LittleEndian.Uint16(b[:]))
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, 0, nil, fmt.Errorf("%w: npy header length: %w", ErrFormat, err)
		}
		v := binary.LittleEndian.Uint32(b[:])
		if v > 1<<24 {
			return 0, 0, nil, fmt.Errorf("%w: npy header length %d", ErrFormat, v)
		}
		hlen = int(v)
	default:
		return 0, 0, nil, fmt.Errorf("%w: npy version %d.%d", ErrUnsupported, pre[6], pre[7])
	}
	hdr := make([]byte, hlen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, 0, nil, fmt.Errorf("%w: npy header (%d bytes): %w", ErrFormat, hlen, err)
	}
	descr, fortran, shape, err := parseNpyHeader(string(hdr))
	if err != nil {
		return 0, 0, nil, err
	}
	if descr != "<i8" {
		return 0, 0, nil, fmt.Errorf("%w: npy dtype %q, want '<i8'", ErrUnsupported, descr)
	}
	if fortran {
		return 0, 0, nil, fmt.Errorf("%w: npy array in Fortran order", ErrUnsupported)
	}
	if len(shape) != 2 {
		return 0, 0, nil, fmt.Errorf("%w: npy array of rank %d, want 2", ErrUnsupported, len(shape))
	}
	rows, cols = shape[0], shape[1]
	if cols != 0 && rows > math.MaxInt/8/cols {
		return 0, 0, nil, fmt.Errorf("%w: npy shape (%d, %d) is too large", ErrFormat, rows, cols)
	}
	raw := make([]byte, 8*rows*cols)
	if _, err := io.ReadFull(r, raw); err != nil {
		return 0, 0, nil, fmt.Errorf("%w: npy data (%d bytes): %w", ErrFormat, len(raw), err)
	}
	if err := expectEOF(r); err != nil {
		return 0, 0, nil, fmt.Errorf("npy: %w", err)
	}
	data = make([]int64, rows*cols)
	for i := range data {
		data[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	return rows, cols, data, nil
}

// parseNpyHeader parses the Python dict literal of a .npy header, accepting
// the keys 'descr', 'fortran_order' and 'shape' in any order, as NumPy
// writes them (single or double quotes, optional trailing commas).
func parseNpyHeader(h string) (descr string, fortran bool, shape []int, err error) {
	bad := func(why string) error {
		return fmt.Errorf("%w: npy header %q: %s", ErrFormat, strings.TrimSpace(h), why)
	}
	s := strings.TrimSpace(h)
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return "", false, nil, bad("not a dict")
	}
	s = strings.TrimSpace(s[1 : len(s)-1])
	seen := map[string]bool{}
	for s != "" {
		key, rest, ok := cutQuoted(s)
		if !ok {
			return "", false, nil, bad("bad key")
		}
		rest = strings.TrimSpace(rest)
		if !strings.HasPrefix(rest, ":") {
			return "", false, nil, bad("missing ':'")
		}
		rest = strings.TrimSpace(rest[1:])
		if seen[key] {
			return "", false, nil, bad("duplicate key " + key)
		}
		seen[key] = true
		switch key {
		case "descr":
			descr, rest, ok = cutQuoted(rest)
			if !ok {
				return "", false, nil, bad("bad descr")
			}
		case "fortran_order":
			switch {
			case strings.HasPrefix(rest, "False"):
				fortran, rest = false, rest[5:]
			case strings.HasPrefix(rest, "True"):
				fortran, rest = true, rest[4:]
			default:
				return "", false, nil, bad("bad fortran_order")
			}
		case "shape":
			if !strings.HasPrefix(rest, "(") {
				return "", false, nil, bad("bad shape")
			}
			end := strings.IndexByte(rest, ')')
			if end < 0 {
				return "", false, nil, bad("unterminated shape")
			}
			shape = []int{}
			for _, f := range strings.Split(rest[1:end], ",") {
				f = strings.TrimSpace(f)
				if f == "" {
					continue
				}
				d, err := strconv.Atoi(strings.TrimSuffix(f, "L"))
				if err != nil || d < 0 {
					return "", false, nil, bad("bad dimension " + f)
				}
				shape = append(shape, d)
			}
			rest = rest[end+1:]
		default:
			return "", false, nil, bad("unknown key " + key)
		}
		rest = strings.TrimSpace(rest)
		if strings.HasPrefix(rest, ",") {
			rest = strings.TrimSpace(rest[1:])
		} else if rest != "" {
			return "", false, nil, bad("missing ','")
		}
		s = rest
	}
	if !seen["descr"] || !seen["fortran_order"] || !seen["shape"] {
		return "", false, nil, bad("needs descr, fortran_order and shape")
	}
	return descr, fortran, shape, nil
}

// cutQuoted splits a leading Python string literal ('x' or "x", no escapes)
// off s.
func cutQuoted(s string) (val, rest string, ok bool) {
	if s == "" || (s[0] != '\'' && s[0] != '"') {
		return "", s, false
	}
	end := strings.IndexByte(s[1:], s[0])
	if end < 0 {
		return "", s, false
	}
	return s[1 : 1+end], s[2+end:], true
}
