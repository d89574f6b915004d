package main

// The export round trip: a small mlp:32 Fashion-MNIST run on the real
// daemon, exported through replayctl (θ_0, the batch log, θ_n and θ̃_n), and
// θ̃_n recomputed here from those files alone by a deliberately naive float64
// MLP (loops, no BLAS, nothing from nn/ or replay/).

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/replay-sgd/replay/api"
)

const fmnistDir = "/usr/share/datasets/fashion-mnist"

// readIDX reads a gzipped IDX file: a magic word whose last byte is the
// number of dimensions, the dimensions (big-endian uint32), then unsigned
// bytes.
func readIDX(t *testing.T, path string, wantDims int) ([]int, []byte) {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v (install the Debian package dataset-fashion-mnist)", err)
	}
	defer fh.Close()
	zr, err := gzip.NewReader(bufio.NewReader(fh))
	if err != nil {
		t.Fatal(err)
	}
	var magic uint32
	if err := binary.Read(zr, binary.BigEndian, &magic); err != nil {
		t.Fatal(err)
	}
	if magic>>8 != 0x08 || int(magic&0xff) != wantDims {
		t.Fatalf("%s: magic %#x", path, magic)
	}
	dims := make([]int, wantDims)
	n := 1
	for i := range dims {
		var d uint32
		if err := binary.Read(zr, binary.BigEndian, &d); err != nil {
			t.Fatal(err)
		}
		dims[i] = int(d)
		n *= int(d)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(zr, data); err != nil {
		t.Fatal(err)
	}
	return dims, data
}

// naiveMLP is Linear(784,h) → ReLU → Linear(h,10) with PyTorch's
// CrossEntropyLoss (batch mean) and plain SGD, in float64.
type naiveMLP struct {
	in, hid, out   int
	w0, b0, w1, b1 []float64 // w0 [hid][in], w1 [out][hid], row-major
}

func newNaiveMLP(t *testing.T, tensors map[string][]float32, shapes map[string][]int) *naiveMLP {
	t.Helper()
	s0, s1 := shapes["0.weight"], shapes["2.weight"]
	if len(s0) != 2 || len(s1) != 2 || s0[0] != s1[1] {
		t.Fatalf("unexpected shapes %v", shapes)
	}
	f := func(v []float32) []float64 {
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	}
	return &naiveMLP{in: s0[1], hid: s0[0], out: s1[0],
		w0: f(tensors["0.weight"]), b0: f(tensors["0.bias"]), w1: f(tensors["2.weight"]), b1: f(tensors["2.bias"])}
}

func (m *naiveMLP) clone() *naiveMLP {
	c := *m
	c.w0 = append([]float64(nil), m.w0...)
	c.b0 = append([]float64(nil), m.b0...)
	c.w1 = append([]float64(nil), m.w1...)
	c.b1 = append([]float64(nil), m.b1...)
	return &c
}

// step applies T(θ) = θ − lr·∇(mean cross-entropy over the batch).
func (m *naiveMLP) step(images []byte, labels []byte, batch []int64, lr float64) {
	gw0 := make([]float64, len(m.w0))
	gb0 := make([]float64, len(m.b0))
	gw1 := make([]float64, len(m.w1))
	gb1 := make([]float64, len(m.b1))
	x := make([]float64, m.in)
	a := make([]float64, m.hid)
	z := make([]float64, m.out)
	scale := 1 / float64(len(batch))
	for _, idx := range batch {
		for i := range x {
			// As the daemon does: the float32 pixel value v/255.
			x[i] = float64(float32(images[int(idx)*m.in+i]) / 255)
		}
		for j := 0; j < m.hid; j++ {
			s := m.b0[j]
			for i := 0; i < m.in; i++ {
				s += m.w0[j*m.in+i] * x[i]
			}
			a[j] = s
		}
		zmax := math.Inf(-1)
		for k := 0; k < m.out; k++ {
			s := m.b1[k]
			for j := 0; j < m.hid; j++ {
				s += m.w1[k*m.hid+j] * math.Max(a[j], 0)
			}
			z[k] = s
			zmax = math.Max(zmax, s)
		}
		sum := 0.0
		for k := range z {
			sum += math.Exp(z[k] - zmax)
		}
		for k := range z { // dℓ/dz = softmax(z) − onehot(label), times 1/b
			d := math.Exp(z[k]-zmax) / sum
			if k == int(labels[idx]) {
				d--
			}
			z[k] = d * scale
		}
		for k := 0; k < m.out; k++ {
			gb1[k] += z[k]
			for j := 0; j < m.hid; j++ {
				gw1[k*m.hid+j] += z[k] * math.Max(a[j], 0)
			}
		}
		for j := 0; j < m.hid; j++ {
			if a[j] <= 0 {
				continue
			}
			d := 0.0
			for k := 0; k < m.out; k++ {
				d += m.w1[k*m.hid+j] * z[k]
			}
			gb0[j] += d
			for i := 0; i < m.in; i++ {
				gw0[j*m.in+i] += d * x[i]
			}
		}
	}
	for _, p := range []struct{ w, g []float64 }{{m.w0, gw0}, {m.b0, gb0}, {m.w1, gw1}, {m.b1, gb1}} {
		for i := range p.w {
			p.w[i] -= lr * p.g[i]
		}
	}
}

// maxDiff returns max |m − exported| over all parameters, and max |exported|.
func (m *naiveMLP) maxDiff(t *testing.T, tensors map[string][]float32) (diff, scale float64) {
	t.Helper()
	for name, ref := range map[string][]float64{"0.weight": m.w0, "0.bias": m.b0, "2.weight": m.w1, "2.bias": m.b1} {
		got := tensors[name]
		if len(got) != len(ref) {
			t.Fatalf("%s: %d values, want %d", name, len(got), len(ref))
		}
		for i := range ref {
			diff = math.Max(diff, math.Abs(float64(got[i])-ref[i]))
			scale = math.Max(scale, math.Abs(float64(got[i])))
		}
	}
	return diff, scale
}

// exportParams exports parameters with replayctl and reads them back.
func exportParams(t *testing.T, d *daemon, dir, run, kind string, step int) (map[string][]float32, map[string][]int) {
	t.Helper()
	p := filepath.Join(dir, fmt.Sprintf("%s-%s-%d.safetensors", run, kind, step))
	d.ctl(t, "export", "--run", run, "--step", fmt.Sprint(step), "--kind", kind, "--out", p).ok(t, "export "+p)
	vals, shapes := map[string][]float32{}, map[string][]int{}
	for _, ts := range readSafetensorsFile(t, p) {
		vals[ts.Name], shapes[ts.Name] = ts.Data, ts.Shape
	}
	return vals, shapes
}

func TestE2EExportRoundTrip(t *testing.T) {
	const (
		steps  = 24
		window = 5
		lr     = 0.05 // large enough that forward and backward orders differ clearly
		batch  = 8
	)
	d := startDaemon(t)
	dir := t.TempDir()
	common := []string{"--preset", "fmnist-mlp", "--model", "mlp:32", "--lr", fmt.Sprint(lr), "--batch", fmt.Sprint(batch),
		"--steps", fmt.Sprint(steps), "--seed", "11", "--eval-every", "1", "--eval-size", "100"}
	// "full": the window covers every step, so θ̃_n = T_1∘…∘T_n(θ_0).
	// "win": window 5, anchors at the backward iterate every 5 steps.
	d.ctl(t, append([]string{"run", "start", "--name", "full", "--window", fmt.Sprint(steps)}, common...)...).ok(t, "start full")
	d.ctl(t, append([]string{"run", "start", "--name", "win", "--window", fmt.Sprint(window)}, common...)...).ok(t, "start win")
	for _, r := range []string{"full", "win"} {
		d.ctl(t, "wait", "--run", r, "--timeout", "2m", "--interval", "100ms").ok(t, "wait "+r)
	}

	// The files a PyTorch user would get.
	theta0, shapes := exportParams(t, d, dir, "full", "forward", 0)
	want := map[string][]int{"0.weight": {32, 784}, "0.bias": {32}, "2.weight": {10, 32}, "2.bias": {10}}
	if jsonString(shapes) != jsonString(want) {
		t.Fatalf("tensor shapes %v, want %v", shapes, want)
	}
	npy := filepath.Join(dir, "full.npy")
	d.ctl(t, "export", "--run", "full", "--batches", "--out", npy).ok(t, "export batches")
	rows, cols, idx := readNpyFile(t, npy)
	if rows != steps || cols != batch {
		t.Fatalf("batch log [%d, %d], want [%d, %d]", rows, cols, steps, batch)
	}
	checkWithNumpy(t, npy, steps, batch, idx)
	npyWin := filepath.Join(dir, "win.npy")
	d.ctl(t, "export", "--run", "win", "--batches", "--out", npyWin).ok(t, "export batches win")
	if _, _, idxWin := readNpyFile(t, npyWin); jsonString(idxWin) != jsonString(idx) {
		t.Fatalf("same seed, different batch logs")
	}
	if th, _ := exportParams(t, d, dir, "win", "forward", 0); jsonString(th) != jsonString(theta0) {
		t.Fatalf("same seed, different θ_0")
	}

	dims, images := readIDX(t, filepath.Join(fmnistDir, "train-images-idx3-ubyte.gz"), 3)
	_, labels := readIDX(t, filepath.Join(fmnistDir, "train-labels-idx1-ubyte.gz"), 1)
	if dims[1]*dims[2] != 784 {
		t.Fatalf("image dims %v", dims)
	}
	for _, i := range idx {
		if i < 0 || int(i) >= dims[0] {
			t.Fatalf("batch index %d outside the training split of %d", i, dims[0])
		}
	}
	m0 := newNaiveMLP(t, theta0, shapes)
	batchOf := func(k int) []int64 { return idx[(k-1)*cols : k*cols] } // step k ≥ 1

	// Tolerance. The daemon computes in float32 (BLAS sums in its own order,
	// θ rounded to float32 after every step); the reference in float64 from
	// the same θ_0. Each step adds at most a few float32 ulps of |θ| (|θ| ≤
	// ~0.8 here, ulp ≈ 6e-8) plus lr times the rounding of 784-term dot
	// products (≈ 784·6e-8·|g| with |g| ≲ 1, times lr = 0.05: ≈ 2.4e-6 in
	// the worst case, far less for random-sign rounding); over 24 steps of
	// maps that are near-isometries at this lr the worst case is ≈ 2e-6 and
	// the measured value ≈ 2.5e-7. tol = 5e-6 is above the worst case and
	// still four orders of magnitude below the forward/backward difference
	// (≈ 0.085) checked below, so a wrong order, a missing or repeated step,
	// a wrong batch or a wrong anchor cannot pass.
	const tol = 5e-6

	// Forward: θ_n = T_n∘…∘T_1(θ_0).
	fwd := m0.clone()
	for k := 1; k <= steps; k++ {
		fwd.step(images, labels, batchOf(k), lr)
	}
	thetaN, _ := exportParams(t, d, dir, "full", "forward", steps)
	if diff, _ := fwd.maxDiff(t, thetaN); diff > tol {
		t.Errorf("forward θ_%d differs from the naive recomputation by %.3g (tol %g)", steps, diff, tol)
	}

	// Backward, full: θ̃_n = T_1∘…∘T_n(θ_0): T_n first, T_1 last.
	bwd := m0.clone()
	for k := steps; k >= 1; k-- {
		bwd.step(images, labels, batchOf(k), lr)
	}
	tildeN, _ := exportParams(t, d, dir, "full", "backward", steps)
	diff, scale := bwd.maxDiff(t, tildeN)
	t.Logf("full backward θ̃_%d: max |naive − exported| = %.3g (max |θ| = %.3g)", steps, diff, scale)
	if diff > tol {
		t.Errorf("backward θ̃_%d differs from the naive recomputation by %.3g (tol %g)", steps, diff, tol)
	}
	// Not vacuous: the exported θ̃_n is far from θ_n.
	if fb, _ := fwd.maxDiff(t, tildeN); fb < 50*tol {
		t.Errorf("θ̃_%d and θ_%d differ by only %.3g: the test could not tell the orders apart", steps, steps, fb)
	} else {
		t.Logf("max |θ_n − θ̃_n| = %.3g", fb)
	}
	// θ̃_1 = θ_1.
	one := m0.clone()
	one.step(images, labels, batchOf(1), lr)
	tilde1, _ := exportParams(t, d, dir, "full", "backward", 1)
	if diff, _ := one.maxDiff(t, tilde1); diff > tol {
		t.Errorf("θ̃_1 differs from T_1(θ_0) by %.3g", diff)
	}

	// Windowed: θ̃_n = T_{r+1}∘…∘T_n(θ̃_r) with r the anchor of n, and θ̃_r
	// itself from its anchor. The anchors come from the trajectory and must
	// follow the window rule r(n) = ⌊(n−1)/W⌋·W.
	out := d.ctl(t, "trajectory", "--run", "win", "--kind", "backward", "-o", "json").ok(t, "trajectory win")
	var pts []api.Point
	if err := json.Unmarshal([]byte(out), &pts); err != nil {
		t.Fatal(err)
	}
	anchor := map[int]int{}
	for _, p := range pts {
		anchor[p.Step] = p.Anchor
	}
	for n := 1; n <= steps; n++ {
		r, ok := anchor[n]
		if !ok {
			t.Fatalf("no backward point for step %d", n)
		}
		if want := (n - 1) / window * window; r != want {
			t.Errorf("step %d: anchor %d, want %d", n, r, want)
		}
	}
	memo := map[int]*naiveMLP{0: m0}
	var tilde func(n int) *naiveMLP
	tilde = func(n int) *naiveMLP {
		if m, ok := memo[n]; ok {
			return m
		}
		m := tilde(anchor[n]).clone()
		for k := n; k > anchor[n]; k-- {
			m.step(images, labels, batchOf(k), lr)
		}
		memo[n] = m
		return m
	}
	winN, _ := exportParams(t, d, dir, "win", "backward", steps)
	diff, _ = tilde(steps).maxDiff(t, winN)
	t.Logf("windowed θ̃_%d (W=%d): max |naive − exported| = %.3g", steps, window, diff)
	if diff > tol {
		t.Errorf("windowed θ̃_%d differs from the naive recomputation by %.3g (tol %g)", steps, diff, tol)
	}
	if fw, _ := bwd.maxDiff(t, winN); fw < 50*tol {
		t.Errorf("windowed and full θ̃_%d differ by only %.3g: the anchors were not exercised", steps, fw)
	}
	// A step inside a window whose result was not kept is recomputed by the
	// daemon from its anchor; it must agree too.
	mid := 2*window + 2
	midT, _ := exportParams(t, d, dir, "win", "backward", mid)
	if diff, _ := tilde(mid).maxDiff(t, midT); diff > tol {
		t.Errorf("windowed θ̃_%d differs by %.3g", mid, diff)
	}
}

// checkWithNumpy loads the exported batch log with NumPy. Debian's
// python3-numpy is for /usr/bin/python3, tried before the python3 on PATH
// (which may be a pyenv build without numpy); a machine without python3-numpy fails the test (CI installs it).
func checkWithNumpy(t *testing.T, path string, rows, cols int, idx []int64) {
	t.Helper()
	py := ""
	for _, c := range []string{os.Getenv("PYTHON"), "/usr/bin/python3", "python3"} {
		if p, err := exec.LookPath(c); c != "" && err == nil && exec.Command(p, "-c", "import numpy").Run() == nil {
			py = p
			break
		}
	}
	if py == "" {
		t.Fatal("no python3 with numpy (apt-get install python3-numpy)")
	}
	script := `import sys, numpy as np
a = np.load(sys.argv[1])
print(a.dtype.str, a.shape[0], a.shape[1], int(a[0, 0]), int(a[-1, -1]), int(a.sum()))`
	out, err := exec.Command(py, "-c", script, path).CombinedOutput()
	if err != nil {
		t.Fatalf("numpy: %v\n%s", err, out)
	}
	var sum int64
	for _, v := range idx {
		sum += v
	}
	want := fmt.Sprintf("<i8 %d %d %d %d %d\n", rows, cols, idx[0], idx[len(idx)-1], sum)
	if string(out) != want {
		t.Errorf("numpy sees %q, want %q", out, want)
	}
}
