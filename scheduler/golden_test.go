package scheduler

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/replay-sgd/replay/api"
	"github.com/replay-sgd/replay/ckpt"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the golden files in testdata/")

// checkGolden compares got with testdata/<name>.golden (or writes it with
// -rewrite; review the diff before committing it).
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *rewrite {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -rewrite to create it)", err)
	}
	if string(want) != got {
		t.Errorf("event log differs from %s (rerun with -rewrite and review the diff):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// The event logs of single quadratic runs: the order of events of one run
// is deterministic (anchors are set by one goroutine in step order), and so
// are the losses an adaptive decision compares.

func TestGoldenWindowed(t *testing.T) {
	h := startHarness(t, openStore(t, t.TempDir()), testOptions())
	h.create(api.RunSpec{Preset: "quadratic", Name: "win", Steps: 40, Window: 8})
	h.wait("win", ckpt.StateDone)
	h.stop()
	checkGolden(t, "windowed", h.events.String())
}

func TestGoldenManual(t *testing.T) {
	h := startHarness(t, openStore(t, t.TempDir()), testOptions())
	h.create(api.RunSpec{Preset: "quadratic", Name: "man", Steps: 40, Window: 100, ResetAt: []int{15}, ResetFrom: FromForward})
	h.wait("man", ckpt.StateDone)
	if _, err := h.s.Reset("man", api.ResetRequest{At: 10}); err != nil {
		t.Fatal(err)
	}
	h.wait("man", ckpt.StateDone)
	if _, err := h.s.Reset("man", api.ResetRequest{At: 41}); !isErr(err, ErrInvalid) {
		t.Fatalf("reset beyond the steps: %v", err)
	}
	if _, err := h.s.Reset("man", api.ResetRequest{At: 25, From: FromForward}); err != nil {
		t.Fatal(err)
	}
	h.wait("man", ckpt.StateDone)
	h.stop()
	checkGolden(t, "manual", h.events.String())
}

func TestGoldenAdaptive(t *testing.T) {
	h := startHarness(t, openStore(t, t.TempDir()), testOptions())
	h.create(api.RunSpec{Preset: "quadratic", Name: "ada", Steps: 60, Window: 10, ResetPolicy: PolicyImprove, ResetHorizon: 5, ResetAt: []int{33}, ResetFrom: FromForward})
	h.wait("ada", ckpt.StateDone)
	checkGolden(t, "adaptive", h.events.String())
	// Every reset but the one at 50 was rejected: the stored trajectory is
	// the full backward one up to 50, then anchored at θ_50 (forward). The
	// oracle with exactly that anchor agrees bit for bit (norms, steps
	// distances, anchors), so the trial's winning side was committed whole.
	o := newOracle(t, h.store, "ada")
	o.cfg.Strategy, o.cfg.ResetAt = StrategyFull, []int{50}
	s := o.strategy(t)
	dst, prev := make([]float32, 1), make([]float32, 1)
	copy(prev, o.theta0)
	for _, m := range metricsOf(t, h.store, "ada", "backward", 0) {
		res, err := s.Backward(dst, m.Step)
		if err != nil {
			t.Fatal(err)
		}
		if m.Anchor != res.Anchor || !sameBits(m.ParamNorm, norm(dst)) {
			t.Fatalf("step %d: stored %+v, oracle anchor %d norm %v", m.Step, m, res.Anchor, norm(dst))
		}
		if m.Step != 51 && !sameBits(m.StepDist, dist(dst, prev)) {
			t.Fatalf("step %d: stored distance %v, oracle %v", m.Step, m.StepDist, dist(dst, prev))
		}
		if m.Step%10 != 0 && m.Step > 10 && m.Step <= 15 && m.Loss != m.Loss {
			t.Fatalf("step %d of a trial horizon has no loss", m.Step)
		}
		copy(prev, dst)
	}
}
