package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/export"
)

// fakeDaemon is an in-memory stand-in for replayd's HTTP API, for unit
// tests of the CLI's parsing and formatting. It follows the API contract
// (status codes, one-line api.Error bodies, ndjson streaming) and counts
// requests that change state, so tests can assert that a rejected command
// changed nothing. End-to-end tests against the real daemon are in
// e2e_test.go.
type fakeDaemon struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	runs      map[string]*api.RunStatus
	mutations int      // successful POST/DELETE that changed something
	requests  []string // "METHOD path?query", in order
	bodies    []string // bodies of POST requests
	// points returns the trajectory of a run (nil: a default one).
	points func(name string) []api.Point
	// onStatus, when set, is called under mu on every GET of one run (wait
	// tests advance the run there).
	onStatus func(st *api.RunStatus)
	verify   api.VerifyReport
	// hold, when set, pauses a trajectory stream after this many points
	// until release is closed (streaming test).
	hold    int
	release chan struct{}
	token   string
}

func newFake(t *testing.T, runs ...api.RunStatus) *fakeDaemon {
	f := &fakeDaemon{t: t, runs: map[string]*api.RunStatus{}}
	for i := range runs {
		r := runs[i]
		f.runs[r.Name] = &r
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// sampleRun is a run of the paper's kind, part-way through.
func sampleRun(name string) api.RunStatus {
	fl, bl := 0.53125, 0.4921875
	return api.RunStatus{
		Name: name, State: "running",
		Spec:  api.RunSpec{Name: name, Preset: "fmnist-mlp", Model: "mlp:32", Dataset: "fashion-mnist", LR: 0.01, Batch: 8, Steps: 5000},
		Steps: 5000, ForwardStep: 1200, BackwardStep: 900,
		Anchor: api.AnchorInfo{Segment: 3, Step: 768, From: "backward"},
		Window: 256, Strategy: "window", OpsPerSec: 210.5, ETASeconds: 80,
		ForwardLoss: &fl, BackwardLoss: &bl,
	}
}

func (f *fakeDaemon) addr() string { return f.srv.URL }

func (f *fakeDaemon) mutated() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mutations
}

func (f *fakeDaemon) lastRequest() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		return ""
	}
	return f.requests[len(f.requests)-1]
}

func jsonAnswer(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func errAnswer(w http.ResponseWriter, code int, format string, args ...any) {
	jsonAnswer(w, code, api.Error{Error: fmt.Sprintf(format, args...)})
}

// defaultPoints is a small trajectory with both kinds and two anchors.
func defaultPoints(st *api.RunStatus) []api.Point {
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

func (f *fakeDaemon) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.EscapedPath()+"?"+r.URL.RawQuery)
	if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
		errAnswer(w, 401, "missing or wrong bearer token (Authorization: Bearer <token>)")
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/v1/runs")
	if r.URL.Path == "/healthz" {
		io.WriteString(w, "ok")
		return
	}
	if path == r.URL.Path {
		errAnswer(w, 404, "no route %s", r.URL.Path)
		return
	}
	if path == "" || path == "/" {
		switch r.Method {
		case "GET":
			names := make([]string, 0, len(f.runs))
			for n := range f.runs {
				names = append(names, n)
			}
			sort.Strings(names)
			l := api.RunList{Runs: []api.RunStatus{}}
			for _, n := range names {
				l.Runs = append(l.Runs, *f.runs[n])
			}
			jsonAnswer(w, 200, l)
		case "POST":
			b, _ := io.ReadAll(r.Body)
			f.bodies = append(f.bodies, string(b))
			var spec api.RunSpec
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&spec); err != nil {
				errAnswer(w, 400, "bad run spec: %v", err)
				return
			}
			if spec.Name == "" {
				spec.Name = fmt.Sprintf("run-%d", len(f.runs)+1)
			}
			if _, ok := f.runs[spec.Name]; ok {
				errAnswer(w, 409, "run %q already exists", spec.Name)
				return
			}
			if spec.Model == "bogus" {
				errAnswer(w, 400, "unknown model %q (want mlp:WIDTHS, linear or scalar)", spec.Model)
				return
			}
			st := api.RunStatus{Name: spec.Name, State: "running", Spec: spec, Steps: spec.Steps, Window: spec.Window,
				Strategy: spec.Strategy, Anchor: api.AnchorInfo{From: "init"}}
			f.runs[spec.Name] = &st
			f.mutations++
			jsonAnswer(w, 201, st)
		default:
			errAnswer(w, 405, "method %s not allowed", r.Method)
		}
		return
	}
	name, op, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	st, ok := f.runs[name]
	if !ok {
		errAnswer(w, 404, "run %q not found", name)
		return
	}
	q := r.URL.Query()
	switch r.Method + " " + op {
	case "GET ":
		if f.onStatus != nil {
			f.onStatus(st)
		}
		jsonAnswer(w, 200, st)
	case "DELETE ":
		delete(f.runs, name)
		f.mutations++
		w.WriteHeader(204)
	case "POST pause", "POST resume":
		if op == "pause" {
			st.State = "paused"
		} else {
			st.State = "running"
		}
		f.mutations++
		jsonAnswer(w, 200, st)
	case "POST reset":
		b, _ := io.ReadAll(r.Body)
		f.bodies = append(f.bodies, string(b))
		var req api.ResetRequest
		if err := json.Unmarshal(b, &req); err != nil {
			errAnswer(w, 400, "bad reset request: %v", err)
			return
		}
		if req.At > st.ForwardStep {
			errAnswer(w, 400, "reset at step %d: run %s has only %d forward steps", req.At, name, st.ForwardStep)
			return
		}
		st.PendingReset = append(st.PendingReset, req.At)
		f.mutations++
		jsonAnswer(w, 200, st)
	case "POST verify":
		rep := f.verify
		rep.Run = name
		jsonAnswer(w, 200, rep)
	case "GET trajectory":
		ps := defaultPoints(st)
		if f.points != nil {
			ps = f.points(name)
		}
		kind := q.Get("kind")
		from, _ := strconv.Atoi(q.Get("from"))
		to, _ := strconv.Atoi(q.Get("to"))
		every := 1
		if e := q.Get("every"); e != "" {
			every, _ = strconv.Atoi(e)
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(200)
		n := 0
		for _, p := range ps {
			if (kind == "forward" || kind == "backward") && p.Kind != kind {
				continue
			}
			if p.Step < from || (to > 0 && p.Step > to) || p.Step%every != 0 {
				continue
			}
			line, _ := json.Marshal(wireNull(p))
			w.Write(append(line, '\n'))
			n++
			if f.hold > 0 && n == f.hold {
				w.(http.Flusher).Flush()
				f.mu.Unlock()
				<-f.release
				f.mu.Lock()
			}
		}
	case "GET params":
		kind := q.Get("kind")
		step, err := strconv.Atoi(q.Get("step"))
		if kind != "forward" && kind != "backward" || err != nil {
			errAnswer(w, 400, "bad kind or step")
			return
		}
		last := st.ForwardStep
		if kind == "backward" {
			last = st.BackwardStep
		}
		if step > last {
			errAnswer(w, 400, "step %d out of range: the %s trajectory of run %s reaches step %d", step, kind, name, last)
			return
		}
		ts := []export.Tensor{
			{Name: "0.weight", Shape: []int{2, 3}, Data: []float32{1, 2, 3, 4, 5, float32(step)}},
			{Name: "0.bias", Shape: []int{2}, Data: []float32{-1, -2}},
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		export.WriteSafetensors(w, ts)
	case "GET batches":
		rows, cols := st.ForwardStep, st.Spec.Batch
		data := make([]int64, rows*cols)
		for i := range data {
			data[i] = int64(i % 60000)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		export.WriteNpyInt64(w, rows, cols, data)
	default:
		errAnswer(w, 404, "no route %s %s", r.Method, r.URL.Path)
	}
}

// wireNull encodes a point as the daemon does: NaN as null.
func wireNull(p api.Point) map[string]any {
	f := func(v float64) any {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return v
	}
	return map[string]any{"kind": p.Kind, "step": p.Step, "loss": f(p.Loss), "test_loss": f(p.TestLoss),
		"test_acc": f(p.TestAcc), "param_norm": f(p.ParamNorm), "step_dist": f(p.StepDist), "anchor": p.Anchor, "segment": p.Segment}
}

// cli runs replayctl against the fake with the given arguments (the fake's
// address is appended as a global flag after the command, which also
// checks that global flags work there).
func (f *fakeDaemon) cli(args ...string) (stdout, stderr string, err error) {
	return runCLI(append(args, "--addr", f.addr())...)
}

// runCLI runs replayctl with exactly args.
func runCLI(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	err = run(args, &o, &e)
	return o.String(), e.String(), err
}

// oneLine checks the error is a single line.
func oneLine(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err.Error())
	}
}
