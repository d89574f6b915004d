package scheduler

import (
	"context"
	"errors"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
	"github.com/replay-sgd/replay/nn"
)

// The estimate of a small run, term by term from the bounds of doc.go.
func TestEstimateClosedForm(t *testing.T) {
	cfg, err := Resolve(testFamilies, api.RunSpec{Dataset: "regression-sin", Model: "mlp:4", Batch: 10, Steps: 2000, Window: 256}, 256)
	if err != nil {
		t.Fatal(err)
	}
	opts := DefaultOptions().WithFamilies(testFamilies...).WithWorkers(2).WithQuerySlots(1)
	e, err := estimate(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	// mlp:4 on 1→1: 1·4+4 + 4·1+1 = 13 parameters, 52 bytes a vector;
	// units 4 + 1.
	const params, vec = 13, 52
	// Vectors: 3·2+5 of the run, the backward loop's cursor, 3 per query
	// slot.
	vectors := (3*2 + 5 + 1 + 3) * vec
	// Scratch: workers 2 + trainer + backward loop + 1 slot, each an engine
	// of (in + 2·units) = 11 floats per sample over batch 10 and the two
	// evaluators of the 100 training and 100 test points.
	scratch := (2 + 2 + 1) * 4 * 11 * (10 + 100 + 100)
	// Batch log: 2 + 1 + 3 = 6 slots and the sampler's permutation, 100
	// indices each.
	batchLog := (6 + 1) * 4 * 100
	// Data: x and y of 200 points, float32; the two evaluation subsets.
	data := 4*200*2 + 4*200
	if e.Params != params || e.Memory != int64(vectors+scratch+batchLog+data) {
		t.Errorf("memory %d (%v), params %d; want %d, %d", e.Memory, e.MemoryParts, e.Params, vectors+scratch+batchLog+data, params)
	}
	// Disk: 2000/50 + 2 checkpoints, 2000 batches of 10 indices, three
	// metrics records per step, 2·(0 resets + 2 + ⌈2000/256⌉ = 10) + 1
	// vectors for the anchors; each record with its 128-byte overhead and
	// parameter and batch records with their 20-byte header.
	disk := 42*(vec+20+128) + 2000*(40+20+128) + 3*2000*(128+128) + 21*(vec+20+128)
	if e.Disk != int64(disk) {
		t.Errorf("disk %d (%v), want %d", e.Disk, e.DiskParts, disk)
	}
	// Parts that grow with the options or the spec do so.
	// Each worker: 3 vectors, its scratch and a batch-log slot.
	e2, err := estimate(cfg, opts.WithWorkers(4))
	if err != nil {
		t.Fatal(err)
	}
	if perWorker := 3*vec + 4*11*210 + 4*100; e2.Memory-e.Memory != int64(2*perWorker) {
		t.Errorf("2 more workers add %d bytes, want %d", e2.Memory-e.Memory, 2*perWorker)
	}
	cfg.Strategy = StrategyMemo // an MLP is not affine: the coalescence memo's budget
	e3, err := estimate(cfg, opts.WithMemoBudget(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if e3.Memory-e.Memory != 1<<20 {
		t.Errorf("memo adds %d bytes, want the budget", e3.Memory-e.Memory)
	}
	// Memo moves its anchors as window does (one anchor policy): the same
	// disk for its anchors; sliding and full have none but the manual ones.
	if e3.Disk != e.Disk {
		t.Errorf("memo's disk %d (%v), window's %d: the anchors differ", e3.Disk, e3.DiskParts, e.Disk)
	}
	cfg.Strategy = StrategySliding
	e4, err := estimate(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if want := e.Disk - 2*8*(vec+20+128); e4.Disk != int64(want) {
		t.Errorf("sliding's disk %d (%v), want %d (no periodic anchors)", e4.Disk, e4.DiskParts, want)
	}
}

// Specs over a limit are refused at once, with one line naming the estimate
// and the limit, and leave nothing behind. Today's code allocated each of
// these (and the first ones crash the process).
func TestAdmissionRefuses(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	opts := testOptions().WithMaxRunMemory(1 << 30).WithMaxRunDisk(8 << 30)
	h := startHarness(t, store, opts)
	for _, c := range []struct {
		spec api.RunSpec
		want []string
	}{
		// The 40 GB batch log of the issue: refused by its disk.
		{api.RunSpec{Dataset: "fashion-mnist", Model: "mlp:32", Batch: 1000, Steps: 10_000_000},
			[]string{"of disk", "batch log 38.", "limit of 8.00 GiB", "--max-run-disk"}},
		{api.RunSpec{Preset: "regression", Model: "mlp:100000x100"}, []string{"1000", "parameters", "more than the limit of 16777211"}},
		{api.RunSpec{Preset: "regression", Model: "mlp:1x300000000"}, []string{"300000001 layers", "more than the limit of 1024"}},
		{api.RunSpec{Preset: "regression", Model: "mlp:4000000000x2"}, []string{"1.6e+19 parameters", "more than the limit of 1099511627776"}},
		{api.RunSpec{Preset: "regression", Model: "mlp:20000x2"}, []string{"400080001 parameters", "more than the limit of 16777211"}},
		// Memory: a coalescence memo over the limit.
		{api.RunSpec{Preset: "regression", Strategy: StrategyMemo, Name: "m"}, nil},
	} {
		if c.spec.Name == "m" {
			// The memo budget is the daemon's: a scheduler with a budget
			// over the memory limit refuses every non-affine memo run.
			h2 := startHarness(t, store, testOptions().WithMaxRunMemory(64<<20).WithMemoBudget(128<<20))
			_, err := h2.s.Create(c.spec)
			checkRefusal(t, err, []string{"of memory", "memo 128 MiB", "limit of 64.0 MiB", "--max-run-memory"})
			h2.stop()
			continue
		}
		_, err := h.s.Create(c.spec)
		checkRefusal(t, err, c.want)
	}
	if names, err := store.Runs(); err != nil || len(names) != 0 {
		t.Fatalf("store after refusals: %v %v", names, err)
	}
	if got := h.s.List(); len(got) != 0 {
		t.Fatalf("runs after refusals: %+v", got)
	}
	if ev := h.events.String(); strings.Contains(ev, "created") {
		t.Fatalf("events after refusals: %s", ev)
	}
	// The limits refuse what is over them only.
	if _, err := h.s.Create(api.RunSpec{Name: "ok", Preset: "quadratic", Steps: 20}); err != nil {
		t.Fatal(err)
	}
}

func checkRefusal(t *testing.T, err error, want []string) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v, want ErrInvalid", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || len(msg) > 400 {
		t.Errorf("not one short line: %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not contain %q", msg, w)
		}
	}
}

// A 10 KB name is not echoed whole.
func TestLongNameClipped(t *testing.T) {
	_, err := Resolve(testFamilies, api.RunSpec{Name: strings.Repeat("ä", 5<<10), Preset: "quadratic"}, 16)
	if !errors.Is(err, ErrInvalid) || len(err.Error()) > 400 || !strings.Contains(err.Error(), "(10240 bytes)") {
		t.Fatalf("error of %d bytes: %.300v", len(err.Error()), err)
	}
}

// The batch log holds a few epochs, not Steps × Batch: a run of 10⁷ steps
// of batch 1000 (a 40 GB log before) starts and trains in bounded memory.
func TestBatchLogBounded(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	h := startHarness(t, store, testOptions())
	// The heap is the test binary's: other tests' data sets (Fashion-MNIST)
	// are in it too, so what counts is its growth during this run.
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	h.create(api.RunSpec{Name: "big", Preset: "quadratic", Batch: 1000, Steps: 10_000_000, EvalEvery: api.Ptr(1000)})
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := h.s.Status("big")
		if err != nil {
			t.Fatal(err)
		}
		if st.State != ckpt.StateRunning {
			t.Fatalf("run %s: %s", st.State, st.Reason)
		}
		if st.BackwardStep >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if grew := int64(ms.HeapSys) - int64(before.HeapSys); grew > 1<<30 {
		t.Fatalf("the heap grew by %d MiB for a run of 10⁷ steps (the whole batch log would be 38 GiB)", grew>>20)
	}
	if err := h.s.Delete("big"); err != nil {
		t.Fatal(err)
	}
}

var batchLogSeed = flag.Uint64("batchlogseed", 0, "seed of TestBatchLogMatchesSampler (0: from the clock)")

// The cache gives the sampler's batches for any order of steps, from many
// goroutines, with fewer slots than epochs in use.
func TestBatchLogMatchesSampler(t *testing.T) {
	seed := *batchLogSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -batchlogseed %d)", seed, seed)
	const n, b = 103, 7 // 14 steps per epoch, 5 samples skipped
	log := newBatchLog(nn.NewSampler(n, b, 42), b, 3)
	want := nn.NewSampler(n, b, 42)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			dst := make([]int32, b)
			for range 2000 {
				k := 1 + rng.IntN(500)
				got := log.Batch(k)
				want.Batch(k, dst)
				if !slices.Equal(got, dst) || cap(got) != b {
					t.Errorf("step %d: %v, want %v (seed %d)", k, got, dst, seed)
					return
				}
			}
		}()
	}
	wg.Wait()
	held := 0
	for i := range log.slots {
		if log.slots[i].Load() != nil {
			held++
		}
	}
	if held > 3 {
		t.Fatalf("%d epochs held, want ≤ 3", held)
	}
}

// linkFMNIST makes a data directory whose files are links to the installed
// Fashion-MNIST, so that the test can take them away and bring them back.
func linkFMNIST(t *testing.T, dir string) {
	t.Helper()
	for _, f := range []string{"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"} {
		if err := os.Symlink(filepath.Join(nn.DefaultFashionMNISTDir, f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
}

// waitFor polls the run's status until ok holds (the deadline only guards
// against hangs).
func waitFor(t *testing.T, s *Scheduler, name string, ok func(api.RunStatus) bool) api.RunStatus {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := s.Status(name)
		if err != nil {
			t.Fatal(err)
		}
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: %+v", name, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A run that cannot start (data missing, over the limits) is failed with
// the reason while the others run, and Resume revives it once the cause is
// gone. Today New returned an error for it, or Resume refused.
func TestUnstartableRunRevived(t *testing.T) {
	dir, data := t.TempDir(), t.TempDir()
	linkFMNIST(t, data)
	store := openStore(t, dir)
	defer store.Close()
	// Stored as running by a scheduler that never runs: the next one starts
	// them.
	// Loading Fashion-MNIST takes a second, and a minute or more under the
	// race detector on a loaded machine: the deadline is not under test.
	opts := testOptions().WithDataTimeout(10 * time.Minute)
	s0, err := New(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []api.RunSpec{
		{Name: "fm", Dataset: "fashion-mnist", DataPath: data, Model: "mlp:8", Steps: 60, EvalSize: api.Ptr(100)},
		{Name: "wide", Preset: "quadratic", Steps: 800, Window: 16},
	} {
		if _, err := s0.Create(spec); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"} {
		if err := os.Remove(filepath.Join(data, f)); err != nil {
			t.Fatal(err)
		}
	}

	// Restart with a disk limit that "wide" is over, and fm's data gone.
	h := startHarness(t, store, opts.WithMaxRunDisk(512<<10))
	other := h.create(api.RunSpec{Name: "other", Preset: "quadratic", Steps: 30, Batch: 1})
	failed := func(st api.RunStatus) bool { return st.State == ckpt.StateFailed }
	fm := waitFor(t, h.s, "fm", failed)
	wide := waitFor(t, h.s, "wide", failed)
	if !strings.Contains(fm.Reason, "cannot start") || !strings.Contains(fm.Reason, "train-images-idx3-ubyte") {
		t.Errorf("fm failed with %q", fm.Reason)
	}
	if !strings.Contains(wide.Reason, "of disk") || !strings.Contains(wide.Reason, "--max-run-disk") {
		t.Errorf("wide failed with %q", wide.Reason)
	}
	h.wait(other.Name, ckpt.StateDone)
	// While the causes remain, Resume says why.
	if _, err := h.s.Resume("fm"); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "train-images") {
		t.Errorf("resume without data: %v", err)
	}
	if _, err := h.s.Resume("wide"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("resume over the limit: %v", err)
	}
	linkFMNIST2(t, data)
	if _, err := h.s.Resume("fm"); err != nil {
		t.Fatal(err)
	}
	h.wait("fm", ckpt.StateDone)
	h.stop()

	// A failure to start is stored: the next daemon, with the limit
	// lifted, still shows it, and Resume revives it.
	h = startHarness(t, store, opts)
	if st, _ := h.s.Status("wide"); st.State != ckpt.StateFailed {
		t.Fatalf("wide after restart: %+v", st)
	}
	if _, err := h.s.Resume("wide"); err != nil {
		t.Fatal(err)
	}
	st := h.wait("wide", ckpt.StateDone)
	if st.ForwardStep != 800 || st.BackwardStep != 800 {
		t.Fatalf("wide: %+v", st)
	}
	// Divergence is not a failure to start: it stays failed.
	h.create(api.RunSpec{Name: "div", Preset: "quadratic", LR: 3, Steps: 200, Window: 16})
	waitFor(t, h.s, "div", failed)
	if _, err := h.s.Resume("div"); !errors.Is(err, ErrConflict) {
		t.Fatalf("resume of a diverged run: %v", err)
	}
}

// linkFMNIST2 brings back the links that TestUnstartableRunRevived removed.
func linkFMNIST2(t *testing.T, dir string) {
	t.Helper()
	for _, f := range []string{"train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"} {
		if err := os.Symlink(filepath.Join(nn.DefaultFashionMNISTDir, f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
}

// A FIFO in the data directory is refused at once, and other creations go
// on. Today the open blocked forever holding the data-set lock.
func TestDataFIFO(t *testing.T) {
	data := t.TempDir()
	linkFMNIST(t, data)
	fifo := filepath.Join(data, "train-images-idx3-ubyte.gz")
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	store := openStore(t, t.TempDir())
	defer store.Close()
	h := startHarness(t, store, testOptions())
	errc := make(chan error, 2)
	go func() {
		_, err := h.s.Create(api.RunSpec{Dataset: "fashion-mnist", DataPath: data, Model: "mlp:8", Steps: 10})
		errc <- err
		_, err = h.s.Create(api.RunSpec{Name: "q", Preset: "quadratic", Steps: 10})
		errc <- err
	}()
	for i := range 2 {
		select {
		case err := <-errc:
			if i == 0 && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not a regular file")) {
				t.Fatalf("FIFO: %v", err)
			}
			if i == 1 && err != nil {
				t.Fatal(err)
			}
		case <-time.After(time.Minute):
			t.Fatal("creation hangs on a FIFO")
		}
	}
}

// A slow data set keeps only its own key waiting, up to the deadline.
func TestDataLoadDeadline(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	s, err := New(store, testOptions().WithDataTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	// A load that never finishes, as a hung file system would.
	fam := testFamilies[0]
	hung := ckpt.RunConfig{Model: "linear", Dataset: "fashion-mnist", DataPath: "/hung"}
	k := dataKey{family: fam.Name(), key: fam.DataKey(familySpec(hung))}
	s.data[k] = &dataLoad{done: make(chan struct{})}
	_, err = s.loadData(context.Background(), fam, hung)
	if err == nil || !strings.Contains(err.Error(), "not loaded after 50ms") {
		t.Fatalf("hung load: %v", err)
	}
	if _, err := s.loadData(context.Background(), fam, ckpt.RunConfig{Model: "scalar", Dataset: "quadratic", Seed: 1}); err != nil {
		t.Fatalf("another data set: %v", err)
	}
}

// Query recomputations are bounded: of N concurrent Params on a full run,
// at most QuerySlots compute at once and the others get ErrBusy at once,
// while another run trains on.
func TestQuerySlots(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	const slots, clients = 1, 6
	h := startHarness(t, store, testOptions().WithQuerySlots(slots))
	h.create(api.RunSpec{Name: "full", Preset: "quadratic", Strategy: StrategyFull, Steps: 300})
	h.wait("full", ckpt.StateDone)
	_, want, err := h.s.Params(context.Background(), "full", KindBackward, 150)
	if err != nil {
		t.Fatal(err)
	}

	var maxActive, entered int
	var mu sync.Mutex
	release := make(chan struct{})
	h.s.queryHook = func(active int) {
		mu.Lock()
		maxActive = max(maxActive, active)
		entered++
		mu.Unlock()
		<-release
	}
	defer func() { h.s.queryHook = nil }()
	type answer struct {
		theta []float32
		err   error
	}
	answers := make(chan answer, clients)
	for range clients {
		go func() {
			_, theta, err := h.s.Params(context.Background(), "full", KindBackward, 150)
			answers <- answer{theta, err}
		}()
	}
	busy := 0
	for busy < clients-slots {
		a := <-answers
		if !errors.Is(a.err, ErrBusy) {
			t.Fatalf("answer while the slot is held: %v", a.err)
		}
		busy++
	}
	// Training goes on while the slot is held.
	h.create(api.RunSpec{Name: "other", Preset: "quadratic", Steps: 50})
	h.wait("other", ckpt.StateDone)
	if _, err := h.s.Verify(context.Background(), "other"); !errors.Is(err, ErrBusy) {
		t.Fatalf("verify while the slot is held: %v", err)
	}
	close(release)
	for range slots {
		a := <-answers
		if a.err != nil || !slices.Equal(a.theta, want) {
			t.Fatalf("held query: %v", a.err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if maxActive > slots || entered != slots {
		t.Fatalf("%d recomputations at once, %d entered; want ≤ %d", maxActive, entered, slots)
	}
}

// A run whose record is corrupt is failed in memory with the reason; New
// serves the others. Today New returned the error and replayd exited.
func TestCorruptRunNotFatal(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, dir)
	s0, err := New(store, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bad", "good"} {
		if _, err := s0.Create(api.RunSpec{Name: name, Preset: "quadratic", Steps: 40}); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	// Garble the config record of "bad" (key "r" name 0x00 'C', ckpt's
	// layout) behind the store's back.
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte("rbad\x00C"), []byte("not msgpack"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	store = openStore(t, dir)
	defer store.Close()
	h := startHarness(t, store, testOptions())
	st, err := h.s.Status("bad")
	if err != nil || st.State != ckpt.StateFailed || !strings.Contains(st.Reason, "cannot load") {
		t.Fatalf("bad: %+v %v", st, err)
	}
	h.wait("good", ckpt.StateDone)
	if _, err := h.s.Resume("bad"); !errors.Is(err, ErrConflict) {
		t.Fatalf("resume of the corrupt run: %v", err)
	}
	if _, _, err := h.s.Params(context.Background(), "bad", KindForward, 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("params of the corrupt run: %v", err)
	}
}
