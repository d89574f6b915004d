package nnfamily

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/replay-sgd/replay/family"
	"github.com/replay-sgd/replay/nn"
)

// copyIDX writes the Fashion-MNIST IDX files of src into a new directory,
// uncompressed (the loader reads both forms), with the byte at offset
// flip of the training images (if ≥ 0) incremented: the same data set but
// for one pixel.
func copyIDX(t *testing.T, src string, flip int) string {
	t.Helper()
	dst := t.TempDir()
	for _, base := range []string{"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"} {
		f, err := os.Open(filepath.Join(src, base+".gz"))
		if err != nil {
			t.Fatal(err)
		}
		gz, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(gz)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if flip >= 0 && base == "train-images-idx3-ubyte" {
			b[flip]++
		}
		if err := os.WriteFile(filepath.Join(dst, base), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

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
	fm.DataPath = copyIDX(t, nn.DefaultFashionMNISTDir, -1)
	if h := dataHashOf(t, fm); h != orig {
		t.Errorf("an uncompressed copy hashes to %s, the original to %s", h, orig)
	}
	fm.DataPath = copyIDX(t, nn.DefaultFashionMNISTDir, 16+60000*784-1)
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
