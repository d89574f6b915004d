package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/replay-sgd/replay/api"
)

var waitCmd = command{
	name:     "wait",
	synopsis: "[--run RUN] [--timeout DURATION]",
	summary:  "block until the run is done (exit 0) or failed (exit 1), showing forward and backward progress",
	example:  "replayctl wait --run fmnist --timeout 30m && replayctl plot --run fmnist --out fmnist.png",
	run:      runWait,
}

func runWait(e *env, c *command, args []string) error {
	fs := e.flags(c)
	var name string
	var timeout, interval time.Duration
	fs.StringVar(&name, "run", "", "run name (may be left out when there is exactly one run)")
	fs.DurationVar(&timeout, "timeout", 0, "give up after this long (0: wait forever)")
	fs.DurationVar(&interval, "interval", time.Second, "how often to ask the daemon (default 10s when the output is not a terminal)")
	if err := e.parse(c, fs, args); err != nil {
		return helped(err)
	}
	if err := noArgs(c, fs.Args()); err != nil {
		return err
	}
	if timeout < 0 {
		return usagef("wait: --timeout %v: must not be negative", timeout)
	}
	if interval <= 0 {
		return usagef("wait: --interval %v: must be positive", interval)
	}
	cl := e.client()
	name, err := e.resolveRun(cl, name)
	if err != nil {
		return err
	}

	// Progress: a redrawn bar on a terminal, else one plain line per
	// change. With -o json|csv stdout carries only the final status.
	progress := e.stdout
	if e.g.output != "table" {
		progress = e.stderr
	}
	bar := e.isTerminal(progress)
	if !bar && !fs.Changed("interval") {
		// Plain lines go to logs and pipes: one every ten seconds is
		// enough to follow a run without flooding the file.
		interval = 10 * time.Second
	}
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	last := ""
	for {
		st, err := cl.Status(e.ctx, name)
		if err != nil {
			if bar && last != "" {
				fmt.Fprintln(progress)
			}
			return err
		}
		line := progressLine(st, bar)
		if line != last {
			if bar {
				// Pad to erase a longer previous line.
				pad := max(len(last)-len(line), 0)
				fmt.Fprintf(progress, "\r%s%s", line, strings.Repeat(" ", pad))
			} else {
				fmt.Fprintln(progress, line)
			}
			last = line
		}
		switch st.State {
		case "done", "failed":
			if bar {
				fmt.Fprintln(progress)
			}
			if e.g.output != "table" {
				if err := writeStatuses(e, []api.RunStatus{st}); err != nil {
					return err
				}
			}
			if st.State == "failed" {
				return fmt.Errorf("run %s failed: %s", name, orUnknown(st.Reason))
			}
			return nil
		}
		select {
		case <-tick.C:
		case <-deadline:
			if bar {
				fmt.Fprintln(progress)
			}
			return fmt.Errorf("wait: run %s is still %s after %v (forward %d/%d, backward %d/%d)",
				name, st.State, timeout, st.ForwardStep, st.Steps, st.BackwardStep, st.Steps)
		case <-e.ctx.Done():
			if bar {
				fmt.Fprintln(progress)
			}
			return fmt.Errorf("wait: interrupted (run %s keeps running)", name)
		}
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}

// progressLine describes st in one line, with bars when bar is set.
func progressLine(st api.RunStatus, bar bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: ", st.Name, st.State)
	part := func(label string, n int) {
		if bar {
			fmt.Fprintf(&b, "%s %s %d/%d", label, progressBar(n, st.Steps, 20), n, st.Steps)
		} else {
			fmt.Fprintf(&b, "%s %d/%d (%s)", label, n, st.Steps, percent(n, st.Steps))
		}
	}
	part("forward", st.ForwardStep)
	b.WriteString("  ")
	part("backward", st.BackwardStep)
	if st.OpsPerSec > 0 {
		fmt.Fprintf(&b, "  %s ops/s", rate(st.OpsPerSec))
	}
	if e := eta(st); e != "-" && e != "?" {
		fmt.Fprintf(&b, "  ETA %s", e)
	}
	if len(st.PendingReset) > 0 {
		fmt.Fprintf(&b, "  reset pending at %v", st.PendingReset)
	}
	return b.String()
}

func percent(n, total int) string {
	if total <= 0 {
		return "?%"
	}
	return fmt.Sprintf("%d%%", n*100/total)
}

// progressBar draws [#####.....] of the given width.
func progressBar(n, total, width int) string {
	filled := 0
	if total > 0 {
		filled = min(max(n*width/total, 0), width)
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "]"
}
