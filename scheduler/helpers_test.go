package scheduler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/nn"
	"github.com/replay-sgd/replay/nnfamily"
	"github.com/replay-sgd/replay/replay"
)

// testFamilies are the families of the tests' schedulers: the built-in one,
// as replayd registers it.
var testFamilies = []family.Family{nnfamily.New()}

// syncBuffer is an io.Writer safe to read while the scheduler writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func openStore(t testing.TB, dir string) *ckpt.Store {
	t.Helper()
	st, err := ckpt.Open(ckpt.DefaultOptions(dir).WithGCInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// harness is a scheduler running in the background on a store.
type harness struct {
	t      testing.TB
	s      *Scheduler
	store  *ckpt.Store
	cancel context.CancelFunc
	done   chan error
	events *syncBuffer
}

func testOptions() Options {
	return DefaultOptions().WithFamilies(testFamilies...).WithWorkers(2).WithMaxLag(64)
}

func startHarness(t testing.TB, store *ckpt.Store, opts Options) *harness {
	t.Helper()
	h := &harness{t: t, store: store, events: &syncBuffer{}, done: make(chan error, 1)}
	if opts.Events == nil {
		opts.Events = h.events
	}
	s, err := New(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- s.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
}

func (h *harness) create(spec api.RunSpec) api.RunStatus {
	h.t.Helper()
	st, err := h.s.Create(spec)
	if err != nil {
		h.t.Fatalf("create %+v: %v", spec, err)
	}
	return st
}

// wait waits until the run's state is one of states (see waitUntil); a run
// that fails meanwhile fails the test at once.
func (h *harness) wait(name string, states ...string) api.RunStatus {
	h.t.Helper()
	return h.waitUntil(fmt.Sprintf("state %v", states), func(st api.RunStatus) bool {
		if st.State == ckpt.StateFailed && !slices.Contains(states, ckpt.StateFailed) {
			h.t.Fatalf("run %s failed: %s", name, st.Reason)
		}
		return slices.Contains(states, st.State)
	}, name)
}

// waitUntil polls cond until it holds. The polling interval is not a
// synchronisation, and the deadline only guards against hangs: it is not a
// speed requirement, so a loaded machine only makes the test slower.
func (h *harness) waitUntil(what string, cond func(api.RunStatus) bool, name string) api.RunStatus {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		st, err := h.s.Status(name)
		if err != nil {
			h.t.Fatal(err)
		}
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("run %s: still waiting for %s after 10 min (%s, forward %d, backward %d)", name, what, st.State, st.ForwardStep, st.BackwardStep)
		}
		time.Sleep(time.Millisecond)
	}
}

// oracle recomputes a stored run in memory from its configuration and
// batch log, with the replay package's sequential strategies.
type oracle struct {
	cfg    ckpt.RunConfig
	sgd    *nn.SGD
	theta0 []float32
	fwd    [][]float32 // fwd[k] = θ_k
}

// oracleInputs is what an oracle recomputes a stored run from: its
// configuration and state, its training data, model and loss, and its
// batch log, all read independently of the scheduler.
func oracleInputs(t testing.TB, store *ckpt.Store, name string) (ckpt.RunConfig, ckpt.RunState, *nn.Dataset, *nn.Model, nn.Loss, nn.BatchLog) {
	t.Helper()
	cfg, st, err := store.Run(name)
	if err != nil {
		t.Fatal(err)
	}
	train, err := oracleData(cfg.Dataset, cfg.DataPath, cfg.Seed)
	if err != nil {
		t.Fatal(err)
	}
	m, err := nn.NewModel(cfg.Model, train.In, train.Out)
	if err != nil {
		t.Fatal(err)
	}
	loss, _ := nn.ParseLoss(cfg.Loss)
	b, err := store.Batches(name, 1, st.ForwardStep)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, st, train, m, loss, nn.BatchLog(b)
}

func newOracle(t testing.TB, store *ckpt.Store, name string) *oracle {
	t.Helper()
	cfg, st, train, m, loss, b := oracleInputs(t, store, name)
	sgd, err := nn.NewSGD(m, loss, train, cfg.LR, b)
	if err != nil {
		t.Fatal(err)
	}
	o := &oracle{cfg: cfg, sgd: sgd, theta0: make([]float32, m.Dim())}
	if err := m.Init(o.theta0, cfg.Init, cfg.Seed); err != nil {
		t.Fatal(err)
	}
	o.fwd = append(o.fwd, append([]float32(nil), o.theta0...))
	for k := 1; k <= st.ForwardStep; k++ {
		th := append([]float32(nil), o.fwd[k-1]...)
		sgd.Apply(k, th)
		o.fwd = append(o.fwd, th)
	}
	return o
}

// oracleData loads a training set once per test binary: decoding
// Fashion-MNIST takes seconds under the race detector, and the oracle is
// built several times per test. Data sets are read-only once loaded.
func oracleData(name, dir string, seed uint64) (*nn.Dataset, error) {
	oracleSets.mu.Lock()
	defer oracleSets.mu.Unlock()
	k := fmt.Sprint(name, "\x00", dir, "\x00", seed)
	if d, ok := oracleSets.m[k]; ok {
		return d, nil
	}
	train, _, err := nn.LoadDataset(name, dir, seed)
	if err != nil {
		return nil, err
	}
	if oracleSets.m == nil {
		oracleSets.m = map[string]*nn.Dataset{}
	}
	oracleSets.m[k] = train
	return train, nil
}

var oracleSets struct {
	mu sync.Mutex
	m  map[string]*nn.Dataset
}

// Forward implements replay.ForwardSource.
func (o *oracle) Forward(dst []float32, k int) error {
	copy(dst, o.fwd[k])
	return nil
}

// strategy is the replay strategy equivalent to the run's anchors (window
// and configured resets, no manual ones).
func (o *oracle) strategy(t testing.TB) replay.Strategy {
	t.Helper()
	cfg := replay.Config{ResetAt: o.cfg.ResetAt, From: replay.Source(o.cfg.ResetFrom), Forward: o}
	var s replay.Strategy
	var err error
	switch o.cfg.Strategy {
	case StrategyWindow:
		cfg.Window = o.cfg.Window
		s, err = replay.NewWindowed(o.sgd, o.theta0, cfg)
	case StrategyFull:
		s, err = replay.NewWindowed(o.sgd, o.theta0, cfg)
	case StrategyMemo:
		cfg.Window = o.cfg.Window // memo moves its anchors as window does
		s, err = replay.NewMemo(o.sgd, o.theta0, replay.MemoConfig{Config: cfg, BudgetBytes: 1 << 20})
	case StrategySliding:
		s, err = replay.NewSliding(o.sgd, o.theta0, o.cfg.Window, o)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func metricsOf(t testing.TB, store *ckpt.Store, name, kind string, seg int) []ckpt.Metrics {
	t.Helper()
	var out []ckpt.Metrics
	fn := func(m ckpt.Metrics) error { out = append(out, m); return nil }
	var err error
	switch kind {
	case "forward":
		err = store.ForwardMetrics(name, 0, math.MaxInt32, fn)
	case "backward":
		err = store.BackwardMetrics(name, 0, math.MaxInt32, fn)
	default:
		err = store.SegmentMetrics(name, seg, 0, math.MaxInt32, fn)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameBits(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }

func sameMetrics(a, b ckpt.Metrics) bool {
	return a.Step == b.Step && a.Anchor == b.Anchor && a.Segment == b.Segment &&
		sameBits(a.Loss, b.Loss) && sameBits(a.TestLoss, b.TestLoss) && sameBits(a.TestAcc, b.TestAcc) &&
		sameBits(a.ParamNorm, b.ParamNorm) && sameBits(a.StepDist, b.StepDist)
}

func isErr(err, target error) bool { return errors.Is(err, target) }

func quadraticTargets(t testing.TB, seed uint64) []float32 {
	t.Helper()
	train, _, err := nn.LoadDataset("quadratic", "", seed)
	if err != nil {
		t.Fatal(err)
	}
	return train.Y
}
