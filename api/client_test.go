package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorded is what the fake daemon saw of the last request.
type recorded struct {
	method, path, rawQuery, auth, body string
}

// fakeDaemon answers every route of the API with canned data and records
// the request, so each client method can be checked against the contract.
func fakeDaemon(t *testing.T, rec *recorded) http.Handler {
	t.Helper()
	mux := http.NewServeMux()
	st := RunStatus{Name: "r1", State: "running", Steps: 100, ForwardStep: 10}
	js := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("GET /v1/runs", func(w http.ResponseWriter, r *http.Request) { js(w, 200, RunList{Runs: []RunStatus{st}}) })
	mux.HandleFunc("POST /v1/runs", func(w http.ResponseWriter, r *http.Request) {
		var spec RunSpec
		if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
			js(w, 400, Error{Error: "bad body"})
			return
		}
		if spec.Name == "dup" {
			js(w, 409, Error{Error: `run "dup" already exists`})
			return
		}
		s := st
		s.Name = spec.Name
		js(w, 201, s)
	})
	mux.HandleFunc("GET /v1/runs/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") != "r1" && r.PathValue("name") != "a b/c" {
			js(w, 404, Error{Error: fmt.Sprintf("run %q not found", r.PathValue("name"))})
			return
		}
		s := st
		s.Name = r.PathValue("name")
		js(w, 200, s)
	})
	mux.HandleFunc("DELETE /v1/runs/{name}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	for _, op := range []string{"pause", "resume", "reset"} {
		mux.HandleFunc("POST /v1/runs/{name}/"+op, func(w http.ResponseWriter, r *http.Request) {
			s := st
			s.State = op
			js(w, 200, s)
		})
	}
	mux.HandleFunc("POST /v1/runs/{name}/verify", func(w http.ResponseWriter, r *http.Request) {
		js(w, 200, VerifyReport{Run: r.PathValue("name"), Checkpoints: 3, Steps: 100, OK: true})
	})
	mux.HandleFunc("GET /v1/runs/{name}/trajectory", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		switch r.PathValue("name") {
		case "cut":
			enc.Encode(Point{Kind: "forward", Step: 1})
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // as the real server does on a mid-stream failure
		case "nulls":
			io.WriteString(w, `{"kind":"backward","step":3,"loss":0.5,"test_loss":null,"test_acc":null,"param_norm":2,"step_dist":null,"anchor":1,"segment":1}`+"\n")
			return
		case "inband":
			enc.Encode(Point{Kind: "forward", Step: 1})
			io.WriteString(w, `{"error":"store failed at step 2"}`+"\n")
			return
		}
		for i := 1; i <= 10000; i++ {
			enc.Encode(Point{Kind: "forward", Step: i, Loss: float64(i) / 2})
		}
	})
	mux.HandleFunc("GET /v1/runs/{name}/params", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "PARAMS "+r.URL.RawQuery)
	})
	mux.HandleFunc("GET /v1/runs/{name}/batches", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "NPY")
	})
	mux.HandleFunc("GET /v1/broken", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(502)
		io.WriteString(w, "bad gateway\nsecond line")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		*rec = recorded{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get("Authorization"), string(b)}
		mux.ServeHTTP(w, r)
	})
}

// unixServer serves h on a unix socket in a temporary directory.
func unixServer(t *testing.T, h http.Handler) string {
	t.Helper()
	// Socket paths are limited to ~108 bytes; t.TempDir() can be longer.
	dir, err := os.MkdirTemp("", "api")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return sock
}

func TestClientAddressForms(t *testing.T) {
	var rec recorded
	h := fakeDaemon(t, &rec)
	sock := unixServer(t, h)
	tcp := httptest.NewServer(h)
	defer tcp.Close()
	for _, addr := range []string{"unix:" + sock, sock, tcp.URL, strings.TrimPrefix(tcp.URL, "http://"), tcp.URL + "/"} {
		c := NewClient(addr, "")
		if err := c.Health(context.Background()); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
		if rec.path != "/healthz" {
			t.Errorf("%s: path %q", addr, rec.path)
		}
	}
}

func TestClientRoutes(t *testing.T) {
	var rec recorded
	c := NewClient(unixServer(t, fakeDaemon(t, &rec)), "s3cret")
	ctx := context.Background()
	check := func(method, path, query string) {
		t.Helper()
		if rec.method != method || rec.path != path || rec.rawQuery != query {
			t.Errorf("sent %s %s?%s, want %s %s?%s", rec.method, rec.path, rec.rawQuery, method, path, query)
		}
		if rec.auth != "Bearer s3cret" {
			t.Errorf("Authorization %q", rec.auth)
		}
	}
	l, err := c.Runs(ctx)
	if err != nil || len(l.Runs) != 1 || l.Runs[0].Name != "r1" {
		t.Errorf("Runs: %v %v", l, err)
	}
	check("GET", "/v1/runs", "")

	seed := uint64(0)
	st, err := c.CreateRun(ctx, RunSpec{Name: "new", Preset: "quadratic", Seed: &seed})
	if err != nil || st.Name != "new" {
		t.Errorf("CreateRun: %v %v", st, err)
	}
	check("POST", "/v1/runs", "")
	if !strings.Contains(rec.body, `"seed":0`) || !strings.Contains(rec.body, `"preset":"quadratic"`) {
		t.Errorf("CreateRun body %s: an explicit zero seed must be sent", rec.body)
	}

	if st, err := c.Status(ctx, "a b/c"); err != nil || st.Name != "a b/c" {
		t.Errorf("Status: %v %v", st, err)
	}
	check("GET", "/v1/runs/a%20b%2Fc", "")

	if st, err := c.Pause(ctx, "r1"); err != nil || st.State != "pause" {
		t.Errorf("Pause: %v %v", st, err)
	}
	check("POST", "/v1/runs/r1/pause", "")
	if st, err := c.Resume(ctx, "r1"); err != nil || st.State != "resume" {
		t.Errorf("Resume: %v %v", st, err)
	}
	check("POST", "/v1/runs/r1/resume", "")
	if _, err := c.Reset(ctx, "r1", ResetRequest{At: 1000, From: "forward"}); err != nil {
		t.Error(err)
	}
	check("POST", "/v1/runs/r1/reset", "")
	if rec.body != `{"at":1000,"from":"forward"}` {
		t.Errorf("Reset body %s", rec.body)
	}
	if err := c.Delete(ctx, "r1"); err != nil {
		t.Error(err)
	}
	check("DELETE", "/v1/runs/r1", "")
	if rep, err := c.Verify(ctx, "r1"); err != nil || !rep.OK || rep.Steps != 100 {
		t.Errorf("Verify: %v %v", rep, err)
	}
	check("POST", "/v1/runs/r1/verify", "")

	rc, err := c.Params(ctx, "r1", "backward", 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "PARAMS kind=backward&step=0" {
		t.Errorf("Params body %q", b)
	}
	check("GET", "/v1/runs/r1/params", "kind=backward&step=0")
	rc, err = c.Batches(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(rc)
	rc.Close()
	if string(b) != "NPY" {
		t.Errorf("Batches body %q", b)
	}
	check("GET", "/v1/runs/r1/batches", "")
}

func TestClientTrajectory(t *testing.T) {
	var rec recorded
	c := NewClient(unixServer(t, fakeDaemon(t, &rec)), "")
	ctx := context.Background()
	n := 0
	err := c.Trajectory(ctx, "r1", TrajectoryQuery{Kind: "forward", From: 5, To: 20, Every: 3}, func(p Point) error {
		n++
		if p.Step != n || p.Loss != float64(n)/2 || p.Kind != "forward" {
			return fmt.Errorf("point %d: %+v", n, p)
		}
		return nil
	})
	if err != nil || n != 10000 {
		t.Fatalf("streamed %d points: %v", n, err)
	}
	if rec.rawQuery != "every=3&from=5&kind=forward&to=20" {
		t.Errorf("query %q", rec.rawQuery)
	}
	// The callback's error stops the stream and comes back unchanged.
	stop := errors.New("stop")
	n = 0
	err = c.Trajectory(ctx, "r1", TrajectoryQuery{}, func(Point) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Errorf("stop: n=%d err=%v", n, err)
	}
	if rec.rawQuery != "" {
		t.Errorf("zero query sent %q", rec.rawQuery)
	}
	// A stream the daemon aborts is an error, not a short trajectory.
	n = 0
	err = c.Trajectory(ctx, "cut", TrajectoryQuery{}, func(Point) error { n++; return nil })
	if err == nil || n != 1 {
		t.Errorf("cut stream: n=%d err=%v", n, err)
	}
	var got []Point
	if err := c.Trajectory(ctx, "nulls", TrajectoryQuery{}, func(p Point) error { got = append(got, p); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Loss != 0.5 || !math.IsNaN(got[0].TestAcc) || !math.IsNaN(got[0].TestLoss) ||
		!math.IsNaN(got[0].StepDist) || got[0].ParamNorm != 2 || got[0].Anchor != 1 || got[0].Segment != 1 || got[0].Kind != "backward" {
		t.Errorf("null values: %+v", got)
	}
	err = c.Trajectory(ctx, "inband", TrajectoryQuery{}, func(Point) error { return nil })
	var se *StatusError
	if !errors.As(err, &se) || se.Message != "store failed at step 2" {
		t.Errorf("in-band error: %v", err)
	}
}

func TestClientStatusErrors(t *testing.T) {
	var rec recorded
	c := NewClient(unixServer(t, fakeDaemon(t, &rec)), "")
	ctx := context.Background()
	_, err := c.Status(ctx, "nope")
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 404 || err.Error() != `run "nope" not found` || !errors.Is(err, ErrNotFound) {
		t.Errorf("404: %v", err)
	}
	_, err = c.CreateRun(ctx, RunSpec{Name: "dup"})
	if !errors.Is(err, ErrConflict) || errors.Is(err, ErrNotFound) || err.Error() != `run "dup" already exists` {
		t.Errorf("409: %v", err)
	}
	// A non-JSON error body gives its first line, never several lines.
	_, err = c.do(ctx, "GET", "/v1/broken", nil, nil)
	if !errors.As(err, &se) || se.Code != 502 || err.Error() != "bad gateway" {
		t.Errorf("502: %v", err)
	}
	// Unknown routes of the fake (mux 404 text) still give one line.
	_, err = c.Params(ctx, "r1", "forward", 3)
	if err != nil {
		t.Errorf("params: %v", err)
	}
}

func TestClientUnreachable(t *testing.T) {
	dir, err := os.MkdirTemp("", "api")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "none.sock")
	// A TCP port with nothing listening: bind, note, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp := ln.Addr().String()
	ln.Close()
	for _, addr := range []string{"unix:" + sock, sock, tcp} {
		_, err := NewClient(addr, "").Runs(context.Background())
		var ue *UnreachableError
		if !errors.As(err, &ue) || !errors.Is(err, ErrUnreachable) {
			t.Fatalf("%s: err %v (%T), want *UnreachableError", addr, err, err)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "replayd is not running at "+addr+": start it with `replayd") ||
			strings.Contains(msg, "\n") {
			t.Errorf("%s: message %q", addr, msg)
		}
	}
}

func TestDefaultDataDirAndAddr(t *testing.T) {
	t.Setenv("REPLAYD_ADDR", "")
	t.Setenv("REPLAYD_DATA_DIR", "/srv/replay")
	t.Setenv("XDG_STATE_HOME", "/xdg")
	t.Setenv("HOME", "/home/u")
	if d, _ := DefaultDataDir(); d != "/srv/replay" {
		t.Errorf("REPLAYD_DATA_DIR: %s", d)
	}
	if a := DefaultAddr(); a != "unix:/srv/replay/replayd.sock" {
		t.Errorf("addr %s", a)
	}
	t.Setenv("REPLAYD_DATA_DIR", "")
	if d, _ := DefaultDataDir(); d != "/xdg/replayd" {
		t.Errorf("XDG_STATE_HOME: %s", d)
	}
	t.Setenv("XDG_STATE_HOME", "")
	if d, _ := DefaultDataDir(); d != "/home/u/.local/state/replayd" {
		t.Errorf("HOME: %s", d)
	}
	if a := DefaultAddr(); a != "unix:/home/u/.local/state/replayd/replayd.sock" {
		t.Errorf("addr %s", a)
	}
	t.Setenv("REPLAYD_ADDR", "127.0.0.1:7070")
	if a := DefaultAddr(); a != "127.0.0.1:7070" {
		t.Errorf("REPLAYD_ADDR: %s", a)
	}
	// The hint for the default address is plain `replayd`.
	t.Setenv("REPLAYD_ADDR", "")
	e := &UnreachableError{Addr: DefaultAddr()}
	if !strings.Contains(e.Error(), "start it with `replayd`,") {
		t.Errorf("default hint: %s", e.Error())
	}
}

// TestClientBusyRetries: a 503 with Retry-After (every recomputation slot
// busy) is asked again after the time it names, with the same body, until
// the daemon answers or BusyWait is spent; a 503 without Retry-After (a
// full disk, a stopping daemon) is not retried.
func TestClientBusyRetries(t *testing.T) {
	var calls, bodies int
	busyFor := 2
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/runs", func(w http.ResponseWriter, r *http.Request) {
		calls++
		if b, _ := io.ReadAll(r.Body); strings.Contains(string(b), `"name":"r"`) {
			bodies++
		}
		if calls <= busyFor {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":"all 1 slots for recomputations are busy, try again"}`)
			return
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"name":"r","state":"running"}`)
	})
	mux.HandleFunc("GET /v1/runs/full", func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"error":"disk full"}`)
	})
	c := NewClient(unixServer(t, mux), "")
	ctx := context.Background()
	st, err := c.CreateRun(ctx, RunSpec{Name: "r"})
	if err != nil || st.Name != "r" || calls != 3 || bodies != 3 {
		t.Fatalf("after two busy answers: %+v, %v; %d calls, %d with the body", st, err, calls, bodies)
	}
	calls, busyFor = 0, 100
	c.BusyWait = 0
	_, err = c.CreateRun(ctx, RunSpec{Name: "r"})
	var se *StatusError
	if !errors.Is(err, ErrBusy) || !errors.As(err, &se) || se.RetryAfter.Seconds() != 1 || calls != 1 {
		t.Fatalf("BusyWait 0: %v (%d calls)", err, calls)
	}
	calls = 0
	c.BusyWait = DefaultBusyWait
	_, err = c.Status(ctx, "full")
	if errors.Is(err, ErrBusy) || err == nil || err.Error() != "disk full" || calls != 1 {
		t.Fatalf("503 without Retry-After: %v (%d calls)", err, calls)
	}
}
