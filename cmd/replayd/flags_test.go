package main

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestFlagDefaults(t *testing.T) {
	t.Setenv("REPLAYD_DATA_DIR", "")
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("REPLAYD_TOKEN", "")
	t.Setenv("HOME", "/home/someone")
	c, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.dataDir != "/home/someone/.local/state/replayd" || c.listen != "" || c.token != "" ||
		c.window != 256 || c.workers != runtime.NumCPU() || c.logLevel != slog.LevelInfo || c.logFormat != "text" {
		t.Fatalf("defaults: %+v", c)
	}
	t.Setenv("XDG_STATE_HOME", "/xdg")
	if c, _ := parseFlags(nil, &bytes.Buffer{}); c.dataDir != "/xdg/replayd" {
		t.Fatalf("XDG_STATE_HOME: data dir %q", c.dataDir)
	}
	t.Setenv("REPLAYD_DATA_DIR", "/env/dir")
	t.Setenv("REPLAYD_TOKEN", "tok")
	if c, _ := parseFlags(nil, &bytes.Buffer{}); c.dataDir != "/env/dir" || c.token != "tok" {
		t.Fatalf("environment: %+v", c)
	}
	c, err = parseFlags([]string{"--data-dir", "rel", "--auth-token=flag", "--window", "16", "--workers=3",
		"--log-level", "debug", "--log-format", "json", "--run-preset", "quadratic"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("rel")
	if c.dataDir != abs || c.token != "flag" || c.window != 16 || c.workers != 3 ||
		c.logLevel != slog.LevelDebug || c.logFormat != "json" || c.runPreset != "quadratic" {
		t.Fatalf("flags: %+v", c)
	}
}

func TestBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"--window", "0"}, "--window 0"},
		{[]string{"--window", "x"}, "invalid argument"},
		{[]string{"--workers", "0"}, "--workers 0"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--log-format", "xml"}, "--log-format"},
		{[]string{"--max-lag", "-1"}, "--max-lag"},
		{[]string{"--memory-limit", "-5"}, "--memory-limit -5"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"--auth-token", "a b"}, "white space"},
		{[]string{"--window", "0", "--workers", "0"}, "--window 0: must be ≥ 1; --workers 0"},
	} {
		_, err := parseFlags(c.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want one line containing %q", c.args, err, c.want)
		}
		// run reports the same error and starts nothing.
		var stdout, stderr bytes.Buffer
		if err := run(c.args, &stdout, &stderr); err == nil || stdout.Len()+stderr.Len() > 0 {
			t.Errorf("run %v: err %v, output %q %q", c.args, err, stdout.String(), stderr.String())
		}
	}
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseFlags([]string{"--help"}, &out); !errors.Is(err, pflag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, want := range []string{"Usage: replayd", "--data-dir", "--listen", "--window", "--run-preset", "Examples:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := run([]string{"-h"}, &out, &bytes.Buffer{}); err != nil || !strings.Contains(out.String(), "Usage") {
		t.Fatalf("run -h: %v %q", err, out.String())
	}
}

// TestMemoryLimit: the soft heap limit defaults to defaultMemLimitMiB, a flag
// changes it, and GOMEMLIMIT (the Go runtime's own knob) wins over both.
func TestMemoryLimit(t *testing.T) {
	t.Setenv("REPLAYD_DATA_DIR", t.TempDir())
	if c, err := parseFlags(nil, &bytes.Buffer{}); err != nil || c.memLimitMiB != defaultMemLimitMiB {
		t.Fatalf("default: %d, %v", c.memLimitMiB, err)
	}
	if c, err := parseFlags([]string{"--memory-limit", "0"}, &bytes.Buffer{}); err != nil || c.memLimitMiB != 0 {
		t.Fatalf("--memory-limit 0: %d, %v", c.memLimitMiB, err)
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	if c, err := parseFlags([]string{"--memory-limit", "100"}, &bytes.Buffer{}); err != nil || c.memLimitMiB != -1 {
		t.Fatalf("with GOMEMLIMIT: %d, %v", c.memLimitMiB, err)
	}
}
