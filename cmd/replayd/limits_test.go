package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "512": 512, "8GiB": 8 << 30, "8G": 8 << 30, "2GB": 2e9, "1.5MiB": 3 << 19, "100 KiB": 100 << 10, "7B": 7,
	} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "GiB", "1XB", "1e30TiB", "NaN"} {
		if _, err := parseBytes(bad); err == nil {
			t.Errorf("parseBytes(%q): no error", bad)
		}
	}
}

// The rule the flag help states: half the machine, at most 4 × the soft
// heap limit but at least 1 GiB; half the free disk.
func TestDefaultLimits(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		total   int64
		limMiB  int
		wantMem int64
	}{
		{24 * gib, 256, 1 * gib},  // 4 × 256 MiB = 1 GiB
		{24 * gib, 1024, 4 * gib}, // 4 × 1 GiB
		{24 * gib, 0, 12 * gib},   // no soft limit: half the machine
		{24 * gib, -1, 12 * gib},  // GOMEMLIMIT decides: half the machine
		{1 * gib, 4096, gib / 2},  // never more than half the machine
		{0, 256, 0},               // unknown machine: no limit
	} {
		if got := defaultRunMemory(c.total, c.limMiB); got != c.wantMem {
			t.Errorf("defaultRunMemory(%d, %d) = %d, want %d", c.total, c.limMiB, got, c.wantMem)
		}
	}
	if got := defaultRunDisk(79 * gib); got != 79*gib/2 {
		t.Errorf("defaultRunDisk = %d", got)
	}
	if totalMemory() <= 0 {
		t.Error("no MemTotal in /proc/meminfo")
	}
	if free, err := freeDisk(t.TempDir()); err != nil || free <= 0 {
		t.Errorf("freeDisk: %d %v", free, err)
	}
}

func TestLimitFlags(t *testing.T) {
	c, err := parseFlags([]string{"--data-dir", t.TempDir(), "--max-run-memory", "2GiB", "--max-run-disk", "0", "--query-slots", "2"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if mem, disk, err := runLimits(c); err != nil || mem != 2<<30 || disk != 0 || c.querySlots != 2 {
		t.Fatalf("limits %d %d %v, slots %d", mem, disk, err, c.querySlots)
	}
	c, _ = parseFlags([]string{"--data-dir", t.TempDir()}, &bytes.Buffer{})
	if mem, disk, err := runLimits(c); err != nil || mem <= 0 || disk <= 0 {
		t.Fatalf("derived limits %d %d %v", mem, disk, err)
	}
	for _, args := range [][]string{{"--max-run-memory", "lots"}, {"--query-slots", "0"}} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	var help bytes.Buffer
	parseFlags([]string{"--help"}, &help)
	for _, want := range []string{"--max-run-memory", "4 × --memory-limit", "--max-run-disk", "half the free space", "--query-slots"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}
