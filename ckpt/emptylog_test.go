package ckpt

import (
	"os"
	"path/filepath"
	"testing"
)

// A process killed between Badger's creating a memtable log or a value-log
// file and extending it leaves the file empty; Badger refuses to reopen a
// store with such a file ("Create a new file"). Open removes them (they hold
// nothing) and the store opens with its data.
func TestEmptyLogsLeftByACrash(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, err := Open(testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRun(testConfig("e", 300), testTheta0(1, 300)); err != nil {
		t.Fatal(err)
	}
	must(t, s.Close())
	// The next files Badger would have created.
	for _, name := range []string{"00099.mem", "000099.vlog"} {
		must(t, os.WriteFile(filepath.Join(dir, name), nil, 0o600))
	}
	s = openTest(t, dir)
	if names, err := s.Runs(); err != nil || len(names) != 1 || names[0] != "e" {
		t.Fatalf("runs after reopening: %v, %v", names, err)
	}
	for _, name := range []string{"00099.mem", "000099.vlog"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && fi.Size() == 0 {
			t.Errorf("%s still empty after Open", name)
		}
	}
}
