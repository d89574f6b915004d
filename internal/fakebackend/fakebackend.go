// Package fakebackend is an in-memory server.Backend for tests of the HTTP
// API's clients: replayctl's unit tests run the real handler (server.New)
// over it, so that the CLI is tested against the API as the daemon serves it
// (routing, strict decoding, error mapping, the trajectory stream's codec),
// not against a second, hand-written HTTP fake. Only tests import it.
//
// Runs are a map; a run's trajectory is DefaultPoints of its status unless
// the test supplies one; parameters and batch logs are computed from the
// step number. Errors wrap the api sentinels the server maps to
// 404, 400 and 409, with messages that do not repeat the sentinel's text.
//
// Concurrency: every method is safe for concurrent use. The hook fields
// (Points, OnStatus, Report, Hold, Release, Fail, PanicOn, FailAt) are set
// by the test before the first request or inside Locked.
package fakebackend

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/export"
	"github.com/replay-sgd/replay/nn"
)

// Backend implements server.Backend (checked in the tests that use it; this
// package does not import server, so that server's own tests may use it).
type Backend struct {
	mu        sync.Mutex
	runs      map[string]*api.RunStatus
	mutations int
	lastTraj  TrajectoryQuery

	// Model gives Params its tensor names and shapes: "linear" 3 → 2
	// (0.weight [2 3], 0.bias [2]) unless set.
	Model *nn.Model
	// Points, when set, returns the trajectory of a run before the query's
	// kind and range are applied; nil means DefaultPoints of its status.
	Points func(name string) []api.Point
	// OnStatus, when set, is called with the lock held on every Status of
	// one run and may change it (a test advances a run there).
	OnStatus func(st *api.RunStatus)
	// Report is Verify's answer (its Run is set to the run's name).
	Report api.VerifyReport
	// Hold, when > 0, stops a trajectory after that many points until
	// Release is closed.
	Hold    int
	Release chan struct{}
	// Fail maps a method name to the error it returns; PanicOn names a
	// method that panics; FailAt > 0 makes Trajectory fail after that many
	// points (a store read failing mid-stream).
	Fail    map[string]error
	PanicOn string
	FailAt  int
}

// TrajectoryQuery is what the last Trajectory call was asked.
type TrajectoryQuery struct {
	Name, Kind      string
	From, To, Every int
}

// New returns a backend holding runs.
func New(runs ...api.RunStatus) *Backend {
	m, err := nn.NewModel("linear", 3, 2)
	if err != nil {
		panic(err)
	}
	b := &Backend{runs: map[string]*api.RunStatus{}, Model: m, Fail: map[string]error{}}
	for _, r := range runs {
		b.runs[r.Name] = &r
	}
	return b
}

// Locked calls fn with the backend's lock held: a test changes hook fields
// there once requests may be running.
func (b *Backend) Locked(fn func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fn()
}

// Mutations is the number of calls that changed something (create, pause,
// resume, delete, reset): a test asserts that a rejected command made none.
func (b *Backend) Mutations() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mutations
}

// LastTrajectory is the query of the last Trajectory call.
func (b *Backend) LastTrajectory() TrajectoryQuery {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastTraj
}

// Run returns a copy of a run's status, false when there is none.
func (b *Backend) Run(name string) (api.RunStatus, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st, ok := b.runs[name]
	if !ok {
		return api.RunStatus{}, false
	}
	return *st, true
}

// kindError is an error whose message is msg and which wraps one of the
// api sentinels for the server's status mapping.
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func errorf(kind error, format string, args ...any) error {
	return &kindError{msg: fmt.Sprintf(format, args...), kind: kind}
}

// check is called with the lock held at the start of every method.
func (b *Backend) check(method string) error {
	if b.PanicOn == method {
		panic("fakebackend: " + method + " panics")
	}
	return b.Fail[method]
}

func (b *Backend) get(method, name string) (*api.RunStatus, error) {
	if err := b.check(method); err != nil {
		return nil, err
	}
	st, ok := b.runs[name]
	if !ok {
		return nil, errorf(api.ErrNotFound, "run %q not found", name)
	}
	return st, nil
}

// Create stores a running run with the spec as given.
func (b *Backend) Create(spec api.RunSpec) (api.RunStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check("Create"); err != nil {
		return api.RunStatus{}, err
	}
	if spec.Name == "" {
		spec.Name = fmt.Sprintf("run-%d", len(b.runs)+1)
	}
	if _, ok := b.runs[spec.Name]; ok {
		return api.RunStatus{}, errorf(api.ErrConflict, "run %q already exists", spec.Name)
	}
	if spec.Model == "bogus" {
		return api.RunStatus{}, errorf(api.ErrInvalid, "unknown model %q (want mlp:WIDTHS, linear or scalar)", spec.Model)
	}
	if spec.Steps < 0 {
		return api.RunStatus{}, errorf(api.ErrInvalid, "steps %d: must not be negative", spec.Steps)
	}
	st := api.RunStatus{Name: spec.Name, State: "running", Spec: spec, Steps: spec.Steps, Window: spec.Window,
		Strategy: spec.Strategy, Anchor: api.AnchorInfo{From: "init"}}
	b.runs[spec.Name] = &st
	b.mutations++
	return st, nil
}

// List returns every run, sorted by name.
func (b *Backend) List() []api.RunStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.PanicOn == "List" {
		panic("fakebackend: List panics")
	}
	out := make([]api.RunStatus, 0, len(b.runs))
	for _, st := range b.runs {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(x, y api.RunStatus) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// Status returns a run's status after OnStatus.
func (b *Backend) Status(name string) (api.RunStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st, err := b.get("Status", name)
	if err != nil {
		return api.RunStatus{}, err
	}
	if b.OnStatus != nil {
		b.OnStatus(st)
	}
	return *st, nil
}

func (b *Backend) setState(method, name, state string) (api.RunStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st, err := b.get(method, name)
	if err != nil {
		return api.RunStatus{}, err
	}
	st.State = state
	b.mutations++
	return *st, nil
}

// Pause marks a run paused.
func (b *Backend) Pause(name string) (api.RunStatus, error) {
	return b.setState("Pause", name, "paused")
}

// Resume marks a run running.
func (b *Backend) Resume(name string) (api.RunStatus, error) {
	return b.setState("Resume", name, "running")
}

// Delete removes a run.
func (b *Backend) Delete(name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.get("Delete", name); err != nil {
		return err
	}
	delete(b.runs, name)
	b.mutations++
	return nil
}

// Reset records a pending reset; a step beyond the forward log is invalid.
func (b *Backend) Reset(name string, req api.ResetRequest) (api.RunStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st, err := b.get("Reset", name)
	if err != nil {
		return api.RunStatus{}, err
	}
	if req.At > st.ForwardStep {
		return api.RunStatus{}, errorf(api.ErrInvalid, "reset at step %d: run %s has only %d forward steps", req.At, name, st.ForwardStep)
	}
	st.PendingReset = append(st.PendingReset, req.At)
	b.mutations++
	return *st, nil
}

// DefaultPoints is a run's trajectory unless Points is set: forward steps
// 1..ForwardStep, backward 1..BackwardStep under anchors every 256 steps.
func DefaultPoints(st api.RunStatus) []api.Point {
	var ps []api.Point
	for k := 1; k <= st.ForwardStep; k++ {
		ps = append(ps, api.Point{Kind: "forward", Step: k, Loss: 2 / math.Sqrt(float64(k)), TestLoss: 2.1 / math.Sqrt(float64(k)),
			TestAcc: 1 - 0.9/math.Sqrt(float64(k)), ParamNorm: 10 + float64(k)/100, StepDist: 0.1})
	}
	for k := 1; k <= st.BackwardStep; k++ {
		a := (k - 1) / 256 * 256
		ps = append(ps, api.Point{Kind: "backward", Step: k, Loss: 1.8 / math.Sqrt(float64(k-a)), TestLoss: 2 / math.Sqrt(float64(k)),
			TestAcc: 1 - 0.8/math.Sqrt(float64(k)), ParamNorm: 10, StepDist: 0.05, Anchor: a, Segment: a / 256})
	}
	return ps
}

// Trajectory streams the run's points of kind ("both" for all) with
// from ≤ step ≤ to (to ≤ 0: no bound) and step % every == 0, as the
// scheduler selects them.
func (b *Backend) Trajectory(ctx context.Context, name, kind string, from, to, every int, fn func(api.Point) error) error {
	b.mu.Lock()
	b.lastTraj = TrajectoryQuery{Name: name, Kind: kind, From: from, To: to, Every: every}
	st, err := b.get("Trajectory", name)
	var status api.RunStatus
	if err == nil {
		status = *st
	}
	points, hold, release, failAt := b.Points, b.Hold, b.Release, b.FailAt
	b.mu.Unlock()
	if err != nil {
		return err
	}
	var ps []api.Point
	if points != nil {
		ps = points(name)
	} else {
		ps = DefaultPoints(status)
	}
	every = max(every, 1)
	n := 0
	for _, p := range ps {
		if (kind == "forward" || kind == "backward") && p.Kind != kind {
			continue
		}
		if p.Step < from || (to > 0 && p.Step > to) || p.Step%every != 0 {
			continue
		}
		if failAt > 0 && n == failAt {
			return fmt.Errorf("fakebackend: store read failed at point %d", n)
		}
		if err := fn(p); err != nil {
			return err
		}
		n++
		if hold > 0 && n == hold {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// Params returns Model and the parameters θ_0 = step, θ_i = i for i > 0, of
// either kind: the distance between the parameters of two steps is the
// difference of the steps. A step beyond the kind's progress is invalid.
func (b *Backend) Params(ctx context.Context, name, kind string, step int) (*nn.Model, []float32, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st, err := b.get("Params", name)
	if err != nil {
		return nil, nil, err
	}
	last := st.ForwardStep
	if kind == "backward" {
		last = st.BackwardStep
	}
	if step > last {
		return nil, nil, errorf(api.ErrInvalid, "step %d out of range: the %s trajectory of run %s reaches step %d", step, kind, name, last)
	}
	theta := make([]float32, b.Model.Dim())
	for i := range theta {
		theta[i] = float32(i)
	}
	theta[0] = float32(step)
	return b.Model, theta, nil
}

// Tensors implements server.Backend: Params' parameters cut into Model's
// tensors.
func (b *Backend) Tensors(ctx context.Context, name, kind string, step int) ([]export.Tensor, error) {
	m, theta, err := b.Params(ctx, name, kind, step)
	if err != nil {
		return nil, err
	}
	var out []export.Tensor
	for _, t := range m.Tensors() {
		out = append(out, export.Tensor{Name: t.Name, Shape: t.Shape, Data: theta[t.Offset : t.Offset+t.Size()]})
	}
	return out, nil
}

// Batches returns a ForwardStep × Spec.Batch log whose entry i is i % 60000.
func (b *Backend) Batches(name string) (int, int, []int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st, err := b.get("Batches", name)
	if err != nil {
		return 0, 0, nil, err
	}
	rows, cols := st.ForwardStep, max(st.Spec.Batch, 1)
	idx := make([]int64, rows*cols)
	for i := range idx {
		idx[i] = int64(i % 60000)
	}
	return rows, cols, idx, nil
}

// Verify returns Report for the run.
func (b *Backend) Verify(ctx context.Context, name string) (api.VerifyReport, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.get("Verify", name); err != nil {
		return api.VerifyReport{}, err
	}
	rep := b.Report
	rep.Run = name
	return rep, nil
}
