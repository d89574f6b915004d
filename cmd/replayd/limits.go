package main

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// The per-run limits of admission control (scheduler.Options.MaxRunMemory,
// MaxRunDisk) default to what the machine can give one run:
//
//   - memory: half the machine's memory (MemTotal of /proc/meminfo), and at
//     most 4 × --memory-limit (at least 1 GiB) when a soft heap limit is
//     set: a run much larger than the soft limit makes the collector run
//     back to back (Go caps it at half the CPU), so it is refused rather
//     than crawled through; raise --memory-limit or --max-run-memory for it;
//   - disk: half the space free to unprivileged users on the data
//     directory's file system when the daemon starts.
//
// A limit the machine cannot tell (no /proc/meminfo) is 0: none.

// limitRule is the flag help's statement of the defaults.
const (
	memoryRule = "most memory one run may need (estimate at creation; 0: none) (default half the machine's memory, at most 4 × --memory-limit but ≥ 1 GiB)"
	diskRule   = "most disk one run may need (estimate at creation; 0: none) (default half the free space of --data-dir at start)"
)

// defaultRunMemory is the default of --max-run-memory for a machine of
// total bytes and a soft heap limit of memLimitMiB (≤ 0: none).
func defaultRunMemory(total int64, memLimitMiB int) int64 {
	if total <= 0 {
		return 0
	}
	lim := total / 2
	if memLimitMiB > 0 {
		lim = min(lim, max(4*int64(memLimitMiB)<<20, 1<<30))
	}
	return lim
}

// defaultRunDisk is the default of --max-run-disk for free bytes.
func defaultRunDisk(free int64) int64 { return max(0, free/2) }

// totalMemory reads MemTotal from /proc/meminfo (0 if unknown).
func totalMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "MemTotal:       24592948 kB"
		fs := strings.Fields(sc.Text())
		if len(fs) == 3 && fs[0] == "MemTotal:" && fs[2] == "kB" {
			if kb, err := strconv.ParseInt(fs[1], 10, 64); err == nil && kb > 0 {
				return kb << 10
			}
		}
	}
	return 0
}

// freeDisk is the space free to unprivileged users on dir's file system.
func freeDisk(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// byteSize is a pflag.Value of a size in bytes: a number with an optional
// binary (KiB, MiB, GiB, TiB) or decimal (KB, MB, GB, TB) unit, or K, M, G,
// T read as binary. set tells a given flag from its default.
type byteSize struct {
	n   int64
	set bool
}

func (b *byteSize) String() string {
	if !b.set {
		return "" // derived at start; the flag's help states the rule
	}
	return strconv.FormatInt(b.n, 10)
}

func (b *byteSize) Type() string { return "bytes" }

func (b *byteSize) Set(s string) error {
	n, err := parseBytes(s)
	if err != nil {
		return err
	}
	b.n, b.set = n, true
	return nil
}

var units = []struct {
	suffix string
	mult   float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1},
}

func parseBytes(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), 1.0
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("size %q: want a number of bytes ≥ 0 with an optional unit (512MiB, 8GiB, 2GB)", s)
	}
	if v*mult >= math.MaxInt64 {
		return 0, errors.New("size " + strconv.Quote(s) + ": too large")
	}
	return int64(v * mult), nil
}
