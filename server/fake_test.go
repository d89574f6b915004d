package server

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/export"
	"github.com/replay-sgd/replay/nn"
	"github.com/replay-sgd/replay/scheduler"
)

// fakeBackend is an in-memory Backend for the server's unit tests: runs are
// a map, trajectories and parameters are computed from the step number, and
// fail/panicOn inject errors and panics per method.
type fakeBackend struct {
	mu       sync.Mutex
	runs     map[string]api.RunStatus
	fail     map[string]error // method name → error to return
	panicOn  string           // method name that panics
	model    *nn.Model
	points   []api.Point // trajectory of every run
	failAt   int         // Trajectory fails after this many points (0: never)
	lastTraj struct {
		kind            string
		from, to, every int
	}
}

var _ Backend = (*fakeBackend)(nil)

func newFake() *fakeBackend {
	m, err := nn.NewModel("mlp:4", 3, 2)
	if err != nil {
		panic(err)
	}
	return &fakeBackend{runs: map[string]api.RunStatus{}, fail: map[string]error{}, model: m}
}

func (f *fakeBackend) check(method string) error {
	if f.panicOn == method {
		panic("fake: " + method + " panics")
	}
	return f.fail[method]
}

func (f *fakeBackend) Create(spec api.RunSpec) (api.RunStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check("Create"); err != nil {
		return api.RunStatus{}, err
	}
	if spec.Name == "" {
		spec.Name = fmt.Sprintf("run-%d", len(f.runs)+1)
	}
	if _, ok := f.runs[spec.Name]; ok {
		return api.RunStatus{}, fmt.Errorf("run %q exists: %w", spec.Name, scheduler.ErrConflict)
	}
	if spec.Steps < 0 {
		return api.RunStatus{}, fmt.Errorf("steps %d < 0: %w", spec.Steps, scheduler.ErrInvalid)
	}
	st := api.RunStatus{Name: spec.Name, State: "running", Spec: spec, Steps: spec.Steps, Window: 256, Strategy: "window"}
	f.runs[spec.Name] = st
	return st, nil
}

func (f *fakeBackend) List() []api.RunStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panicOn == "List" {
		panic("fake: List panics")
	}
	var out []api.RunStatus
	for _, st := range f.runs {
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b api.RunStatus) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

func (f *fakeBackend) get(method, name string) (api.RunStatus, error) {
	if err := f.check(method); err != nil {
		return api.RunStatus{}, err
	}
	st, ok := f.runs[name]
	if !ok {
		return api.RunStatus{}, fmt.Errorf("run %q: %w", name, scheduler.ErrNotFound)
	}
	return st, nil
}

func (f *fakeBackend) Status(name string) (api.RunStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.get("Status", name)
}

func (f *fakeBackend) setState(method, name, state string) (api.RunStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.get(method, name)
	if err != nil {
		return st, err
	}
	st.State = state
	f.runs[name] = st
	return st, nil
}

func (f *fakeBackend) Pause(name string) (api.RunStatus, error) {
	return f.setState("Pause", name, "paused")
}

func (f *fakeBackend) Resume(name string) (api.RunStatus, error) {
	return f.setState("Resume", name, "running")
}

func (f *fakeBackend) Delete(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.get("Delete", name); err != nil {
		return err
	}
	delete(f.runs, name)
	return nil
}

func (f *fakeBackend) Reset(name string, req api.ResetRequest) (api.RunStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.get("Reset", name)
	if err != nil {
		return st, err
	}
	if req.At > st.Steps {
		return st, fmt.Errorf("reset at %d beyond the run's %d steps: %w", req.At, st.Steps, scheduler.ErrInvalid)
	}
	st.PendingReset = append(st.PendingReset, req.At)
	f.runs[name] = st
	return st, nil
}

func (f *fakeBackend) Trajectory(ctx context.Context, name, kind string, from, to, every int, fn func(api.Point) error) error {
	f.mu.Lock()
	_, err := f.get("Trajectory", name)
	f.lastTraj.kind, f.lastTraj.from, f.lastTraj.to, f.lastTraj.every = kind, from, to, every
	points, failAt := f.points, f.failAt
	f.mu.Unlock()
	if err != nil {
		return err
	}
	for i, p := range points {
		if failAt > 0 && i == failAt {
			return fmt.Errorf("fake: store read failed at point %d", i)
		}
		if err := fn(p); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeBackend) Tensors(ctx context.Context, name, kind string, step int) ([]export.Tensor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.get("Params", name) // failures are keyed by the route: /params
	if err != nil {
		return nil, err
	}
	if step > st.Steps {
		return nil, fmt.Errorf("step %d beyond %d: %w", step, st.Steps, scheduler.ErrInvalid)
	}
	theta := f.theta(kind, step)
	var out []export.Tensor
	for _, t := range f.model.Tensors() {
		out = append(out, export.Tensor{Name: t.Name, Shape: t.Shape, Data: theta[t.Offset : t.Offset+t.Size()]})
	}
	return out, nil
}

// theta is the flat parameter vector the fake serves for (kind, step).
func (f *fakeBackend) theta(kind string, step int) []float32 {
	theta := make([]float32, f.model.Dim())
	for i := range theta {
		theta[i] = float32(step) + float32(i)/8
		if kind == "backward" {
			theta[i] = -theta[i]
		}
	}
	return theta
}

func (f *fakeBackend) Batches(name string) (int, int, []int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.get("Batches", name)
	if err != nil {
		return 0, 0, nil, err
	}
	rows, cols := st.ForwardStep, 2
	idx := make([]int64, rows*cols)
	for i := range idx {
		idx[i] = int64(i * 7 % 11)
	}
	return rows, cols, idx, nil
}

func (f *fakeBackend) Verify(ctx context.Context, name string) (api.VerifyReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.get("Verify", name)
	if err != nil {
		return api.VerifyReport{}, err
	}
	return api.VerifyReport{Run: name, Checkpoints: 1, Steps: st.ForwardStep, OK: true}, nil
}
