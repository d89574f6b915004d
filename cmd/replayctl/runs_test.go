package main

import (
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
)

func TestRuns(t *testing.T) {
	f := newFake(t, sampleRun("b"), sampleRun("a"))
	out, _, err := f.cli("runs")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "a ") || !strings.Contains(lines[1], "mlp:32") ||
		!strings.Contains(lines[1], "fashion-mnist") || !strings.Contains(lines[1], "1200/5000") {
		t.Errorf("table:\n%s", out)
	}
	out, _, err = f.cli("runs", "-o", "json")
	var l api.RunList
	if err != nil || json.Unmarshal([]byte(out), &l) != nil || len(l.Runs) != 2 || l.Runs[0].Spec.Model != "mlp:32" {
		t.Errorf("json: %v\n%s", err, out)
	}
	out, _, err = f.cli("runs", "-o", "csv")
	recs, cerr := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || cerr != nil || len(recs) != 3 || recs[0][0] != "name" || recs[2][0] != "b" || recs[1][3] != "mlp:32" {
		t.Errorf("csv: %v %v\n%s", err, cerr, out)
	}
	out, _, err = newFake(t).cli("runs")
	if err != nil || !strings.Contains(out, "no runs") {
		t.Errorf("empty: %v %s", err, out)
	}
}
