package ckpt

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/replay-sgd/replay/internal/testseed"
)

// The model-based test: random operations on the store and on an in-memory
// model of it, compared after every operation.

type modelRun struct {
	cfg      RunConfig
	st       RunState
	thetas   [][]float32 // forward iterates θ_0 … θ_ForwardStep
	batches  [][]int32   // batches[k-1] is step k
	fmetrics map[int]Metrics
	ckpts    map[int]bool
	anchors  map[int]AnchorRec
	starts   map[int][]float32
	bmetrics map[[2]int]Metrics // (segment, step)
	bthetas  map[[2]int][]float32
}

type modelTest struct {
	t     *testing.T
	seed  uint64
	op    int
	rng   *rand.Rand
	dir   string
	s     *Store
	runs  map[string]*modelRun
	names []string
}

func (m *modelTest) fatalf(format string, args ...any) {
	m.t.Helper()
	m.t.Fatalf("seed %d, op %d: "+format, append([]any{m.seed, m.op}, args...)...)
}

// expect checks an operation's error against the model's prediction.
func (m *modelTest) expect(what string, err, want error) {
	m.t.Helper()
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		m.fatalf("%s: error %v, want %v", what, err, want)
	}
}

func (m *modelTest) randVec(dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(m.rng.NormFloat64())
	}
	return v
}

func (m *modelTest) randMetrics() Metrics {
	return Metrics{Loss: m.rng.Float64(), TestLoss: m.rng.Float64(), TestAcc: m.rng.Float64(),
		ParamNorm: m.rng.Float64() * 10, StepDist: m.rng.Float64(), Anchor: m.rng.IntN(5)}
}

func (m *modelTest) step() {
	name := m.names[m.rng.IntN(len(m.names))]
	r := m.runs[name]
	var notFound error
	if r == nil {
		notFound = ErrRunNotFound
	}
	switch op := m.rng.IntN(20); {
	case op < 2: // create
		dim := 1 + m.rng.IntN(40)
		cfg := testConfig(name, dim)
		cfg.Seed = m.rng.Uint64()
		if m.rng.IntN(2) == 0 {
			cfg.ResetAt = []int{m.rng.IntN(100) + 1}
		}
		th0 := m.randVec(dim)
		err := m.s.CreateRun(cfg, th0)
		if r != nil {
			m.expect("CreateRun of an existing run", err, ErrRunExists)
			return
		}
		m.expect("CreateRun", err, nil)
		m.runs[name] = &modelRun{cfg: cfg, st: RunState{State: StateRunning}, thetas: [][]float32{th0},
			fmetrics: map[int]Metrics{}, ckpts: map[int]bool{0: true},
			anchors: map[int]AnchorRec{0: {0, 0, FromInit}}, starts: map[int][]float32{0: th0},
			bmetrics: map[[2]int]Metrics{}, bthetas: map[[2]int][]float32{}}
	case op < 7: // append forward steps
		n := 1 + m.rng.IntN(12)
		if m.rng.IntN(30) == 0 {
			n = 1500 // more than one transaction
		}
		first := 1
		if r != nil {
			first = r.st.ForwardStep + 1
		}
		var want error = notFound
		if m.rng.IntN(10) == 0 {
			first += m.rng.IntN(5) - 2
			if want == nil && first != r.st.ForwardStep+1 {
				want = ErrNotContiguous
			}
		}
		var steps []ForwardStep
		for k := first; k < first+n; k++ {
			b := make([]int32, 1+m.rng.IntN(8))
			for j := range b {
				b[j] = m.rng.Int32N(1000)
			}
			steps = append(steps, ForwardStep{Step: k, Batch: b, HasMetrics: m.rng.IntN(3) == 0, Metrics: m.randMetrics()})
		}
		st := RunState{State: StateRunning, Reason: fmt.Sprint("op ", m.op)}
		if r != nil {
			st.BackwardStep = r.st.BackwardStep
		}
		err := m.s.AppendForward(name, steps, st)
		m.expect("AppendForward", err, want)
		if want != nil {
			return
		}
		for _, fs := range steps {
			th := slices.Clone(r.thetas[len(r.thetas)-1])
			testStep(th, fs.Batch)
			r.thetas = append(r.thetas, th)
			r.batches = append(r.batches, fs.Batch)
			if fs.HasMetrics {
				mt := fs.Metrics
				mt.Step = fs.Step
				r.fmetrics[fs.Step] = mt
			}
		}
		st.ForwardStep = steps[len(steps)-1].Step
		r.st = st
	case op < 10: // checkpoint
		if r == nil {
			m.expect("PutCheckpoint", m.s.PutCheckpoint(name, 0, []float32{1}), ErrRunNotFound)
			return
		}
		k := m.rng.IntN(r.st.ForwardStep + 2)
		if k > r.st.ForwardStep {
			m.expect("PutCheckpoint past the log", m.s.PutCheckpoint(name, k, r.thetas[0]), ErrBeyondForward)
			return
		}
		m.expect("PutCheckpoint", m.s.PutCheckpoint(name, k, r.thetas[k]), nil)
		r.ckpts[k] = true
	case op < 12: // anchor
		if r == nil {
			return
		}
		seg := len(r.anchors) - m.rng.IntN(2)
		a := AnchorRec{Segment: seg, Step: m.rng.IntN(r.st.ForwardStep + 2), From: FromBackward}
		start := m.randVec(r.cfg.Dim)
		if m.rng.IntN(2) == 0 && a.Step <= r.st.ForwardStep {
			a.From, start = FromForward, r.thetas[a.Step]
		}
		var want error
		if old, ok := r.anchors[seg]; ok && (old.Step != a.Step || old.From != a.From) {
			want = ErrAnchorExists
		}
		if a.Step > r.st.ForwardStep {
			want = ErrBeyondForward
		}
		err := m.s.PutAnchor(name, a, start)
		m.expect(fmt.Sprintf("PutAnchor(%+v) over %+v", a, r.anchors[seg]), err, want)
		if want == nil {
			r.anchors[seg], r.starts[seg] = a, start
		}
	case op < 16: // backward results
		if r == nil || r.st.ForwardStep == 0 {
			return
		}
		var res []BackwardResult
		var want error
		for range 1 + m.rng.IntN(6) {
			br := BackwardResult{Segment: m.rng.IntN(len(r.anchors) + 1), Step: 1 + m.rng.IntN(r.st.ForwardStep), Metrics: m.randMetrics()}
			if _, ok := r.anchors[br.Segment]; !ok {
				want = ErrNoAnchor
			}
			if m.rng.IntN(3) == 0 {
				br.Theta = m.randVec(r.cfg.Dim)
			}
			res = append(res, br)
		}
		var st *RunState
		if m.rng.IntN(2) == 0 {
			s := r.st
			s.BackwardStep = m.rng.IntN(r.st.ForwardStep + 1)
			st = &s
		}
		err := m.s.PutBackward(name, res, st)
		m.expect("PutBackward", err, want)
		if want != nil {
			return
		}
		for _, br := range res {
			mt := br.Metrics
			mt.Step, mt.Segment = br.Step, br.Segment
			r.bmetrics[[2]int{br.Segment, br.Step}] = mt
			if br.Theta != nil {
				r.bthetas[[2]int{br.Segment, br.Step}] = br.Theta
			}
		}
		if st != nil {
			r.st = *st
		}
	case op < 17: // state
		st := RunState{State: []string{StateRunning, StatePaused, StateDone, StateFailed}[m.rng.IntN(4)],
			Reason: "why", FailedStep: m.rng.IntN(9), ForwardStep: m.rng.IntN(50)}
		if m.rng.IntN(2) == 0 {
			st.PendingResets = []Reset{{Step: m.rng.IntN(100), From: FromForward}}
		}
		want := notFound
		if r != nil {
			st.BackwardStep = m.rng.IntN(r.st.ForwardStep + 2)
			if st.BackwardStep > r.st.ForwardStep {
				want = ErrInvalid
			}
		}
		err := m.s.PutState(name, st)
		m.expect("PutState", err, want)
		if want == nil {
			st.ForwardStep = r.st.ForwardStep
			r.st = st
		}
	case op < 18: // delete
		m.expect("DeleteRun", m.s.DeleteRun(name), notFound)
		delete(m.runs, name)
	case op < 19: // reopen
		if err := m.s.Close(); err != nil {
			m.fatalf("Close: %v", err)
		}
		s, err := Open(testOptions(m.dir))
		if err != nil {
			m.fatalf("reopen: %v", err)
		}
		m.s = s
	default:
		if err := m.s.GC(); err != nil {
			m.fatalf("GC: %v", err)
		}
	}
}

// compare reads everything back and checks it against the model.
func (m *modelTest) compare() {
	names, err := m.s.Runs()
	if want := slices.Sorted(maps.Keys(m.runs)); err != nil || !slices.Equal(names, want) {
		m.fatalf("Runs = %q, %v; want %q", names, err, want)
	}
	for name, r := range m.runs {
		cfg, st, err := m.s.Run(name)
		if err != nil || !reflect.DeepEqual(cfg, r.cfg) || !reflect.DeepEqual(st, r.st) {
			m.fatalf("Run(%q) = %+v, %+v, %v; want %+v, %+v", name, cfg, st, err, r.cfg, r.st)
		}
		if fs := r.st.ForwardStep; fs > 0 {
			bs, err := m.s.Batches(name, 1, fs)
			if err != nil || !reflect.DeepEqual(bs, r.batches) {
				m.fatalf("Batches(%q, 1, %d) = %v (%v)", name, fs, len(bs), err)
			}
			from := 1 + m.rng.IntN(fs)
			bs, err = m.s.Batches(name, from, fs)
			if err != nil || !reflect.DeepEqual(bs, r.batches[from-1:]) {
				m.fatalf("Batches(%q, %d, %d): %v", name, from, fs, err)
			}
		}
		var fm []Metrics
		collect := func(mt Metrics) error { fm = append(fm, mt); return nil }
		if err := m.s.ForwardMetrics(name, 0, 1<<40, collect); err != nil {
			m.fatalf("ForwardMetrics: %v", err)
		}
		var want []Metrics
		for _, k := range slices.Sorted(maps.Keys(r.fmetrics)) {
			want = append(want, r.fmetrics[k])
		}
		if !reflect.DeepEqual(fm, want) {
			m.fatalf("ForwardMetrics(%q) = %v, want %v", name, fm, want)
		}
		ks, err := m.s.Checkpoints(name)
		if want := slices.Sorted(maps.Keys(r.ckpts)); err != nil || !slices.Equal(ks, want) {
			m.fatalf("Checkpoints(%q) = %v, %v; want %v", name, ks, err, want)
		}
		dst := make([]float32, r.cfg.Dim)
		for _, k := range ks {
			if err := m.s.Checkpoint(name, k, dst); err != nil || !equalBits(dst, r.thetas[k]) {
				m.fatalf("Checkpoint(%q, %d): %v", name, k, err)
			}
		}
		q := m.rng.IntN(r.st.ForwardStep + 5)
		k, err := m.s.NearestCheckpoint(name, q, dst)
		wantK := 0
		for _, c := range ks {
			if c <= q {
				wantK = c
			}
		}
		if err != nil || k != wantK || !equalBits(dst, r.thetas[k]) {
			m.fatalf("NearestCheckpoint(%q, %d) = %d, %v; want %d", name, q, k, err, wantK)
		}
		as, err := m.s.Anchors(name)
		var wantA []AnchorRec
		for _, seg := range slices.Sorted(maps.Keys(r.anchors)) {
			wantA = append(wantA, r.anchors[seg])
			if err := m.s.AnchorStart(name, seg, dst); err != nil || !equalBits(dst, r.starts[seg]) {
				m.fatalf("AnchorStart(%q, %d): %v", name, seg, err)
			}
		}
		if err != nil || !reflect.DeepEqual(as, wantA) {
			m.fatalf("Anchors(%q) = %v, %v; want %v", name, as, err, wantA)
		}
		// Backward: per segment, and the highest segment per step.
		top := map[int]Metrics{}
		perSeg := map[int][]Metrics{}
		keys := slices.SortedFunc(maps.Keys(r.bmetrics), func(a, b [2]int) int {
			if a[0] != b[0] {
				return a[0] - b[0]
			}
			return a[1] - b[1]
		})
		for _, key := range keys {
			mt := r.bmetrics[key]
			perSeg[key[0]] = append(perSeg[key[0]], mt)
			if old, ok := top[key[1]]; !ok || old.Segment <= key[0] {
				top[key[1]] = mt
			}
		}
		var gotB, wantB []Metrics
		if err := m.s.BackwardMetrics(name, 0, 1<<40, func(mt Metrics) error { gotB = append(gotB, mt); return nil }); err != nil {
			m.fatalf("BackwardMetrics: %v", err)
		}
		for _, step := range slices.Sorted(maps.Keys(top)) {
			wantB = append(wantB, top[step])
		}
		if !reflect.DeepEqual(gotB, wantB) {
			m.fatalf("BackwardMetrics(%q) = %v, want %v", name, gotB, wantB)
		}
		for seg := range len(r.anchors) + 1 {
			var got []Metrics
			if err := m.s.SegmentMetrics(name, seg, 0, 1<<40, func(mt Metrics) error { got = append(got, mt); return nil }); err != nil {
				m.fatalf("SegmentMetrics: %v", err)
			}
			if !reflect.DeepEqual(got, perSeg[seg]) {
				m.fatalf("SegmentMetrics(%q, %d) = %v, want %v", name, seg, got, perSeg[seg])
			}
		}
		for key, th := range r.bthetas {
			if ok, err := m.s.BackwardTheta(name, key[0], key[1], dst); !ok || err != nil || !equalBits(dst, th) {
				m.fatalf("BackwardTheta(%q, %v) = %v, %v", name, key, ok, err)
			}
		}
		if ok, err := m.s.BackwardTheta(name, 99, 1, dst); ok || err != nil {
			m.fatalf("BackwardTheta of an absent result = %v, %v", ok, err)
		}
	}
	for _, name := range m.names {
		if m.runs[name] == nil {
			if _, _, err := m.s.Run(name); !errors.Is(err, ErrRunNotFound) {
				m.fatalf("Run(%q) of a deleted run: %v", name, err)
			}
		}
	}
	if m.op%25 == 0 {
		m.verify()
	}
}

func (m *modelTest) verify() {
	for name := range m.runs {
		rep, err := m.s.Verify(name, testReplay)
		if err != nil || !rep.OK() {
			m.fatalf("Verify(%q): %v %q", name, err, rep.Problems)
		}
	}
}

func TestModel(t *testing.T) {
	// Four simulations (one with -short, which the race run of make test
	// uses), seeds base … base+3; subtest "TestModel/<seed>" is replayed
	// alone with REPLAYTEST_SEED=<seed> -run 'TestModel/^<seed>$'.
	base := testseed.Seed(t)
	sims := uint64(4)
	if testing.Short() {
		sims = 1
	}
	for i := range sims {
		seed := base + i
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d (%s=%d go test ./ckpt -run 'TestModel/^%d$' to repeat)", seed, testseed.Env, seed, seed)
			m := &modelTest{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 2)), dir: t.TempDir(),
				runs: map[string]*modelRun{}, names: []string{"a", "b", "a\x01", "fig3/w=4"}}
			s, err := Open(testOptions(m.dir))
			if err != nil {
				t.Fatal(err)
			}
			m.s = s
			t.Cleanup(func() {
				checkStore(t, m.s)
				m.s.Close()
			})
			for m.op = 1; m.op <= 250; m.op++ {
				m.step()
				m.compare()
			}
		})
	}
}
