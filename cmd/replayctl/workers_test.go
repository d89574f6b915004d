package main

import (
	"encoding/csv"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/internal/fakebackend"
	"github.com/replay-sgd/replay/server"
)

// workersDaemon is replayd's HTTP handler over an in-memory backend whose
// GET /v1/workers answers l.
func workersDaemon(t *testing.T, l api.WorkerList) string {
	t.Helper()
	srv := httptest.NewServer(server.New(fakebackend.New(), server.Options{Workers: func() api.WorkerList { return l }}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestWorkersRefuses: the table has a REFUSES column (- when none) and a
// line per stuck run below it; CSV ends with a refuses column; JSON
// carries both as served.
func TestWorkersRefuses(t *testing.T) {
	seen := time.Now().Add(-time.Second)
	why := "no worker can take its jobs: its data set differs (or cannot be loaded) on every worker (odd); start a worker with the run's data (data hash sha256:ab)"
	addr := workersDaemon(t, api.WorkerList{Remote: true,
		Workers: []api.WorkerStatus{
			{Name: "good", Fingerprint: "fp", Slots: 1, Done: 3, LastSeen: seen, State: "ok"},
			{Name: "odd", Fingerprint: "fp", Slots: 1, LastSeen: seen, State: "ok", Refuses: []string{"f", "g"}},
		},
		Stuck: []api.StuckRun{{Run: "f", Reason: why}}})
	out, _, err := runCLI("workers", "--addr", addr)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 4 || !strings.HasSuffix(lines[0], "STATE  REFUSES") || !strings.HasSuffix(lines[1], "ok     -") ||
		!strings.HasSuffix(lines[2], "ok     f,g") || lines[3] != "f: backward waits: "+why {
		t.Errorf("table:\n%s", out)
	}
	out, _, err = runCLI("workers", "-o", "csv", "--addr", addr)
	recs, cerr := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || cerr != nil || len(recs) != 3 || recs[0][8] != "refuses" || recs[1][8] != "" || recs[2][8] != "f g" {
		t.Errorf("csv: %v %v\n%s", err, cerr, out)
	}
	out, _, err = runCLI("workers", "-o", "json", "--addr", addr)
	var l api.WorkerList
	if err != nil || json.Unmarshal([]byte(out), &l) != nil || len(l.Stuck) != 1 || l.Stuck[0].Reason != why || len(l.Workers[1].Refuses) != 2 {
		t.Errorf("json: %v\n%s", err, out)
	}
}

// TestStatusWaiting: a run whose backward jobs wait gets one line under
// the status table, and a marker in `replayctl runs`; a run that does not
// wait neither.
func TestStatusWaiting(t *testing.T) {
	a, b := sampleRun("a"), sampleRun("b")
	a.Waiting = "no remote worker connected: start `replayd worker --nats nats://127.0.0.1:4222`"
	f := newFake(t, a, b)
	for _, args := range [][]string{{"status"}, {"status", "a"}} {
		out, _, err := f.cli(args...)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(out, "backward waits") != 1 || !strings.Contains(out, "\na: backward waits: "+a.Waiting+"\n") {
			t.Errorf("%v: want one waiting line, of a:\n%s", args, out)
		}
	}
	out, _, err := f.cli("runs")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "running (backward waits)") || strings.Contains(lines[2], "waits") {
		t.Errorf("runs: want a (only) marked:\n%s", out)
	}
}
