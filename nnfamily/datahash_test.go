package nnfamily

import (
	"testing"
	"time"

	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/internal/fmnistcopy"
	"github.com/replay-sgd/replay/nn"
)

func dataHashOf(t *testing.T, s family.Spec) string {
	t.Helper()
	d, err := Family{}.LoadData(s)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	h, err := Family{}.DataHash(s, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s %s: %s (hashed in %v)", s.Dataset, s.DataPath, h, time.Since(start))
	return h
}

// TestDataHash: the hash is the content's, not the files': the gzipped
// originals and an uncompressed copy agree, one changed pixel (the last
// byte of the training images) or another seed of a synthetic data set
// changes it.
func TestDataHash(t *testing.T) {
	fm := family.Spec{Dataset: "fashion-mnist", DataPath: nn.DefaultFashionMNISTDir}
	orig := dataHashOf(t, fm)
	fm.DataPath = fmnistcopy.Copy(t, nn.DefaultFashionMNISTDir, -1)
	if h := dataHashOf(t, fm); h != orig {
		t.Errorf("an uncompressed copy hashes to %s, the original to %s", h, orig)
	}
	fm.DataPath = fmnistcopy.Copy(t, nn.DefaultFashionMNISTDir, 16+60000*784-1)
	if h := dataHashOf(t, fm); h == orig {
		t.Errorf("one changed pixel: the same hash %s", h)
	}
	a := dataHashOf(t, family.Spec{Dataset: "regression-sin", Seed: 1})
	if b := dataHashOf(t, family.Spec{Dataset: "regression-sin", Seed: 1}); a != b {
		t.Errorf("regression-sin seed 1: %s, then %s", a, b)
	}
	if b := dataHashOf(t, family.Spec{Dataset: "regression-sin", Seed: 2}); a == b {
		t.Errorf("regression-sin: seeds 1 and 2 hash alike (%s)", a)
	}
	if b := dataHashOf(t, family.Spec{Dataset: "regression-x2", Seed: 1}); a == b {
		t.Errorf("regression-sin and regression-x2 hash alike (%s)", a)
	}
}
