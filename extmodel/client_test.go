package extmodel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/internal/fakechild"
)

// fakeCmd is the command of a fake child in mode (see fakechild), with
// extra environment entries.
func fakeCmd(t *testing.T, mode string, env ...string) Command {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Command{Argv: []string{exe}, Env: append([]string{fakechild.EnvRun + "=1", fakechild.EnvMode + "=" + mode}, env...)}
}

// logBuf is a concurrency-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testOptions(log io.Writer) Options {
	o := DefaultOptions()
	o.Logger = slog.New(slog.NewTextHandler(log, nil))
	o.StartTimeout = 30 * time.Second
	o.CallTimeout = 30 * time.Second
	o.StepTimeout = time.Second
	return o
}

// newFamily registers one fake model "fake" and closes the family (and
// checks that no child survives) at the end of the test.
func newFamily(t *testing.T, opts Options, cmd Command) *Family {
	t.Helper()
	f, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAndCheck(t, f) })
	if err := f.Register(context.Background(), "fake", cmd); err != nil {
		t.Fatalf("register: %v", err)
	}
	return f
}

// closeAndCheck closes f and checks that every child it ever started is
// gone (reaped: no orphan, no zombie).
func closeAndCheck(t *testing.T, f *Family) {
	t.Helper()
	f.Close()
	for _, info := range f.Models() {
		if info.Children != 0 {
			t.Errorf("%s: %d children alive after Close", info.Name, info.Children)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.mu.models {
		r.pool.mu.Lock()
		pids := append([]int(nil), r.pool.mu.pids...)
		r.pool.mu.Unlock()
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("child %d still exists after Close (kill 0: %v)", pid, err)
			}
		}
	}
}

// openModel opens a run of the fake model.
func openModel(t *testing.T, f *Family, spec family.Spec) *Model {
	t.Helper()
	if _, problems := f.Resolve(&spec); len(problems) > 0 {
		t.Fatalf("resolve: %v", problems)
	}
	d, err := f.LoadData(spec)
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.Open(spec, d)
	if err != nil {
		t.Fatal(err)
	}
	return m.(*Model)
}

// fixedBatches is a batch log: step k's batch is [k, k+1] mod Train.
type fixedBatches struct{}

func (fixedBatches) Batch(k int) []int32 {
	return []int32{int32(k % fakechild.Train), int32((k + 1) % fakechild.Train)}
}

func TestFraming(t *testing.T) {
	var b bytes.Buffer
	if err := writeFrame(&b, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if got := b.Bytes(); !bytes.Equal(got, []byte{0, 0, 0, 3, 'a', 'b', 'c'}) {
		t.Fatalf("frame %v: want a 4-byte big-endian length then the payload", got)
	}
	got, err := readFrame(bytes.NewReader(b.Bytes()), MaxFrame)
	if err != nil || string(got) != "abc" {
		t.Fatalf("read back %q, %v", got, err)
	}
	if _, err := readFrame(bytes.NewReader(nil), MaxFrame); err != io.EOF {
		t.Fatalf("empty stream: %v, want io.EOF", err)
	}
	if _, err := readFrame(bytes.NewReader([]byte{0, 0, 0, 5, 'a'}), MaxFrame); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short frame: %v, want io.ErrUnexpectedEOF", err)
	}
	// A 4 GiB header is refused before anything is allocated.
	if _, err := readFrame(bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff}), MaxFrame); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized frame: %v, want ErrFrameTooLarge", err)
	}
	var h replyHead
	for _, garbage := range [][]byte{{}, {0x01}, {0x93, 1, 2, 3}, {0x80, 0x01}} {
		if err := decodeMsg(garbage, &h); !errors.Is(err, ErrGarbage) {
			t.Errorf("decode %x: %v, want ErrGarbage", garbage, err)
		}
	}
	// Vectors are little-endian float32.
	v := []float32{1, -2.5}
	if got := f32Bytes(v); !bytes.Equal(got, []byte{0, 0, 0x80, 0x3f, 0, 0, 0x20, 0xc0}) {
		t.Fatalf("f32Bytes: %x", got)
	}
}

// TestHappyPath checks hello, the layout rule, init, apply (single steps
// and chains, bitwise against the fake's own map) and evaluate.
func TestHappyPath(t *testing.T) {
	log := &logBuf{}
	f := newFamily(t, testOptions(log), fakeCmd(t, ""))
	spec := family.Spec{Model: "ext:fake", LR: 0.1, Batch: 2, Seed: 7, EvalSize: 10,
		Optim: family.Optimizer{Name: "momentum", Momentum: 0.9}}
	m := openModel(t, f, spec)
	if m.Dim() != fakechild.Dim("momentum") || m.ThetaDim() != fakechild.Theta {
		t.Fatalf("dim %d theta %d, want %d %d", m.Dim(), m.ThetaDim(), fakechild.Dim("momentum"), fakechild.Theta)
	}
	var names []string
	for _, t := range m.Layout() {
		names = append(names, t.Name)
	}
	if want := "w b rm optim.state.0.momentum_buffer optim.state.1.momentum_buffer optim.step"; strings.Join(names, " ") != want {
		t.Fatalf("layout %v, want %s", names, want)
	}
	s := make([]float32, m.Dim())
	if err := m.Init(s); err != nil {
		t.Fatal(err)
	}
	want := append(fakechild.Init(7), make([]float32, m.Dim()-fakechild.Theta)...)
	if !equalBits(s, want) {
		t.Fatalf("init %v, want %v", s, want)
	}
	ops, _ := m.Operators(fixedBatches{})
	o := fakechild.Optim{Name: "momentum", Momentum: 0.9}
	// Apply: one step at a time.
	ref := append([]float32(nil), want...)
	for k := 1; k <= 3; k++ {
		ops.Apply(k, s)
		fakechild.Step(ref, k, fixedBatches{}.Batch(k), 0.1, o)
	}
	if !equalBits(s, ref) {
		t.Fatalf("after 3 applies %v, want %v", s, ref)
	}
	// Chain: steps in application order, one round trip.
	before := m.r.pool.requests.Load()
	steps := []int{9, 8, 7, 6}
	if err := ops.(*Operators).Chain(context.Background(), s, steps); err != nil {
		t.Fatal(err)
	}
	for _, k := range steps {
		fakechild.Step(ref, k, fixedBatches{}.Batch(k), 0.1, o)
	}
	if !equalBits(s, ref) {
		t.Fatalf("after the chain %v, want %v", s, ref)
	}
	if n := m.r.pool.requests.Load() - before; n != 1 {
		t.Fatalf("a chain of 4 made %d round trips, want 1", n)
	}
	tr, te, acc := m.Measurer().Measure(s)
	if tr <= 0 || te <= 0 || acc != 0.5 {
		t.Fatalf("measure %v %v %v", tr, te, acc)
	}
	if err := ops.(*Operators).Err(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "[fake] fake child started") {
		t.Fatalf("the child's stderr is not in the log with its prefix:\n%s", log.String())
	}
}

func equalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && !(a[i] != a[i] && b[i] != b[i]) {
			return false
		}
	}
	return true
}

// TestChildFaults: a child that answers garbage, the wrong id, crashes
// mid-reply, hangs past its deadline or announces an oversized frame is
// killed and the request retried on a fresh child (which gives the right
// answer); a child that always does fails the request after Attempts
// tries, with its stderr lines in the error.
func TestChildFaults(t *testing.T) {
	cases := []struct {
		mode   string
		is     error
		stderr string // in the error of the always-faulty child
	}{
		{"garbage", ErrGarbage, "fake child started"},
		{"wrongid", ErrGarbage, "fake child started"},
		{"crash", ErrExited, "segmentation fault (simulated)"},
		{"hang", ErrTimeout, "fake child: hanging"},
		{"oversized", ErrFrameTooLarge, "fake child started"},
		{"shortstate", ErrGarbage, "fake child started"},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			t.Parallel()
			opts := testOptions(io.Discard)
			opts.Attempts = 2
			if c.mode == "hang" {
				opts.CallTimeout, opts.StepTimeout = 2*time.Second, 0
			}
			spec := family.Spec{Model: "ext:fake", LR: 0.1, Batch: 2, Seed: 1}

			// Once: the retry on a fresh child succeeds.
			once := filepath.Join(t.TempDir(), "once")
			os.WriteFile(once, nil, 0o600)
			f := newFamily(t, opts, fakeCmd(t, c.mode, fakechild.EnvOnce+"="+once))
			m := openModel(t, f, spec)
			s := make([]float32, m.Dim())
			if err := m.Init(s); err != nil {
				t.Fatal(err)
			}
			ref := append([]float32(nil), s...)
			ops, _ := m.Operators(fixedBatches{})
			ops.Apply(1, s)
			fakechild.Step(ref, 1, fixedBatches{}.Batch(1), 0.1, fakechild.Optim{Name: "sgd"})
			if err := ops.(*Operators).Err(); err != nil {
				t.Fatalf("one fault, retried: %v", err)
			}
			if !equalBits(s, ref) {
				t.Fatalf("after the retry %v, want %v", s, ref)
			}
			if info := f.Models()[0]; info.Started != 2 {
				t.Fatalf("%d children started, want 2 (the registration's, killed, and a fresh one)", info.Started)
			}

			// Always: the request fails with the reason and the stderr.
			g := newFamily(t, opts, fakeCmd(t, c.mode))
			m = openModel(t, g, spec)
			if err := m.Init(s); err != nil {
				t.Fatal(err)
			}
			before := append([]float32(nil), s...)
			ops, _ = m.Operators(fixedBatches{})
			ops.Apply(1, s)
			err := ops.(*Operators).Err()
			if !errors.Is(err, c.is) {
				t.Fatalf("err %v, want %v", err, c.is)
			}
			if !strings.Contains(err.Error(), c.stderr) || !strings.Contains(err.Error(), "failed 2 times in a row") {
				t.Fatalf("err %q: want the stderr line %q and the attempts", err, c.stderr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("err %q is not one line", err)
			}
			if !equalBits(s, before) {
				t.Fatalf("a failed apply changed the state")
			}
			// Sticky: the next apply does not try again.
			started := g.Models()[0].Started
			ops.Apply(2, s)
			if g.Models()[0].Started != started {
				t.Fatalf("an apply after the failure started a child")
			}
			if tr, _, _ := m.Measurer().Measure(s); tr == tr {
				t.Fatalf("measure after the failure gave %v, want NaN", tr)
			}
		})
	}
}

// TestRefused: "ok": false fails the request at once: no retry, no new
// child, the child's reason in one line.
func TestRefused(t *testing.T) {
	f := newFamily(t, testOptions(io.Discard), fakeCmd(t, "refuse"))
	m := openModel(t, f, family.Spec{Model: "ext:fake", LR: 0.1, Batch: 2})
	s := make([]float32, m.Dim())
	ops, _ := m.Operators(fixedBatches{})
	ops.Apply(1, s)
	err := ops.(*Operators).Err()
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "optimizer lbfgs is not supported | second line") {
		t.Fatalf("err %v: want ErrRefused with the child's reason on one line", err)
	}
	if info := f.Models()[0]; info.Started != 1 || info.Requests != 1 {
		t.Fatalf("started %d children, %d requests: want 1, 1 (no retry)", info.Started, info.Requests)
	}
}

// TestRegisterFailures: a version mismatch, a child that dies at hello,
// one too slow for the start deadline, a bad or repeated name.
func TestRegisterFailures(t *testing.T) {
	opts := testOptions(io.Discard)
	opts.StartTimeout = 2 * time.Second
	f, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAndCheck(t, f) })
	ctx := context.Background()
	if err := f.Register(ctx, "v2", fakeCmd(t, "version2")); !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("version 2: %v, want ErrVersion naming it", err)
	}
	if err := f.Register(ctx, "bad", fakeCmd(t, "badhello")); !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "cannot load the model file") {
		t.Errorf("dying hello: %v, want ErrExited with the stderr", err)
	}
	if err := f.Register(ctx, "slow", fakeCmd(t, "slowhello")); !errors.Is(err, ErrTimeout) {
		t.Errorf("slow hello: %v, want ErrTimeout", err)
	}
	if err := f.Register(ctx, "no such", fakeCmd(t, "")); err == nil || !strings.Contains(err.Error(), "model name") {
		t.Errorf("bad name: %v", err)
	}
	if err := f.Register(ctx, "ok", fakeCmd(t, "")); err != nil {
		t.Fatal(err)
	}
	if err := f.Register(ctx, "ok", fakeCmd(t, "")); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("second registration: %v", err)
	}
	if got := len(f.Models()); got != 1 {
		t.Errorf("%d models registered, want 1 (failures are not registered)", got)
	}
	if _, problems := f.Resolve(&family.Spec{Model: "ext:nope", Batch: 1}); len(problems) != 1 || !strings.Contains(problems[0], "--torch-model nope=") {
		t.Errorf("unregistered model: %v, want the flag that registers it", problems)
	}
}

// TestCancel: a cancelled chain returns at once. A child that answers
// within the cancel grace goes back to the pool warm (and serves the next
// request); one that hangs is killed at the grace and its slot freed.
func TestCancel(t *testing.T) {
	for _, c := range []struct {
		mode     string
		children int // alive once the abandoned request is settled
	}{{"slowapply", 1}, {"hang", 0}} {
		t.Run(c.mode, func(t *testing.T) {
			opts := testOptions(io.Discard)
			opts.CallTimeout, opts.StepTimeout, opts.CancelGrace = 20*time.Second, 0, 2*time.Second
			f := newFamily(t, opts, fakeCmd(t, c.mode))
			m := openModel(t, f, family.Spec{Model: "ext:fake", LR: 0.1, Batch: 2})
			s := make([]float32, m.Dim())
			ops, _ := m.Operators(fixedBatches{})
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- ops.(*Operators).Chain(ctx, s, []int{2, 1}) }()
			// Wait until the request is in flight (the child has it).
			deadline := time.Now().Add(20 * time.Second)
			for f.Models()[0].Requests == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Fatalf("err %v, want context.Canceled", err)
			}
			if err := ops.(*Operators).Err(); err != nil {
				t.Fatalf("a cancellation is not the model's failure: %v", err)
			}
			// Settled: the child is back idle, or gone.
			settled := func() bool {
				f.mu.Lock()
				r := f.mu.models["fake"]
				f.mu.Unlock()
				r.pool.mu.Lock()
				defer r.pool.mu.Unlock()
				return r.pool.mu.n == len(r.pool.mu.idle)
			}
			for !settled() && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if n := f.Models()[0].Children; !settled() || n != c.children {
				t.Fatalf("%d children alive after the abandoned request settled, want %d", n, c.children)
			}
			if c.children == 1 {
				ops.Apply(1, s)
				if err := ops.(*Operators).Err(); err != nil || f.Models()[0].Started != 1 {
					t.Fatalf("the warm child did not serve the next request: %v, %d started", err, f.Models()[0].Started)
				}
			}
		})
	}
}

// TestResolve: the family's defaults and checks, from the registration's
// hello (no child is asked).
func TestResolve(t *testing.T) {
	f := newFamily(t, testOptions(io.Discard), fakeCmd(t, ""))
	requests := f.Models()[0].Requests
	// No batch: the scheduler's default comes after the family's.
	s := family.Spec{Model: "ext:fake", Optim: family.Optimizer{Name: "adam"}}
	size, problems := f.Resolve(&s)
	if len(problems) > 0 {
		t.Fatalf("problems %v", problems)
	}
	if s.Dataset != "ext:fake" || s.Init != "torch" || s.Loss != "model" {
		t.Errorf("defaults: dataset %q init %q loss %q", s.Dataset, s.Init, s.Loss)
	}
	// adam: θ, then exp_avg and exp_avg_sq of the 6 parameter elements, then the step.
	if size.Params != fakechild.Theta+2*fakechild.Params+1 || size.Train != fakechild.Train || size.Test != fakechild.Test || size.Outputs != fakechild.Classes {
		t.Errorf("size %+v", size)
	}
	bad := family.Spec{Model: "ext:fake", Dataset: "fashion-mnist", DataPath: "/x", Init: "he", Loss: "mse", Optim: family.Optimizer{Name: "lbfgs"}}
	if _, problems := f.Resolve(&bad); len(problems) != 5 {
		t.Errorf("problems %q, want five (dataset, data_path, init, loss, optimizer)", problems)
	}
	if n := f.Models()[0].Requests; n != requests {
		t.Errorf("Resolve made %d requests", n-requests)
	}
}

// TestDataHash: the hash follows what the child announced.
func TestDataHash(t *testing.T) {
	f := newFamily(t, testOptions(io.Discard), fakeCmd(t, ""))
	if err := f.Register(context.Background(), "other", fakeCmd(t, "", "EXTRA=1")); err != nil {
		t.Fatal(err)
	}
	d1, _ := f.LoadData(family.Spec{Model: "ext:fake"})
	d2, _ := f.LoadData(family.Spec{Model: "ext:other"})
	h1, err1 := f.DataHash(family.Spec{}, d1)
	h2, err2 := f.DataHash(family.Spec{}, d2)
	if err1 != nil || err2 != nil || len(h1) != 64 || h1 != h2 {
		t.Fatalf("the same child announcement: %s %v, %s %v: want one hash", h1, err1, h2, err2)
	}
	r := d2.(*registered)
	r.hello.Train++
	if h3, _ := f.DataHash(family.Spec{}, d2); h3 == h1 {
		t.Fatalf("a different training set size has the same hash")
	}
}
