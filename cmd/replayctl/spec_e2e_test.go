package main

import (
	"encoding/csv"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// TestE2EPresetUndone: through the binaries, --reset-at none removes
// fmnist-mlp's reset at 1000, --eval-every 0 measures losses at the last
// step only, --eval-size 0 and --backward-from 0 are kept as values (issue
// 9 defect 4: today they are refused or read as "unset").
func TestE2EPresetUndone(t *testing.T) {
	d := startDaemon(t)
	start := func(args ...string) api.RunStatus {
		t.Helper()
		out := d.ctl(t, append([]string{"-o", "json", "run", "start", "--preset", "fmnist-mlp", "--model", "mlp:8",
			"--steps", "1050", "--window", "70"}, args...)...).ok(t, "run start "+strings.Join(args, " "))
		var l api.RunList
		if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Runs) != 1 {
			t.Fatalf("run start: %v\n%s", err, out)
		}
		return l.Runs[0]
	}
	// Control: the preset's reset at 1000 stands without the flag.
	ctl := start("--name", "with-reset")
	if !slices.Equal(ctl.PendingReset, []int{1000}) || !slices.Equal(ctl.Spec.ResetAt, []int{1000}) || *ctl.Spec.EvalEvery != 10 {
		t.Errorf("preset as is: pending %v, spec reset_at %v eval_every %v", ctl.PendingReset, ctl.Spec.ResetAt, *ctl.Spec.EvalEvery)
	}
	d.ctl(t, "delete", "with-reset").ok(t, "delete")

	st := start("--name", "fm", "--reset-at", "none", "--eval-every", "0", "--eval-size", "0", "--backward-from", "0")
	sp := st.Spec
	if len(st.PendingReset) != 0 || sp.ResetAt == nil || len(sp.ResetAt) != 0 || *sp.EvalEvery != 0 || *sp.EvalSize != 0 || *sp.BackwardFrom != 0 {
		t.Fatalf("undone preset: pending %v, spec reset_at %v eval_every %d eval_size %d backward_from %d",
			st.PendingReset, sp.ResetAt, *sp.EvalEvery, *sp.EvalSize, *sp.BackwardFrom)
	}
	d.ctl(t, "wait", "--run", "fm", "--timeout", "2m").ok(t, "wait")
	out := d.ctl(t, "trajectory", "--run", "fm", "-o", "csv").ok(t, "trajectory")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(recs) < 2 || recs[0][2] != "loss" || recs[0][7] != "anchor" {
		t.Fatalf("trajectory csv: %v\n%.300s", err, out)
	}
	measured := map[string][]int{}
	anchors := map[int]bool{}
	for _, r := range recs[1:] {
		step, _ := strconv.Atoi(r[1])
		if l, err := strconv.ParseFloat(r[2], 64); err == nil && !math.IsNaN(l) {
			measured[r[0]] = append(measured[r[0]], step)
		}
		if r[0] == "backward" {
			a, _ := strconv.Atoi(r[7])
			anchors[a] = true
		}
	}
	if !slices.Equal(measured["forward"], []int{1050}) || !slices.Equal(measured["backward"], []int{1050}) {
		t.Errorf("losses measured at %v, want step 1050 only", measured)
	}
	// Window 70 and no manual reset: anchors at multiples of 70 only (1000 is not).
	for a := range anchors {
		if a%70 != 0 {
			t.Errorf("backward anchor at %d: the preset's reset was applied", a)
		}
	}
}
