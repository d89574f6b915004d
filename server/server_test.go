package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/export"
	"github.com/replay-sgd/replay/scheduler"
)

// logBuf is a concurrency-safe log sink, so tests can check what was logged.
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

type harness struct {
	t    *testing.T
	fake *fakeBackend
	srv  *httptest.Server
	log  *logBuf
	tok  string // sent as the bearer token when not empty
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	h := &harness{t: t, fake: newFake(), log: &logBuf{}}
	opts.Logger = slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.srv = httptest.NewServer(New(h.fake, opts))
	t.Cleanup(h.srv.Close)
	return h
}

type answer struct {
	code   int
	header http.Header
	body   []byte
}

func (h *harness) do(method, path string, body io.Reader, hdr ...string) answer {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if h.tok != "" {
		req.Header.Set("Authorization", "Bearer "+h.tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

func (h *harness) json(method, path, body string) answer {
	h.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	return h.do(method, path, r, "Content-Type", "application/json")
}

// wantError checks an error answer: the status, a JSON api.Error on one
// line, and a message containing want.
func wantError(t *testing.T, a answer, code int, want string) {
	t.Helper()
	if a.code != code {
		t.Fatalf("status %d, want %d (body %q)", a.code, code, a.body)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	body := strings.TrimSuffix(string(a.body), "\n")
	if strings.Contains(body, "\n") {
		t.Errorf("error body has several lines: %q", a.body)
	}
	var e api.Error
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error == "" {
		t.Fatalf("error body %q is not an api.Error (%v)", a.body, err)
	}
	if !strings.Contains(e.Error, want) {
		t.Errorf("error %q does not contain %q", e.Error, want)
	}
}

func decodeStatus(t *testing.T, a answer, code int) api.RunStatus {
	t.Helper()
	if a.code != code {
		t.Fatalf("status %d, want %d (body %q)", a.code, code, a.body)
	}
	var st api.RunStatus
	if err := json.Unmarshal(a.body, &st); err != nil {
		t.Fatalf("decode %q: %v", a.body, err)
	}
	return st
}

func TestHealthz(t *testing.T) {
	h := newHarness(t, Options{})
	a := h.do("GET", "/healthz", nil)
	if a.code != 200 || string(a.body) != "ok\n" {
		t.Fatalf("healthz: %d %q", a.code, a.body)
	}
	if a := h.do("HEAD", "/healthz", nil); a.code != 200 {
		t.Fatalf("HEAD healthz: %d", a.code)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "replayd_test_steps_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(42)
	h := newHarness(t, Options{Registry: reg})
	h.do("GET", "/v1/runs", nil)
	h.do("GET", "/v1/runs/nope", nil)
	a := h.do("GET", "/metrics", nil)
	if a.code != 200 {
		t.Fatalf("metrics: %d %q", a.code, a.body)
	}
	for _, want := range []string{
		"replayd_test_steps_total 42",
		`replay_http_requests_total{code="200",route="GET /v1/runs"} 1`,
		`replay_http_requests_total{code="404",route="GET /v1/runs/{name}"} 1`,
	} {
		if !bytes.Contains(a.body, []byte(want)) {
			t.Errorf("metrics lack %q:\n%s", want, a.body)
		}
	}
	// A second server on the same registry reuses the counter.
	New(newFake(), Options{Registry: reg})
}

func TestRunLifecycle(t *testing.T) {
	h := newHarness(t, Options{})
	a := h.json("GET", "/v1/runs", "")
	if a.code != 200 || strings.TrimSpace(string(a.body)) != `{"runs":[]}` {
		t.Fatalf("empty list: %d %s", a.code, a.body)
	}
	st := decodeStatus(t, h.json("POST", "/v1/runs", `{"name":"a","preset":"quadratic","steps":100}`), 201)
	if st.Name != "a" || st.Spec.Preset != "quadratic" || st.Steps != 100 {
		t.Fatalf("created %+v", st)
	}
	// No Content-Type is accepted too (curl -d sets a form type; -H is easy).
	a = h.do("POST", "/v1/runs", strings.NewReader(`{"name":"b"}`))
	if st := decodeStatus(t, a, 201); st.Name != "b" || a.header.Get("Location") != "/v1/runs/b" {
		t.Fatalf("created %+v, Location %q", st, a.header.Get("Location"))
	}
	var list api.RunList
	a = h.json("GET", "/v1/runs", "")
	if err := json.Unmarshal(a.body, &list); err != nil || len(list.Runs) != 2 || list.Runs[0].Name != "a" {
		t.Fatalf("list %s: %v", a.body, err)
	}
	if st := decodeStatus(t, h.json("GET", "/v1/runs/a", ""), 200); st.Name != "a" {
		t.Fatalf("get %+v", st)
	}
	if st := decodeStatus(t, h.json("POST", "/v1/runs/a/pause", ""), 200); st.State != "paused" {
		t.Fatalf("pause %+v", st)
	}
	if st := decodeStatus(t, h.json("POST", "/v1/runs/a/resume", ""), 200); st.State != "running" {
		t.Fatalf("resume %+v", st)
	}
	st = decodeStatus(t, h.json("POST", "/v1/runs/a/reset", `{"at":50,"from":"forward"}`), 200)
	if len(st.PendingReset) != 1 || st.PendingReset[0] != 50 {
		t.Fatalf("reset %+v", st)
	}
	a = h.json("POST", "/v1/runs/a/verify", "")
	var rep api.VerifyReport
	if err := json.Unmarshal(a.body, &rep); a.code != 200 || err != nil || !rep.OK || rep.Run != "a" {
		t.Fatalf("verify %d %s", a.code, a.body)
	}
	if a := h.json("DELETE", "/v1/runs/a", ""); a.code != 204 || len(a.body) != 0 {
		t.Fatalf("delete: %d %q", a.code, a.body)
	}
	wantError(t, h.json("GET", "/v1/runs/a", ""), 404, `run "a"`)

	// Messages are not HTML-escaped.
	h.fake.fail = map[string]error{"Create": fmt.Errorf("model mlp:<widths> & more: %w", scheduler.ErrInvalid)}
	a = h.json("POST", "/v1/runs", `{}`)
	if !bytes.Contains(a.body, []byte("mlp:<widths> & more")) {
		t.Errorf("escaped message: %s", a.body)
	}
}

func TestErrorMapping(t *testing.T) {
	h := newHarness(t, Options{})
	h.json("POST", "/v1/runs", `{"name":"a","steps":10}`)
	cases := []struct {
		method, path, body, failing string
		err                         error
		code                        int
	}{
		{"POST", "/v1/runs", `{"name":"x"}`, "Create", fmt.Errorf("preset %q: %w", "nope", scheduler.ErrInvalid), 400},
		{"POST", "/v1/runs", `{"name":"x"}`, "Create", fmt.Errorf("wrapped: %w", scheduler.ErrConflict), 409},
		{"POST", "/v1/runs", `{"name":"x"}`, "Create", errors.New("disk on fire"), 500},
		{"GET", "/v1/runs/a", "", "Status", fmt.Errorf("gone: %w", scheduler.ErrNotFound), 404},
		{"GET", "/v1/runs/a", "", "Status", errors.New("disk on fire"), 500},
		{"POST", "/v1/runs/a/pause", "", "Pause", fmt.Errorf("run is done: %w", scheduler.ErrConflict), 409},
		{"POST", "/v1/runs/a/resume", "", "Resume", fmt.Errorf("run failed: %w", scheduler.ErrConflict), 409},
		{"POST", "/v1/runs/a/reset", `{"at":3}`, "Reset", fmt.Errorf("beyond: %w", scheduler.ErrInvalid), 400},
		{"DELETE", "/v1/runs/a", "", "Delete", errors.New("disk on fire"), 500},
		{"GET", "/v1/runs/a/trajectory", "", "Trajectory", fmt.Errorf("bad range: %w", scheduler.ErrInvalid), 400},
		{"GET", "/v1/runs/a/params?kind=forward&step=1", "", "Params", fmt.Errorf("not kept: %w", scheduler.ErrNotFound), 404},
		{"GET", "/v1/runs/a/params?kind=forward&step=1", "", "Params", errors.New("disk\non fire"), 500},
		{"GET", "/v1/runs/a/batches", "", "Batches", errors.New("disk on fire"), 500},
		{"POST", "/v1/runs/a/verify", "", "Verify", fmt.Errorf("busy: %w", scheduler.ErrConflict), 409},
		// The backend stopping under a live request: 503, never an empty 200.
		{"POST", "/v1/runs/a/verify", "", "Verify", fmt.Errorf("stopping: %w", context.Canceled), 503},
		{"GET", "/v1/runs/a/trajectory", "", "Trajectory", fmt.Errorf("stopping: %w", context.Canceled), 503},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s_%s_%d", c.failing, c.method, c.code), func(t *testing.T) {
			h.fake.mu.Lock()
			h.fake.fail = map[string]error{c.failing: c.err}
			h.fake.mu.Unlock()
			wantError(t, h.json(c.method, c.path, c.body), c.code, strings.Fields(c.err.Error())[0])
		})
	}
	if !strings.Contains(h.log.String(), "disk on fire") {
		t.Errorf("500s were not logged:\n%s", h.log.String())
	}
}

func TestUnknownRun(t *testing.T) {
	h := newHarness(t, Options{})
	for _, c := range [][2]string{
		{"GET", "/v1/runs/zz"}, {"DELETE", "/v1/runs/zz"}, {"POST", "/v1/runs/zz/pause"},
		{"POST", "/v1/runs/zz/resume"}, {"GET", "/v1/runs/zz/trajectory"},
		{"GET", "/v1/runs/zz/params?kind=backward&step=0"}, {"GET", "/v1/runs/zz/batches"},
		{"POST", "/v1/runs/zz/verify"},
	} {
		wantError(t, h.json(c[0], c[1], ""), 404, `run "zz"`)
	}
	wantError(t, h.json("POST", "/v1/runs/zz/reset", `{"at":1}`), 404, `run "zz"`)
}

func TestRoutingErrors(t *testing.T) {
	h := newHarness(t, Options{})
	wantError(t, h.json("GET", "/v2/things", ""), 404, "no such endpoint")
	wantError(t, h.json("GET", "/v1/runs/a/b/c", ""), 404, "no such endpoint")
	a := h.json("PUT", "/v1/runs", "{}")
	wantError(t, a, 405, "not allowed")
	if allow := a.header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") {
		t.Errorf("Allow %q", allow)
	}
	a = h.json("GET", "/v1/runs/a/pause", "")
	wantError(t, a, 405, "not allowed")
	if allow := a.header.Get("Allow"); allow != "POST" {
		t.Errorf("Allow %q, want POST", allow)
	}
	wantError(t, h.json("POST", "/healthz", ""), 405, "not allowed")
}

func TestBadBodies(t *testing.T) {
	h := newHarness(t, Options{MaxBodyBytes: 4096})
	h.json("POST", "/v1/runs", `{"name":"a","steps":10}`)
	for _, c := range []struct{ path, body, want string }{
		{"/v1/runs", `{"name":`, "invalid JSON"},
		{"/v1/runs", `[1,2]`, "invalid JSON"},
		{"/v1/runs", `{"nmae":"x"}`, "unknown field"},
		{"/v1/runs", `{"steps":"ten"}`, "invalid JSON"},
		{"/v1/runs", `{"seed":-1}`, "invalid JSON"},
		{"/v1/runs", `{"name":"x"} {"name":"y"}`, "trailing data"},
		{"/v1/runs", `{"name":"x"} garbage`, "trailing data"},
		{"/v1/runs", ``, "empty body"},
		{"/v1/runs", "   \n", "empty body"},
		{"/v1/runs/a/reset", `{"at":-5}`, "negative"},
		{"/v1/runs/a/reset", `{"at":1e400}`, "invalid JSON"},
		{"/v1/runs/a/reset", `{"at":1,"from":"forward","extra":true}`, "unknown field"},
		{"/v1/runs/a/reset", ``, "empty body"},
	} {
		wantError(t, h.json("POST", c.path, c.body), 400, c.want)
	}
	wantError(t, h.do("POST", "/v1/runs", strings.NewReader(`name=x`), "Content-Type", "application/x-www-form-urlencoded"), 400, "invalid JSON")
	// curl -d sends a form Content-Type with a JSON body: accepted.
	a0 := h.do("POST", "/v1/runs", strings.NewReader(`{"name":"curl"}`), "Content-Type", "application/x-www-form-urlencoded")
	decodeStatus(t, a0, 201)

	// A huge body is cut at the limit: 413, and the backend never sees it.
	huge := `{"name":"` + strings.Repeat("x", 1<<20) + `"}`
	wantError(t, h.json("POST", "/v1/runs", huge), 413, "too large")
	// An endless one too (the reader never ends; the server stops reading).
	a := h.do("POST", "/v1/runs", io.LimitReader(infinite{}, 64<<20), "Content-Type", "application/json")
	wantError(t, a, 413, "too large")
	if n := len(h.fake.List()); n != 2 {
		t.Fatalf("%d runs after bad bodies, want 2 (a and curl)", n)
	}
	// Default limit when none is set.
	h2 := newHarness(t, Options{})
	wantError(t, h2.json("POST", "/v1/runs", `{"name":"`+strings.Repeat("y", DefaultMaxBodyBytes)+`"}`), 413, "too large")
}

// infinite is a reader of endless spaces inside a JSON string.
type infinite struct{}

func (infinite) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

func TestTrajectory(t *testing.T) {
	h := newHarness(t, Options{})
	h.json("POST", "/v1/runs", `{"name":"a","steps":10}`)
	var want []api.Point
	for i := range 5000 {
		want = append(want, api.Point{Kind: "backward", Step: i, Loss: 1 / float64(i+3), TestLoss: math.Pi * float64(i),
			TestAcc: 0.1, ParamNorm: math.Nextafter(1, 2), StepDist: 1e-300, Anchor: i / 16 * 16, Segment: i / 16})
	}
	want[7].TestAcc = math.NaN()
	want[8].Loss = math.Inf(1)
	h.fake.points = want

	a := h.do("GET", "/v1/runs/a/trajectory?kind=backward&from=2&to=4000&every=3", nil)
	if a.code != 200 || a.header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("trajectory: %d %q", a.code, a.header.Get("Content-Type"))
	}
	lt := h.fake.lastTraj
	if lt.kind != "backward" || lt.from != 2 || lt.to != 4000 || lt.every != 3 {
		t.Fatalf("backend got %+v", lt)
	}
	sc := bufio.NewScanner(bytes.NewReader(a.body))
	i := 0
	for ; sc.Scan(); i++ {
		var p api.Point
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("line %d %q: %v", i, sc.Text(), err)
		}
		w := want[i]
		if i == 8 {
			w.Loss = math.NaN() // ±Inf is written as null too, and null reads back as NaN
		}
		// %v prints floats in their shortest round-trip form: equal text
		// is equal bits (and NaN equals NaN).
		if fmt.Sprintf("%+v", p) != fmt.Sprintf("%+v", w) {
			t.Fatalf("line %d: %+v, want %+v (bitwise)", i, p, w)
		}
	}
	if i != len(want) {
		t.Fatalf("%d lines, want %d", i, len(want))
	}
	if !bytes.Contains(a.body, []byte(`"test_acc":null`)) {
		t.Errorf("NaN not written as null")
	}

	// A start within the run but past its progress is fine.
	if a := h.do("GET", "/v1/runs/a/trajectory?from=10", nil); a.code != 200 {
		t.Fatalf("from=10 of 10 steps: %d %s", a.code, a.body)
	}
	wantError(t, h.do("GET", "/v1/runs/zz/trajectory?from=3", nil), 404, `run "zz"`)
	// Defaults: kind both, from 0, to 0 (latest), every 1.
	h.do("GET", "/v1/runs/a/trajectory", nil)
	if lt := h.fake.lastTraj; lt.kind != "both" || lt.from != 0 || lt.to != 0 || lt.every != 1 {
		t.Fatalf("defaults: backend got %+v", lt)
	}
	for _, c := range []struct{ q, want string }{
		{"kind=sideways", "kind"},
		{"from=-1", "from"},
		{"from=x", "from"},
		{"to=1e3", "to"},
		{"every=0", "every"},
		{"from=10&to=5", "before"},
		{"every=99999999999999999999999", "every"},
		{"from=11", "beyond the 10 steps"},
	} {
		wantError(t, h.do("GET", "/v1/runs/a/trajectory?"+c.q, nil), 400, c.want)
	}

	// An empty trajectory is an empty 200 stream.
	h.fake.points = nil
	if a := h.do("GET", "/v1/runs/a/trajectory", nil); a.code != 200 || len(a.body) != 0 {
		t.Fatalf("empty: %d %q", a.code, a.body)
	}
}

// A failure in the middle of a stream must not look like a complete answer.
func TestTrajectoryAbort(t *testing.T) {
	h := newHarness(t, Options{})
	h.json("POST", "/v1/runs", `{"name":"a","steps":10}`)
	for i := range 20000 {
		h.fake.points = append(h.fake.points, api.Point{Kind: "forward", Step: i, Loss: float64(i)})
	}
	h.fake.failAt = 15000
	resp, err := h.srv.Client().Get(h.srv.URL + "/v1/runs/a/trajectory")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatal("a stream cut by a backend error read as complete")
	}
	if !bytes.Contains(body, []byte(`{"error":"fake: store read failed at point 15000"}`)) {
		t.Errorf("no error line at the end of the cut stream: %q", body[max(0, len(body)-200):])
	}
	if !strings.Contains(h.log.String(), "store read failed") {
		t.Errorf("stream failure not logged")
	}
	// The server is still there.
	if a := h.do("GET", "/healthz", nil); a.code != 200 {
		t.Fatalf("healthz after abort: %d", a.code)
	}
}

func TestParams(t *testing.T) {
	h := newHarness(t, Options{})
	h.json("POST", "/v1/runs", `{"name":"a","steps":10}`)
	a := h.do("GET", "/v1/runs/a/params?kind=backward&step=7", nil)
	if a.code != 200 || a.header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("params: %d %q %q", a.code, a.header.Get("Content-Type"), a.body)
	}
	ts, err := export.ReadSafetensors(bytes.NewReader(a.body))
	if err != nil {
		t.Fatal(err)
	}
	// mlp:4 with in 3, out 2: 0.weight [4,3], 0.bias [4], 2.weight [2,4], 2.bias [2].
	wantNames := []string{"0.weight", "0.bias", "2.weight", "2.bias"}
	wantShapes := [][]int{{4, 3}, {4}, {2, 4}, {2}}
	byName := map[string]export.Tensor{}
	for _, x := range ts {
		byName[x.Name] = x
	}
	theta := h.fake.theta("backward", 7)
	for i, name := range wantNames {
		x, ok := byName[name]
		if !ok || fmt.Sprint(x.Shape) != fmt.Sprint(wantShapes[i]) {
			t.Fatalf("tensor %s: %+v", name, x.Shape)
		}
		for _, mt := range h.fake.model.Tensors() {
			if mt.Name != name {
				continue
			}
			for j, v := range x.Data {
				if math.Float32bits(v) != math.Float32bits(theta[mt.Offset+j]) {
					t.Fatalf("%s[%d] = %v, want %v", name, j, v, theta[mt.Offset+j])
				}
			}
		}
	}
	for _, c := range []struct{ q, want string }{
		{"step=1", "kind"},
		{"kind=both&step=1", "kind"},
		{"kind=forward", "step is required"},
		{"kind=forward&step=-1", "step"},
		{"kind=forward&step=abc", "step"},
		{"kind=forward&step=11", "beyond"},
	} {
		wantError(t, h.do("GET", "/v1/runs/a/params?"+c.q, nil), 400, c.want)
	}
}

func TestBatches(t *testing.T) {
	h := newHarness(t, Options{})
	h.json("POST", "/v1/runs", `{"name":"a","steps":10}`)
	h.fake.mu.Lock()
	st := h.fake.runs["a"]
	st.ForwardStep = 6
	h.fake.runs["a"] = st
	h.fake.mu.Unlock()
	a := h.do("GET", "/v1/runs/a/batches", nil)
	if a.code != 200 {
		t.Fatalf("batches: %d %q", a.code, a.body)
	}
	rows, cols, data, err := export.ReadNpyInt64(bytes.NewReader(a.body))
	if err != nil {
		t.Fatal(err)
	}
	_, _, want, _ := h.fake.Batches("a")
	if rows != 6 || cols != 2 || fmt.Sprint(data) != fmt.Sprint(want) {
		t.Fatalf("batches %d×%d %v, want 6×2 %v", rows, cols, data, want)
	}
}

func TestPanicRecovery(t *testing.T) {
	h := newHarness(t, Options{})
	h.json("POST", "/v1/runs", `{"name":"a","steps":10}`)
	for _, c := range []struct{ method, path, body, panicOn string }{
		{"GET", "/v1/runs", "", "List"},
		{"POST", "/v1/runs", `{"name":"b"}`, "Create"},
		{"GET", "/v1/runs/a/params?kind=forward&step=1", "", "Params"},
	} {
		h.fake.mu.Lock()
		h.fake.panicOn = c.panicOn
		h.fake.mu.Unlock()
		wantError(t, h.json(c.method, c.path, c.body), 500, "internal error")
	}
	h.fake.panicOn = ""
	if a := h.do("GET", "/healthz", nil); a.code != 200 {
		t.Fatalf("healthz after panics: %d", a.code)
	}
	if !strings.Contains(h.log.String(), "Params panics") {
		t.Errorf("panic not logged:\n%s", h.log.String())
	}
}

func TestNonFiniteStatus(t *testing.T) {
	h := newHarness(t, Options{})
	h.json("POST", "/v1/runs", `{"name":"a","steps":10}`)
	nan, inf := math.NaN(), math.Inf(1)
	h.fake.mu.Lock()
	st := h.fake.runs["a"]
	st.State, st.ForwardLoss, st.BackwardLoss, st.ETASeconds = "failed", &nan, &inf, inf
	h.fake.runs["a"] = st
	h.fake.mu.Unlock()
	got := decodeStatus(t, h.json("GET", "/v1/runs/a", ""), 200)
	if got.ForwardLoss != nil || got.BackwardLoss != nil || got.ETASeconds != 0 || got.State != "failed" {
		t.Fatalf("non-finite status: %+v", got)
	}
	if a := h.json("GET", "/v1/runs", ""); a.code != 200 {
		t.Fatalf("list with NaN: %d %s", a.code, a.body)
	}
}

func TestAuth(t *testing.T) {
	h := newHarness(t, Options{Token: "s3cret-token"})
	for _, path := range []string{"/healthz", "/metrics", "/v1/runs", "/v1/runs/a", "/nowhere"} {
		a := h.do("GET", path, nil)
		wantError(t, a, 401, "bearer token")
		if !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", path, a.header.Get("WWW-Authenticate"))
		}
	}
	for _, auth := range []string{"s3cret-token", "Bearer s3cret", "Bearer s3cret-token2", "Basic czNjcmV0LXRva2Vu", "bearer"} {
		wantError(t, h.do("GET", "/v1/runs", nil, "Authorization", auth), 401, "bearer token")
	}
	wantError(t, h.json("POST", "/v1/runs", `{"name":"a"}`), 401, "bearer token")
	if n := len(h.fake.List()); n != 0 {
		t.Fatalf("unauthenticated create went through: %d runs", n)
	}
	h.tok = "s3cret-token"
	if a := h.do("GET", "/healthz", nil); a.code != 200 {
		t.Fatalf("healthz with token: %d", a.code)
	}
	decodeStatus(t, h.json("POST", "/v1/runs", `{"name":"a"}`), 201)
}

// The server's error mapping is its own: api's sentinels, wrapped by any
// backend, map to the statuses of the API (no scheduler import needed), a
// busy backend's 503 carries Retry-After and a stopping one's does not.
func TestErrorStatusFromAPISentinels(t *testing.T) {
	for _, tc := range []struct {
		err   error
		code  int
		retry bool
	}{
		{fmt.Errorf("x: %w", api.ErrNotFound), http.StatusNotFound, false},
		{fmt.Errorf("x: %w", api.ErrInvalid), http.StatusBadRequest, false},
		{fmt.Errorf("x: %w", api.ErrConflict), http.StatusConflict, false},
		{fmt.Errorf("x: %w", api.ErrBusy), http.StatusServiceUnavailable, true},
		{fmt.Errorf("x: %w", api.ErrCorrupt), http.StatusConflict, false},
		{fmt.Errorf("x: %w", api.ErrNoSpace), http.StatusInsufficientStorage, false},
		{fmt.Errorf("x: %w", context.Canceled), http.StatusServiceUnavailable, false},
		{errors.New("disk on fire"), http.StatusInternalServerError, false},
	} {
		if got := errorStatus(tc.err); got != tc.code {
			t.Errorf("errorStatus(%v) = %d, want %d", tc.err, got, tc.code)
		}
		s := &server{log: slog.New(slog.DiscardHandler)}
		w := httptest.NewRecorder()
		s.fail(w, httptest.NewRequest("GET", "/v1/runs", nil), tc.err)
		if w.Code != tc.code || (w.Header().Get("Retry-After") != "") != tc.retry {
			t.Errorf("fail(%v): %d Retry-After %q, want %d retry=%v", tc.err, w.Code, w.Header().Get("Retry-After"), tc.code, tc.retry)
		}
	}
}
