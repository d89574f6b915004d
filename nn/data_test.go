package nn

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFashionMNIST(t *testing.T) {
	train, test := fashionMNIST(t)
	for _, c := range []struct {
		d          *Dataset
		n          int
		first      []int32
		pixelSum0  int // sum of the first image's bytes (checked with Python's gzip)
		pixelSumLn int // … and of the last image's
	}{
		{train, 60000, []int32{9, 0, 0, 3, 0, 2, 7, 2, 5, 5}, 76247, 16684},
		{test, 10000, []int32{9, 2, 1, 1, 6, 1, 4, 6, 5, 7}, 33456, 24390},
	} {
		d := c.d
		if d.N != c.n || d.In != 784 || d.Out != 10 || d.X != nil || len(d.Pixels) != c.n*784 || len(d.Y) != c.n*10 || len(d.Labels) != c.n {
			t.Fatalf("%d samples %d→%d, want %d 784→10", d.N, d.In, d.Out, c.n)
		}
		for i, l := range c.first {
			if d.Labels[i] != l {
				t.Errorf("label %d = %d, want %d (file order)", i, d.Labels[i], l)
			}
		}
		hist := make([]int, 10)
		for i, l := range d.Labels {
			hist[l]++
			if d.Y[i*10+int(l)] != 1 {
				t.Fatalf("Y row %d is not one-hot at its label", i)
			}
		}
		for c2, h := range hist {
			if h != c.n/10 {
				t.Errorf("class %d has %d samples, want %d", c2, h, c.n/10)
			}
		}
		var ysum float64
		for _, v := range d.Y {
			ysum += float64(v)
		}
		if ysum != float64(c.n) {
			t.Errorf("Y sums to %g, want %d (one-hot)", ysum, c.n)
		}
		x := make([]float32, 784)
		for _, img := range []struct{ i, sum int }{{0, c.pixelSum0}, {c.n - 1, c.pixelSumLn}} {
			var s float64
			d.Input(x, img.i)
			for _, v := range x {
				if v < 0 || v > 1 {
					t.Fatalf("pixel %g outside [0, 1]", v)
				}
				s += float64(v) * 255
			}
			if math.Abs(s-float64(img.sum)) > 0.01 {
				t.Errorf("image %d: byte sum %g, want %d", img.i, s, img.sum)
			}
		}
	}
}

// writeIDX writes a gzipped IDX file: header words then data bytes.
func writeIDX(t *testing.T, path string, header []uint32, data []byte) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := binary.Write(zw, binary.BigEndian, header); err != nil {
		t.Fatal(err)
	}
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadIDXGenerated(t *testing.T) {
	dir := t.TempDir()
	// Train: 3 images of 2×3; test: 2 images.
	trainPix := []byte{0, 255, 51, 1, 2, 3, 10, 20, 30, 40, 50, 60, 255, 255, 0, 0, 128, 7}
	writeIDX(t, filepath.Join(dir, "train-images-idx3-ubyte.gz"), []uint32{0x803, 3, 2, 3}, trainPix)
	writeIDX(t, filepath.Join(dir, "train-labels-idx1-ubyte.gz"), []uint32{0x801, 3}, []byte{4, 0, 9})
	writeIDX(t, filepath.Join(dir, "t10k-images-idx3-ubyte.gz"), []uint32{0x803, 2, 2, 3}, trainPix[:12])
	writeIDX(t, filepath.Join(dir, "t10k-labels-idx1-ubyte.gz"), []uint32{0x801, 2}, []byte{1, 1})
	train, test, err := LoadDataset("fashion-mnist", dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if train.N != 3 || train.In != 6 || test.N != 2 || train.Name != "fashion-mnist" {
		t.Fatalf("train %d×%d, test %d", train.N, train.In, test.N)
	}
	if train.X != nil || !bytes.Equal(train.Pixels, trainPix) {
		t.Errorf("X %v, Pixels %v: want nil and the file's bytes %v", train.X, train.Pixels, trainPix)
	}
	x := make([]float32, train.In)
	for i, b := range trainPix {
		if i%train.In == 0 {
			train.Input(x, i/train.In)
		}
		if want := float32(b) / 255; x[i%train.In] != want {
			t.Errorf("input %d of sample %d = %g, want %g", i%train.In, i/train.In, x[i%train.In], want)
		}
	}
	for i, l := range []int32{4, 0, 9} {
		if train.Labels[i] != l || train.Y[i*10+int(l)] != 1 {
			t.Errorf("sample %d: label %d, want %d", i, train.Labels[i], l)
		}
	}

	// Malformed files wrap ErrFormat.
	bad := map[string]func(){
		"magic": func() {
			writeIDX(t, filepath.Join(dir, "train-labels-idx1-ubyte.gz"), []uint32{0x803, 3}, []byte{4, 0, 9})
		},
		"count": func() {
			writeIDX(t, filepath.Join(dir, "train-labels-idx1-ubyte.gz"), []uint32{0x801, 2}, []byte{4, 0})
		},
		"label": func() {
			writeIDX(t, filepath.Join(dir, "train-labels-idx1-ubyte.gz"), []uint32{0x801, 3}, []byte{4, 10, 9})
		},
		"truncated": func() {
			writeIDX(t, filepath.Join(dir, "train-labels-idx1-ubyte.gz"), []uint32{0x801, 3}, []byte{4, 0, 9})
			writeIDX(t, filepath.Join(dir, "train-images-idx3-ubyte.gz"), []uint32{0x803, 3, 2, 3}, trainPix[:17])
		},
	}
	for name, corrupt := range bad {
		corrupt()
		if _, _, err := LoadDataset("fashion-mnist", dir, 0); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: error %v, want ErrFormat", name, err)
		}
	}
}

func TestFashionMNISTMissing(t *testing.T) {
	dir := t.TempDir()
	_, _, err := LoadDataset("fashion-mnist", dir, 0)
	if !errors.Is(err, ErrNoData) {
		t.Fatalf("error %v, want ErrNoData", err)
	}
	if !strings.Contains(err.Error(), "dataset-fashion-mnist") || !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q does not name the Debian package and the directory", err)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %v does not wrap the file-system error", err)
	}
}

func TestSyntheticData(t *testing.T) {
	const seed = 31
	for name, f := range map[string]func(float64) float64{
		"regression-sin": math.Sin,
		"regression-x2":  func(x float64) float64 { return x * x },
		"regression-abs": math.Abs,
	} {
		train, test, err := LoadDataset(name, "", seed)
		if err != nil {
			t.Fatal(err)
		}
		again, _, _ := LoadDataset(name, "", seed)
		other, _, _ := LoadDataset(name, "", seed+1)
		for _, d := range []*Dataset{train, test} {
			if d.N != 100 || d.In != 1 || d.Out != 1 || d.Labels != nil {
				t.Fatalf("%s: %d points %d→%d", name, d.N, d.In, d.Out)
			}
			for i, x := range d.X {
				if x < -math.Pi || x > math.Pi {
					t.Errorf("%s: x = %g outside [−π, π]", name, x)
				}
				if want := float32(f(float64(x))); math.Abs(float64(d.Y[i]-want)) > 1e-6 {
					t.Errorf("%s: y(%g) = %g, want %g", name, x, d.Y[i], want)
				}
			}
		}
		if test.X[0] != float32(-math.Pi) || test.X[99] != float32(math.Pi) {
			t.Errorf("%s: test grid %g…%g, want −π…π", name, test.X[0], test.X[99])
		}
		var mean float64
		for i, x := range train.X {
			mean += float64(x) / 100
			if again.X[i] != x {
				t.Fatalf("%s: same seed, different data", name)
			}
		}
		if other.X[0] == train.X[0] {
			t.Errorf("%s: different seeds, same data", name)
		}
		// U[−π, π] has mean 0 and sd π/√3 ≈ 1.81: the mean of 100 draws is
		// within 4 standard errors (0.73) except with probability 6e-5.
		if math.Abs(mean) > 0.73 {
			t.Errorf("%s: mean x = %g", name, mean)
		}
	}

	train, test, err := LoadDataset("quadratic", "", seed)
	if err != nil {
		t.Fatal(err)
	}
	if train.N != 1000 || train.In != 0 || train.Out != 1 || test.N != 1000 {
		t.Fatalf("quadratic: %d samples %d→%d", train.N, train.In, train.Out)
	}
	var m, v float64
	for _, y := range train.Y {
		m += float64(y) / 1000
	}
	for _, y := range train.Y {
		v += (float64(y) - m) * (float64(y) - m) / 999
	}
	// N(0,1): the mean of 1000 has sd 0.032, the variance sd ≈ 0.045; 4 sd.
	if math.Abs(m) > 0.13 || math.Abs(v-1) > 0.18 {
		t.Errorf("quadratic: mean %g, variance %g, want 0, 1", m, v)
	}
	if test.Y[0] == train.Y[0] {
		t.Error("quadratic: test split equals training split")
	}
	if _, _, err := LoadDataset("mnist-digits", "", 0); !errors.Is(err, ErrSpec) {
		t.Errorf("unknown data set: %v", err)
	}
}

// FuzzReadIDX feeds arbitrary bytes to the reader: it must return a data set
// consistent with the header or an error wrapping ErrFormat, never panic.
func FuzzReadIDX(f *testing.F) {
	f.Add([]byte{0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 1, 2, 3, 4}, []byte{0, 0, 8, 1, 0, 0, 0, 2, 3, 9})
	f.Add([]byte{0, 0, 8, 3, 255, 255, 255, 255, 0, 0, 0, 1, 0, 0, 0, 2}, []byte{0, 0, 8, 1, 255, 255, 255, 255})
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, images, labels []byte) {
		d, err := ReadIDX(bytes.NewReader(images), bytes.NewReader(labels), 10)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		if d.X != nil || len(d.Pixels) != d.N*d.In || len(d.Y) != d.N*10 || len(d.Labels) != d.N {
			t.Fatalf("inconsistent data set: N %d In %d, %d/%d/%d/%d", d.N, d.In, len(d.X), len(d.Pixels), len(d.Y), len(d.Labels))
		}
	})
}
