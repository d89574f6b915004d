package scheduler

import (
	"context"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// TestCreateRecordsDataHash: a run's stored configuration carries its data
// set's content hash, and a Computer (a remote worker's side) loading the
// same data computes the same; another seed of a synthetic data set (other
// data) hashes otherwise.
func TestCreateRecordsDataHash(t *testing.T) {
	h := startHarness(t, openStore(t, t.TempDir()), testOptions())
	spec := api.RunSpec{Name: "h", Dataset: "regression-sin", Model: "mlp:3", Loss: "mse", LR: 0.01, Batch: 4, Steps: 5, Seed: api.Ptr(uint64(7))}
	h.create(spec)
	cfg, _, err := h.store.Run("h")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cfg.DataHash, "sha256:") {
		t.Fatalf("stored DataHash %q, want sha256:…", cfg.DataHash)
	}
	c := NewComputer(testOptions())
	got, err := c.DataHash(context.Background(), cfg)
	if err != nil || got != cfg.DataHash {
		t.Errorf("Computer.DataHash = %q, %v; the run's %q", got, err, cfg.DataHash)
	}
	cfg.Seed = 8
	if other, err := c.DataHash(context.Background(), cfg); err != nil || other == got {
		t.Errorf("seed 8: DataHash = %q, %v; seed 7's %q", other, err, got)
	}
}
