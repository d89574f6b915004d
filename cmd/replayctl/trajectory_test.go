package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
)

func smallRun() api.RunStatus {
	st := sampleRun("r")
	st.ForwardStep, st.BackwardStep = 6, 4
	return st
}

func TestTrajectoryCSV(t *testing.T) {
	f := newFake(t, smallRun())
	out, _, err := f.cli("trajectory", "-o", "csv")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(recs[0][:8], ","); got != "kind,step,loss,test_loss,test_acc,param_norm,step_dist,anchor" {
		t.Errorf("header %q", got)
	}
	if len(recs) != 1+6+4 {
		t.Fatalf("%d rows", len(recs))
	}
	// Values round-trip exactly (shortest float form).
	want := defaultPoints(&api.RunStatus{ForwardStep: 6, BackwardStep: 4})
	for i, p := range want {
		r := recs[i+1]
		loss, _ := strconv.ParseFloat(r[2], 64)
		if r[0] != p.Kind || r[1] != strconv.Itoa(p.Step) || loss != p.Loss || r[7] != strconv.Itoa(p.Anchor) {
			t.Errorf("row %d %v, want %+v", i, r, p)
		}
	}
	if f.lastRequest() != "GET /v1/runs/r/trajectory?every=1&kind=both" {
		t.Errorf("request %s", f.lastRequest())
	}
	// Query flags are passed through.
	if _, _, err := f.cli("trajectory", "--kind", "backward", "--from", "2", "--to", "3", "--every", "1", "-o", "csv"); err != nil {
		t.Fatal(err)
	}
	if f.lastRequest() != "GET /v1/runs/r/trajectory?every=1&from=2&kind=backward&to=3" {
		t.Errorf("request %s", f.lastRequest())
	}
}

func TestTrajectoryJSONAndNaN(t *testing.T) {
	f := newFake(t, smallRun())
	f.points = func(string) []api.Point {
		return []api.Point{
			{Kind: "forward", Step: 1, Loss: 0.25, TestLoss: 0.5, TestAcc: math.NaN(), ParamNorm: 3, StepDist: 0.125},
			{Kind: "backward", Step: 1, Loss: math.Inf(1), TestLoss: 0.5, TestAcc: 0.75, Anchor: 0},
		}
	}
	out, _, err := f.cli("trajectory", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var pts []map[string]any
	if err := json.Unmarshal([]byte(out), &pts); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(pts) != 2 || pts[0]["kind"] != "forward" || pts[0]["test_acc"] != nil || pts[0]["step_dist"] != 0.125 ||
		pts[1]["loss"] != nil || pts[1]["test_acc"] != 0.75 {
		t.Errorf("json %v", pts)
	}
	for _, k := range []string{"kind", "step", "loss", "test_loss", "test_acc", "param_norm", "step_dist", "anchor"} {
		if _, ok := pts[0][k]; !ok {
			t.Errorf("json lacks %q", k)
		}
	}
	out, _, _ = f.cli("trajectory", "-o", "csv")
	if !strings.Contains(out, "forward,1,0.25,0.5,NaN,3,0.125,0") {
		t.Errorf("csv NaN:\n%s", out)
	}
	out, _, _ = f.cli("trajectory")
	if !strings.Contains(out, "KIND") || !strings.Contains(out, "backward") {
		t.Errorf("table:\n%s", out)
	}
	// Empty range: valid empty outputs.
	f.points = func(string) []api.Point { return nil }
	for format, want := range map[string]string{"json": "[]\n", "csv": "kind,step,loss,test_loss,test_acc,param_norm,step_dist,anchor,segment\n"} {
		out, _, err := f.cli("trajectory", "-o", format)
		if err != nil || out != want {
			t.Errorf("%s empty: %v %q", format, err, out)
		}
	}
}

func TestTrajectoryErrors(t *testing.T) {
	f := newFake(t, smallRun())
	for _, args := range [][]string{{"--kind", "sideways"}, {"--every", "0"}, {"--from", "-1"}, {"--from", "5", "--to", "2"}} {
		_, _, err := f.cli(append([]string{"trajectory"}, args...)...)
		if !errors.Is(err, errUsage) {
			t.Errorf("%q: %v", args, err)
		}
		oneLine(t, err)
	}
	_, _, err := f.cli("trajectory", "--run", "nope")
	oneLine(t, err)
	if err.Error() != `run "nope" not found` {
		t.Errorf("%v", err)
	}
}

// signalWriter records bytes and closes reached once it holds n of them.
type signalWriter struct {
	mu      sync.Mutex
	b       strings.Builder
	n       int
	reached chan struct{}
	once    sync.Once
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if w.b.Len() >= w.n {
		w.once.Do(func() { close(w.reached) })
	}
	return len(p), nil
}

// TestTrajectoryStreams checks that rows reach stdout while the daemon is
// still sending: the fake stops after 20 000 points until the CLI has
// written most of them. A CLI that buffered the whole trajectory would
// never write them, and the test fails at the deadline.
func TestTrajectoryStreams(t *testing.T) {
	const n, held = 30000, 20000
	st := sampleRun("r")
	f := newFake(t, st)
	f.points = func(string) []api.Point {
		ps := make([]api.Point, n)
		for i := range ps {
			ps[i] = api.Point{Kind: "forward", Step: i + 1, Loss: 1}
		}
		return ps
	}
	release := make(chan struct{})
	f.b.Locked(func() { f.b.Hold, f.b.Release = held, release })
	w := &signalWriter{n: held * len("forward,1,1,0,0,0,0,0,0\n") * 9 / 10, reached: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- run([]string{"trajectory", "-o", "csv", "--addr", f.addr()}, w, &strings.Builder{})
	}()
	select {
	case <-w.reached:
	case <-time.After(time.Minute): // a hang guard: a buffering CLI never gets here
		close(release)
		t.Fatal("no output while the daemon held the stream: trajectory buffers everything")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(w.b.String(), "\n"); lines != n+1 {
		t.Errorf("%d lines, want %d", lines, n+1)
	}
}
