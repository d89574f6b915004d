package ckpt

import (
	"os"
	"path/filepath"
	"testing"
)

// Issue 10, case 7: a store directory that existed 0755 with 0644 files
// (what Badger creates under the usual umask) is made 0700 with 0600 files
// at Open; the runs' parameters are the user's data.
func TestStoreMadePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, err := Open(testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRun(testConfig("p", 300), testTheta0(1, 300)); err != nil {
		t.Fatal(err)
	}
	must(t, s.Close())
	must(t, os.Chmod(dir, 0o755))
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		must(t, os.Chmod(filepath.Join(dir, e.Name()), 0o644))
	}
	openTest(t, dir) // Open makes the modes private; the cleanup closes it
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("store directory mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	ents, _ = os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, want no access for others", e.Name(), fi.Mode().Perm())
		}
	}
}
