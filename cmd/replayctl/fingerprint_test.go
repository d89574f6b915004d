package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// TestStatusNotBitwise: a run of fingerprint any gets a "not bitwise" line
// under the table and bitwise false in CSV; a bitwise run neither.
func TestStatusNotBitwise(t *testing.T) {
	a, b := sampleRun("anyfp"), sampleRun("bits")
	a.Spec.Fingerprint, a.Bitwise = api.FingerprintAny, false
	b.Bitwise = true
	f := newFake(t, a, b)
	out, _, err := f.cli("status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "\nanyfp: not bitwise") || strings.Contains(out, "bits: not bitwise") {
		t.Errorf("status: want the any run (only) noted not bitwise:\n%s", out)
	}
	out, _, err = f.cli("status", "-o", "csv")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) != 3 {
		t.Fatalf("status -o csv: %v\n%s", err, out)
	}
	col := slices.Index(rows[0], "bitwise")
	if col < 0 || rows[1][col] != "false" || rows[2][col] != "true" {
		t.Errorf("status -o csv: want a bitwise column, false then true:\n%s", out)
	}
}

// TestRunStartFingerprint: --fingerprint any is sent; another value is a
// usage error that changes nothing.
func TestRunStartFingerprint(t *testing.T) {
	f := newFake(t)
	if _, _, err := f.cli("run", "start", "--preset", "quadratic", "--fingerprint", "bogus"); !errors.Is(err, errUsage) {
		t.Errorf("--fingerprint bogus: %v, want a usage error", err)
	}
	if f.mutated() != 0 {
		t.Errorf("a refused --fingerprint changed the daemon %d times", f.mutated())
	}
	if _, _, err := f.cli("run", "start", "--preset", "quadratic", "--name", "q", "--fingerprint", "any"); err != nil {
		t.Fatal(err)
	}
	var spec api.RunSpec
	if len(f.bodies) != 1 || json.Unmarshal([]byte(f.bodies[0]), &spec) != nil || spec.Fingerprint != api.FingerprintAny {
		t.Errorf("sent %q, want fingerprint any", f.bodies)
	}
}
