// Package fmnistcopy writes copies of the Fashion-MNIST IDX files for
// tests that need a data set that differs from the installed one in a
// known way (the data hash, a worker's refusal, a run's data changed under
// it). Test support only: nothing outside tests imports it.
package fmnistcopy

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TrainImages is the base name of the training images' IDX file.
const TrainImages = "train-images-idx3-ubyte"

// Copy writes the four IDX files of src (gzip-compressed, as Debian
// installs them) into a new temporary directory of tb, uncompressed (the
// loader reads both forms), with the byte at offset flip of the training
// images incremented when flip ≥ 0: the same data set but for one pixel.
// It returns the directory.
func Copy(tb testing.TB, src string, flip int) string {
	tb.Helper()
	dst := tb.TempDir()
	for _, base := range []string{TrainImages, "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"} {
		f, err := os.Open(filepath.Join(src, base+".gz"))
		if err != nil {
			tb.Fatal(err)
		}
		gz, err := gzip.NewReader(f)
		if err != nil {
			f.Close()
			tb.Fatal(err)
		}
		b, err := io.ReadAll(gz)
		f.Close()
		if err != nil {
			tb.Fatal(err)
		}
		if flip >= 0 && base == TrainImages {
			b[flip]++
		}
		if err := os.WriteFile(filepath.Join(dst, base), b, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return dst
}
