package pyworker

import (
	"os"
	"path/filepath"
	"testing"
)

// TestExtract: the embedded files land, private, under a directory named
// by their hash; a second extraction reuses it.
func TestExtract(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "cache")
	dir, err := Extract(cache)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(dir) != "pyworker-"+Hash() {
		t.Fatalf("extracted to %s, want a directory named by the hash %s", dir, Hash())
	}
	n := 0
	for _, name := range names() {
		want, _ := files.ReadFile(name)
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != string(want) {
			t.Fatalf("%s: %v (%d bytes, want %d)", name, err, len(got), len(want))
		}
		n++
	}
	if n == 0 {
		t.Fatal("nothing embedded")
	}
	for _, d := range []string{cache, dir, filepath.Join(dir, Package)} {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v, mode %v: want 0700", d, err, fi.Mode().Perm())
		}
	}
	again, err := Extract(cache)
	if err != nil || again != dir {
		t.Fatalf("second extraction: %s, %v", again, err)
	}
	entries, _ := os.ReadDir(cache)
	if len(entries) != 1 {
		t.Fatalf("%d entries in the cache, want 1 (no temporary left)", len(entries))
	}
}
