package export

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func randTensors(rng *rand.Rand) []Tensor {
	mk := func(name string, shape ...int) Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(rng.NormFloat64())
		}
		return Tensor{Name: name, Shape: shape, Data: data}
	}
	// Deliberately not in name order, with special values and a scalar.
	ts := []Tensor{mk("2.weight", 10, 32), mk("0.weight", 32, 7), mk("2.bias", 10), mk("0.bias", 32), mk("theta"), mk("empty", 0, 3)}
	ts[0].Data[0] = float32(math.Inf(-1))
	ts[0].Data[1] = float32(math.Copysign(0, -1))
	ts[0].Data[2] = math.SmallestNonzeroFloat32
	ts[0].Data[3] = math.MaxFloat32
	return ts
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestSafetensorsRoundTrip(t *testing.T) {
	seed := uint64(20261125)
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	in := randTensors(rng)
	orig := make([]string, len(in))
	for i, x := range in {
		orig[i] = x.Name
	}
	var buf bytes.Buffer
	meta := map[string]string{"format": "pt", "run": "a\"b"}
	if err := WriteSafetensorsMeta(&buf, in, meta); err != nil {
		t.Fatal(err)
	}
	for i, x := range in {
		if x.Name != orig[i] {
			t.Fatalf("writer reordered its input")
		}
	}
	raw := buf.Bytes()
	hlen := binary.LittleEndian.Uint64(raw)
	if (8+hlen)%8 != 0 {
		t.Errorf("data starts at %d, not 8-aligned", 8+hlen)
	}
	if got := int(8 + hlen + 4*uint64(32*7+32+10*32+10+1)); got != len(raw) {
		t.Errorf("file is %d bytes, want %d", len(raw), got)
	}
	out, gotMeta, err := ReadSafetensorsMeta(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotMeta, meta) {
		t.Errorf("metadata %v, want %v", gotMeta, meta)
	}
	want := []string{"0.bias", "0.weight", "2.bias", "2.weight", "empty", "theta"}
	if len(out) != len(want) {
		t.Fatalf("read %d tensors, want %d", len(out), len(want))
	}
	byName := map[string]Tensor{}
	for _, x := range in {
		byName[x.Name] = x
	}
	for i, x := range out {
		if x.Name != want[i] {
			t.Errorf("tensor %d is %q, want %q (data order = name order)", i, x.Name, want[i])
		}
		w := byName[x.Name]
		if len(x.Shape) != len(w.Shape) || (len(w.Shape) > 0 && !reflect.DeepEqual(x.Shape, w.Shape)) {
			t.Errorf("%s: shape %v, want %v", x.Name, x.Shape, w.Shape)
		}
		if !sameBits(x.Data, w.Data) {
			t.Errorf("%s: data differs", x.Name)
		}
	}
	// Without metadata the header has no __metadata__ key and reads back nil.
	buf.Reset()
	if err := WriteSafetensors(&buf, in[:1]); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte("__metadata__")) {
		t.Error("empty metadata written")
	}
	if _, m, err := ReadSafetensorsMeta(&buf); err != nil || m != nil {
		t.Errorf("meta %v err %v", m, err)
	}
}

func TestSafetensorsWriteInvalid(t *testing.T) {
	cases := map[string][]Tensor{
		"count mismatch": {{Name: "a", Shape: []int{2, 2}, Data: make([]float32, 3)}},
		"negative dim":   {{Name: "a", Shape: []int{-1}, Data: nil}},
		"empty name":     {{Name: "", Shape: []int{1}, Data: make([]float32, 1)}},
		"reserved name":  {{Name: "__metadata__", Shape: []int{1}, Data: make([]float32, 1)}},
		"duplicate":      {{Name: "a", Shape: []int{1}, Data: make([]float32, 1)}, {Name: "a", Shape: []int{1}, Data: make([]float32, 1)}},
	}
	for name, ts := range cases {
		var buf bytes.Buffer
		if err := WriteSafetensors(&buf, ts); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", name, err)
		}
		if buf.Len() != 0 {
			t.Errorf("%s: wrote %d bytes before failing", name, buf.Len())
		}
	}
}

// stFile assembles a safetensors file from a raw header and n data bytes.
func stFile(header string, n int) []byte {
	var b bytes.Buffer
	var p [8]byte
	binary.LittleEndian.PutUint64(p[:], uint64(len(header)))
	b.Write(p[:])
	b.WriteString(header)
	b.Write(make([]byte, n))
	return b.Bytes()
}

func TestSafetensorsReadMalformed(t *testing.T) {
	good := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	if _, err := ReadSafetensors(bytes.NewReader(stFile(good, 8))); err != nil {
		t.Fatalf("control case: %v", err)
	}
	huge := make([]byte, 8)
	binary.LittleEndian.PutUint64(huge, 1<<40)
	cases := map[string]struct {
		file []byte
		want error
	}{
		"empty":          {nil, ErrFormat},
		"short prefix":   {[]byte{1, 2, 3}, ErrFormat},
		"huge header":    {huge, ErrFormat},
		"truncated hdr":  {stFile(good, 8)[:20], ErrFormat},
		"not json":       {stFile(`{"a":`+strings.Repeat(" ", 10), 0), ErrFormat},
		"not object":     {stFile(`[1,2,3]`, 0), ErrFormat},
		"junk after":     {stFile(good+"x", 8), ErrFormat},
		"short data":     {stFile(good, 7), ErrFormat},
		"trailing bytes": {stFile(good, 9), ErrFormat},
		"bad dtype":      {stFile(`{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}`, 4), ErrUnsupported},
		"missing shape":  {stFile(`{"a":{"dtype":"F32","data_offsets":[0,8]}}`, 8), ErrFormat},
		"shape mismatch": {stFile(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8), ErrFormat},
		"gap":            {stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12), ErrFormat},
		"overlap": {stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},`+
			`"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12), ErrFormat},
		"bad metadata": {stFile(`{"__metadata__":{"k":1}}`, 0), ErrFormat},
		"negative dim": {stFile(`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, 8), ErrFormat},
	}
	for name, c := range cases {
		if _, err := ReadSafetensors(bytes.NewReader(c.file)); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", name, err, c.want)
		}
	}
}

func TestNpyRoundTrip(t *testing.T) {
	seed := uint64(7)
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	for _, sh := range [][2]int{{5, 8}, {1, 1}, {0, 8}, {3, 0}, {1000, 3}} {
		data := make([]int64, sh[0]*sh[1])
		for i := range data {
			data[i] = rng.Int64() - math.MaxInt64/2
		}
		if len(data) > 1 {
			data[0], data[1] = math.MinInt64, math.MaxInt64
		}
		var buf bytes.Buffer
		if err := WriteNpyInt64(&buf, sh[0], sh[1], data); err != nil {
			t.Fatal(err)
		}
		raw := buf.Bytes()
		hlen := int(binary.LittleEndian.Uint16(raw[8:]))
		if (10+hlen)%64 != 0 || raw[10+hlen-1] != '\n' {
			t.Errorf("%v: header of %d bytes not 64-aligned or not newline-terminated", sh, hlen)
		}
		r, c, got, err := ReadNpyInt64(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if r != sh[0] || c != sh[1] || !reflect.DeepEqual(got, data) {
			t.Errorf("%v: read back (%d,%d) with different data", sh, r, c)
		}
	}
}

func TestNpyWriteInvalid(t *testing.T) {
	var buf bytes.Buffer
	for _, c := range []struct{ r, c, n int }{{2, 3, 5}, {-1, 3, 0}, {2, -3, 0}} {
		if err := WriteNpyInt64(&buf, c.r, c.c, make([]int64, c.n)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v: err %v, want ErrInvalid", c, err)
		}
	}
	if buf.Len() != 0 {
		t.Errorf("wrote %d bytes before failing", buf.Len())
	}
}

// npyFile assembles a version 1.0 .npy from a header dict and n data bytes.
func npyFile(dict string, n int) []byte {
	var b bytes.Buffer
	b.WriteString(npyMagic)
	b.Write([]byte{1, 0})
	h := dict + "\n"
	b.Write([]byte{byte(len(h)), byte(len(h) >> 8)})
	b.WriteString(h)
	b.Write(make([]byte, n))
	return b.Bytes()
}

func TestNpyReadMalformed(t *testing.T) {
	good := "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 3), }"
	if r, c, _, err := ReadNpyInt64(bytes.NewReader(npyFile(good, 48))); err != nil || r != 2 || c != 3 {
		t.Fatalf("control case: %d %d %v", r, c, err)
	}
	// Key order and quoting as other writers produce them.
	alt := `{"shape": (2,3), "fortran_order": False, "descr": "<i8"}`
	if _, _, _, err := ReadNpyInt64(bytes.NewReader(npyFile(alt, 48))); err != nil {
		t.Fatalf("alternative header: %v", err)
	}
	v9 := npyFile(good, 48)
	v9[6] = 9
	cases := map[string]struct {
		file []byte
		want error
	}{
		"empty":         {nil, ErrFormat},
		"bad magic":     {append([]byte("XNUMPY"), npyFile(good, 48)[6:]...), ErrFormat},
		"version 9":     {v9, ErrUnsupported},
		"truncated hdr": {npyFile(good, 48)[:30], ErrFormat},
		"short data":    {npyFile(good, 47), ErrFormat},
		"trailing":      {npyFile(good, 49), ErrFormat},
		"float dtype":   {npyFile("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 48), ErrUnsupported},
		"big endian":    {npyFile("{'descr': '>i8', 'fortran_order': False, 'shape': (2, 3), }", 48), ErrUnsupported},
		"fortran":       {npyFile("{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3), }", 48), ErrUnsupported},
		"rank 1":        {npyFile("{'descr': '<i8', 'fortran_order': False, 'shape': (6,), }", 48), ErrUnsupported},
		"no shape":      {npyFile("{'descr': '<i8', 'fortran_order': False, }", 0), ErrFormat},
		"not dict":      {npyFile("hello", 0), ErrFormat},
		"bad dim":       {npyFile("{'descr': '<i8', 'fortran_order': False, 'shape': (2, x), }", 0), ErrFormat},
		"unknown key":   {npyFile("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", 48), ErrFormat},
		"duplicate key": {npyFile("{'descr': '<i8', 'descr': '<i8', 'fortran_order': False, 'shape': (2, 3)}", 48), ErrFormat},
	}
	for name, c := range cases {
		if _, _, _, err := ReadNpyInt64(bytes.NewReader(c.file)); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", name, err, c.want)
		}
	}
}

// numpyPython returns a python3 interpreter that can import numpy. Debian's
// python3-numpy is for /usr/bin/python3, which is tried before the python3 on
// PATH (that may be a pyenv build without numpy, and its shim is slow). It
// fails (never skips) when there is none: CI installs python3-numpy.
func numpyPython(t *testing.T) string {
	t.Helper()
	pythonOnce.Do(func() {
		for _, c := range []string{os.Getenv("PYTHON"), "/usr/bin/python3", "python3"} {
			if c == "" {
				continue
			}
			p, err := exec.LookPath(c)
			if err == nil && exec.Command(p, "-c", "import numpy").Run() == nil {
				pythonPath = p
				return
			}
		}
	})
	if pythonPath == "" {
		t.Fatal("no python3 with numpy found (tried $PYTHON, /usr/bin/python3, python3): apt-get install python3-numpy")
	}
	return pythonPath
}

var (
	pythonOnce sync.Once
	pythonPath string
)

func TestNpyWithNumpy(t *testing.T) {
	py := numpyPython(t)
	dir := t.TempDir()
	rows, cols := 37, 8
	data := make([]int64, rows*cols)
	for i := range data {
		data[i] = int64(i*7919%60000) - 3
	}
	data[5] = math.MaxInt64
	f := filepath.Join(dir, "b.npy")
	var buf bytes.Buffer
	if err := WriteNpyInt64(&buf, rows, cols, data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	script := `
import sys, numpy as np
a = np.load(sys.argv[1])
assert a.dtype == np.dtype('<i8'), a.dtype
assert a.shape == (37, 8), a.shape
assert a.flags['C_CONTIGUOUS']
exp = (np.arange(37*8, dtype=np.int64) * 7919 % 60000 - 3).reshape(37, 8)
exp[0, 5] = np.iinfo(np.int64).max
assert (a == exp).all()
np.save(sys.argv[2], (np.arange(12, dtype='<i8') - 4).reshape(3, 4))
print("ok")
`
	g := filepath.Join(dir, "fromnumpy.npy")
	out, err := exec.Command(py, "-c", script, f, g).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("numpy rejected the file: %v\n%s", err, out)
	}
	// And the other way: numpy's own writer, read by ReadNpyInt64.
	fh, err := os.Open(g)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r, c, got, err := ReadNpyInt64(fh)
	if err != nil {
		t.Fatal(err)
	}
	if r != 3 || c != 4 || got[0] != -4 || got[11] != 7 {
		t.Errorf("numpy file read as (%d,%d) %v", r, c, got)
	}
}

func TestSafetensorsWithPython(t *testing.T) {
	py := numpyPython(t)
	dir := t.TempDir()
	ts := []Tensor{
		{Name: "2.weight", Shape: []int{3, 2}, Data: []float32{1, 2, 3, 4, 5, 6}},
		{Name: "0.weight", Shape: []int{2, 4}, Data: []float32{-1, 0.5, 0.25, 8, 1e-3, -7, 3.5, 1e30}},
		{Name: "0.bias", Shape: []int{2}, Data: []float32{0.1, -0.2}},
		{Name: "theta", Shape: []int{1}, Data: []float32{42}},
	}
	f := filepath.Join(dir, "p.safetensors")
	var buf bytes.Buffer
	if err := WriteSafetensorsMeta(&buf, ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	// A reader written from the format description alone (json + struct),
	// performing the checks safetensors.torch.load_file would.
	script := `
import sys, json, struct
raw = open(sys.argv[1], 'rb').read()
(n,) = struct.unpack('<Q', raw[:8])
assert (8 + n) % 8 == 0, n
hdr = json.loads(raw[8:8+n].decode('utf-8'))
data = raw[8+n:]
assert hdr.pop('__metadata__') == {'format': 'pt'}
want = {
  '0.bias':   ([2],    [0.1, -0.2]),
  '0.weight': ([2, 4], [-1, 0.5, 0.25, 8, 1e-3, -7, 3.5, 1e30]),
  '2.weight': ([3, 2], [1, 2, 3, 4, 5, 6]),
  'theta':    ([1],    [42]),
}
assert sorted(hdr) == sorted(want), hdr.keys()
end = 0
for name in sorted(hdr, key=lambda k: hdr[k]['data_offsets']):
    e = hdr[name]
    assert e['dtype'] == 'F32'
    b, f = e['data_offsets']
    assert b == end, (name, b, end)
    end = f
    shape, vals = want[name]
    assert e['shape'] == shape, (name, e['shape'])
    got = struct.unpack('<%df' % ((f - b) // 4), data[b:f])
    exp = struct.unpack('<%df' % len(vals), struct.pack('<%df' % len(vals), *vals))
    assert got == exp, (name, got, exp)
assert end == len(data), (end, len(data))
import numpy as np
w = np.frombuffer(data[hdr['0.weight']['data_offsets'][0]:hdr['0.weight']['data_offsets'][1]], dtype='<f4').reshape(2, 4)
assert w[1, 3] == np.float32(1e30)
print("ok")
`
	out, err := exec.Command(py, "-c", script, f).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("python check failed: %v\n%s", err, out)
	}
}

// failWriter accepts n bytes, then fails.
type failWriter struct{ n int }

var errDisk = errors.New("disk full")

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errDisk
	}
	w.n -= len(p)
	return len(p), nil
}

func TestWritersReportWriteErrors(t *testing.T) {
	big := Tensor{Name: "w", Shape: []int{300, 300}, Data: make([]float32, 300*300)}
	for _, n := range []int{0, 10, 100 << 10} {
		if err := WriteSafetensors(&failWriter{n: n}, []Tensor{big}); !errors.Is(err, errDisk) {
			t.Errorf("safetensors, failing after %d bytes: %v", n, err)
		}
		if err := WriteNpyInt64(&failWriter{n: n}, 300, 300, make([]int64, 300*300)); !errors.Is(err, errDisk) {
			t.Errorf("npy, failing after %d bytes: %v", n, err)
		}
	}
}
