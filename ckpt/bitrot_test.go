package ckpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// paramBytes is the stored form of v: raw little-endian float32.
func paramBytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// flipStored finds the one place on disk where the parameter vector v is
// stored, flips one byte of it and returns the file it changed.
func flipStored(t *testing.T, dir string, v []float32, at int) string {
	t.Helper()
	needle := paramBytes(v[:64])
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	var hit string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(data, needle)
		if i < 0 {
			continue
		}
		if hit != "" || bytes.Contains(data[i+1:], needle) {
			t.Fatalf("vector stored more than once (%s, %s)", hit, f)
		}
		hit = f
		data[i+4*at] ^= 0x40
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if hit == "" {
		t.Fatal("vector not found on disk")
	}
	return hit
}

// newestVlog is the value-log file Badger writes to (and checks at open).
func newestVlog(t *testing.T, dir string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
	sort.Strings(files) // fixed-width file ids
	return files[len(files)-1]
}

// TestBitRot flips a byte of a stored checkpoint and of a stored backward
// iterate on disk: reads fail with a CorruptionError naming them, and Verify
// reports both while still checking the rest of the run.
func TestBitRot(t *testing.T) {
	dir := t.TempDir()
	const dim = 50_000 // 200 KB per vector
	s, err := Open(testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRun(testConfig("rot", dim), testTheta0(1, dim)); err != nil {
		t.Fatal(err)
	}
	appendSteps(t, s, "rot", 1, 1, 30)
	for _, k := range []int{10, 20, 30} {
		if err := s.PutCheckpoint("rot", k, forwardTo(1, dim, k)); err != nil {
			t.Fatal(err)
		}
	}
	bwd := testTheta0(99, dim)
	if err := s.PutBackward("rot", []BackwardResult{{Segment: 0, Step: 5, Theta: bwd}}, nil); err != nil {
		t.Fatal(err)
	}
	// More data, so that the damaged vectors are not in the newest value-log
	// file (Badger truncates that one at its first bad entry on open; see
	// TestBitRotNewestFile).
	if err := s.CreateRun(testConfig("other", dim), testTheta0(2, dim)); err != nil {
		t.Fatal(err)
	}
	appendSteps(t, s, "other", 2, 1, 10)
	for k := 1; k <= 10; k++ {
		if err := s.PutCheckpoint("other", k, forwardTo(2, dim, k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, v := range [][]float32{forwardTo(1, dim, 20), bwd} {
		if f := flipStored(t, dir, v, 1234); f == newestVlog(t, dir) {
			t.Fatalf("the vector is in the newest value-log file %s", f)
		}
	}

	s, err = Open(testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dst := make([]float32, dim)
	var ce *CorruptionError
	err = s.Checkpoint("rot", 20, dst)
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.Run != "rot" || ce.Kind != "checkpoint" || ce.Step != 20 {
		t.Fatalf("Checkpoint(20) of a damaged record: %v", err)
	}
	t.Log(err)
	if _, err := s.NearestCheckpoint("rot", 25, dst); !errors.As(err, &ce) || ce.Step != 20 {
		t.Fatalf("NearestCheckpoint(25): %v", err)
	}
	if ok, err := s.BackwardTheta("rot", 0, 5, dst); ok || !errors.As(err, &ce) || ce.Kind != "backward" || ce.Step != 5 {
		t.Fatalf("BackwardTheta of a damaged record: %v, %v", ok, err)
	}
	// Undamaged neighbours read fine.
	if err := s.Checkpoint("rot", 30, dst); err != nil || !equalBits(dst, forwardTo(1, dim, 30)) {
		t.Fatalf("Checkpoint(30): %v", err)
	}

	rep, err := s.Verify("rot", testReplay)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("verify: %+v", rep)
	if len(rep.Problems) != 2 ||
		!strings.Contains(rep.Problems[0], "checkpoint at step 20 is corrupt") ||
		!strings.Contains(rep.Problems[1], "backward at step 5 is corrupt") {
		t.Fatalf("Verify problems %q", rep.Problems)
	}
	// Checkpoint 30 was checked by replaying 10..30 across the damaged 20.
	if rep.Checkpoints != 4 || rep.Steps != 30 {
		t.Fatalf("Verify checked %d checkpoints and %d steps", rep.Checkpoints, rep.Steps)
	}
	if rep, err := s.Verify("other", testReplay); err != nil || !rep.OK() || rep.Checkpoints != 11 {
		t.Fatalf("Verify of the undamaged run: %+v, %v", rep, err)
	}
}

// TestBitRotNewestFile damages a vector in the newest value-log file, which
// Badger truncates at open: the read must fail (no silent numbers) and
// Verify must say so.
func TestBitRotNewestFile(t *testing.T) {
	dir := t.TempDir()
	const dim = 20_000
	s, err := Open(testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRun(testConfig("rot", dim), testTheta0(1, dim)); err != nil {
		t.Fatal(err)
	}
	appendSteps(t, s, "rot", 1, 1, 10)
	if err := s.PutCheckpoint("rot", 10, forwardTo(1, dim, 10)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	flipStored(t, dir, forwardTo(1, dim, 10), 777)
	// Badger would cut the file at the damage: Open refuses (issue 10,
	// case 4); the salvage open (replayd repair) lets Badger recover.
	var de *DamagedError
	if _, err = Open(testOptions(dir)); !errors.As(err, &de) || de.File != "000001.vlog" {
		t.Fatalf("open of a store with a damaged newest value log: %v, want a DamagedError naming 000001.vlog", err)
	}
	s, err = Open(testOptions(dir).WithSalvage(true))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dst := make([]float32, dim)
	err = s.Checkpoint("rot", 10, dst)
	if err == nil {
		t.Fatal("a damaged checkpoint read without error")
	}
	t.Log(err)
	rep, err := s.Verify("rot", testReplay)
	if err != nil || len(rep.Problems) == 0 {
		t.Fatalf("Verify of a damaged store: %+v, %v", rep, err)
	}
	t.Logf("verify: %q", rep.Problems)
}
