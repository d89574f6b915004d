package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 10, case 7: the token can come from a file, not the command line
// (/proc/PID/cmdline is world-readable).
func TestAuthTokenFile(t *testing.T) {
	t.Setenv("REPLAYD_TOKEN", "")
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte("s3cret\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseFlags([]string{"--data-dir", t.TempDir(), "--auth-token-file", p}, &bytes.Buffer{})
	if err != nil || c.token != "s3cret" {
		t.Fatalf("--auth-token-file: token %q, %v", c.token, err)
	}
	for _, args := range [][]string{
		{"--auth-token-file", p, "--auth-token", "x"},
		{"--auth-token-file", filepath.Join(t.TempDir(), "missing")},
	} {
		if _, err := parseFlags(append([]string{"--data-dir", t.TempDir()}, args...), &bytes.Buffer{}); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: %v, want one line", args, err)
		}
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := parseFlags([]string{"--data-dir", t.TempDir(), "--auth-token-file", empty}, &bytes.Buffer{}); err == nil {
		t.Error("an empty token file was accepted")
	}
}
