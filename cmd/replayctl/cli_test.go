package main

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
)

func TestHelpOnEveryCommand(t *testing.T) {
	for _, c := range commands() {
		args := append(strings.Fields(c.name), "--help")
		out, _, err := runCLI(args...)
		if err != nil {
			t.Errorf("%s --help: %v", c.name, err)
			continue
		}
		if !strings.Contains(out, "Usage: replayctl "+c.name) || !strings.Contains(out, "Example:\n  replayctl ") ||
			!strings.Contains(out, "--addr") {
			t.Errorf("%s --help lacks usage, example or global flags:\n%s", c.name, out)
		}
		// -h works too.
		if out2, _, err := runCLI(append(strings.Fields(c.name), "-h")...); err != nil || out2 != out {
			t.Errorf("%s -h differs from --help (%v)", c.name, err)
		}
	}
	out, _, err := runCLI("--help")
	if err != nil || !strings.Contains(out, "Commands:") {
		t.Errorf("top help: %v\n%s", err, out)
	}
	for _, c := range commands() {
		if !strings.Contains(out, "  "+c.name+" ") {
			t.Errorf("top help does not list %s", c.name)
		}
	}
	if out2, _, err := runCLI("help", "status"); err != nil || !strings.Contains(out2, "Usage: replayctl status") {
		t.Errorf("help status: %v\n%s", err, out2)
	}
}

func TestUsageErrors(t *testing.T) {
	f := newFake(t, sampleRun("a"))
	cases := [][]string{
		{},
		{"bogus"},
		{"run"},
		{"run", "stop"},
		{"status", "--bogus"},
		{"status", "-o", "xml"},
		{"-o", "yaml", "runs"},
		{"status", "a", "b"},
		{"runs", "extra"},
		{"--bogus", "status"},
	}
	for _, args := range cases {
		_, _, err := f.cli(args...)
		if !errors.Is(err, errUsage) {
			t.Errorf("%q: err %v, want a usage error", args, err)
			continue
		}
		oneLine(t, err)
	}
	if f.mutated() != 0 {
		t.Errorf("usage errors changed the daemon %d times", f.mutated())
	}
}

func TestGlobalFlagsBeforeOrAfter(t *testing.T) {
	f := newFake(t, sampleRun("a"))
	before, _, err := runCLI("--addr", f.addr(), "-o", "json", "status")
	if err != nil {
		t.Fatal(err)
	}
	after, _, err := runCLI("status", "-o", "json", "--addr", f.addr())
	if err != nil {
		t.Fatal(err)
	}
	mixed, _, err := runCLI("-o", "json", "status", "--addr="+f.addr())
	if err != nil {
		t.Fatal(err)
	}
	if before != after || before != mixed || !strings.HasPrefix(before, "{") {
		t.Errorf("outputs differ:\n%s\n%s\n%s", before, after, mixed)
	}
	// A flag after the command overrides one before it.
	out, _, err := runCLI("-o", "csv", "--addr", f.addr(), "status", "-o", "json")
	if err != nil || !strings.HasPrefix(out, "{") {
		t.Errorf("override: %v %s", err, out)
	}
	// $REPLAYD_ADDR is the default.
	t.Setenv("REPLAYD_ADDR", f.addr())
	if out, _, err := runCLI("runs"); err != nil || !strings.Contains(out, "a ") {
		t.Errorf("REPLAYD_ADDR: %v %s", err, out)
	}
}

func TestToken(t *testing.T) {
	f := newFake(t, sampleRun("a"))
	f.token = "s3cret"
	_, _, err := f.cli("runs")
	oneLine(t, err)
	if !strings.Contains(err.Error(), "bearer token") {
		t.Errorf("no token: %v", err)
	}
	if _, _, err := f.cli("runs", "--token", "s3cret"); err != nil {
		t.Errorf("--token: %v", err)
	}
	t.Setenv("REPLAYD_TOKEN", "s3cret")
	if _, _, err := f.cli("runs"); err != nil {
		t.Errorf("REPLAYD_TOKEN: %v", err)
	}
}

func TestDaemonNotRunning(t *testing.T) {
	dir, err := os.MkdirTemp("", "rctl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "replayd.sock")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp := ln.Addr().String()
	ln.Close()
	out := filepath.Join(dir, "x.safetensors")
	cmds := [][]string{
		{"runs"}, {"status"}, {"status", "r"}, {"run", "start", "--preset", "quadratic"}, {"reset", "--at", "3"},
		{"trajectory"}, {"export", "--step", "0", "--kind", "forward", "--out", out}, {"wait", "--run", "r"},
		{"plot", "--out", filepath.Join(dir, "p.png")}, {"pause", "r"}, {"resume", "r"}, {"delete", "r"}, {"verify"},
	}
	for _, addr := range []string{"unix:" + sock, tcp} {
		for _, args := range cmds {
			_, _, err := runCLI(append(args, "--addr", addr)...)
			if !errors.Is(err, api.ErrUnreachable) || errors.Is(err, errUsage) {
				t.Errorf("%q at %s: err %v, want unreachable", args, addr, err)
				continue
			}
			oneLine(t, err)
			if !strings.Contains(err.Error(), "replayd is not running at "+addr) || !strings.Contains(err.Error(), "start it with `replayd") {
				t.Errorf("%q: message %q does not name the address and how to start replayd", args, err)
			}
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed commands left files: %v", ents)
	}
	// The default address is the daemon's default socket.
	t.Setenv("REPLAYD_ADDR", "")
	t.Setenv("REPLAYD_DATA_DIR", dir)
	_, _, err = runCLI("status")
	if err == nil || !strings.Contains(err.Error(), "at unix:"+sock+": start it with `replayd`,") {
		t.Errorf("default address: %v", err)
	}
}

func TestResolveRun(t *testing.T) {
	f := newFake(t)
	_, _, err := f.cli("reset", "--at", "1")
	oneLine(t, err)
	if !strings.Contains(err.Error(), "no runs") {
		t.Errorf("no runs: %v", err)
	}
	f = newFake(t, sampleRun("b"), sampleRun("a"), sampleRun("c"))
	_, _, err = f.cli("pause")
	if !errors.Is(err, errUsage) || !strings.HasSuffix(err.Error(), "3 runs exist (a, b, c): choose one with RUN") {
		t.Errorf("pause: %v", err)
	}
	for _, args := range [][]string{{"reset", "--at", "1"}, {"trajectory"}, {"verify"}, {"wait"}, {"plot", "--out", filepath.Join(t.TempDir(), "p.png")},
		{"export", "--batches", "--out", filepath.Join(t.TempDir(), "b.npy")}} {
		_, _, err = f.cli(args...)
		oneLine(t, err)
		if !strings.Contains(err.Error(), "3 runs exist (a, b, c): choose one with --run NAME") {
			t.Errorf("%q: %v", args, err)
		}
	}
	if f.mutated() != 0 {
		t.Errorf("ambiguous commands changed the daemon")
	}
}
