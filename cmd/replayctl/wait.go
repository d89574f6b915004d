package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/replay-sgd/replay/api"
)

var waitCmd = command{
	name:     "wait",
	synopsis: "[--run RUN] [--timeout DURATION] [--interval DURATION]",
	summary:  "block until the run is done (exit 0) or failed (exit 1), showing forward and backward progress",
	example:  "replayctl wait --run fmnist --timeout 30m && replayctl plot --run fmnist --out fmnist.png",
	run:      runWait,
}

// defaultLineInterval is how often progress is printed as plain lines (off
// a terminal): enough to follow a run in a log without flooding it.
const defaultLineInterval = 10 * time.Second

func runWait(e *env, c *command, args []string) error {
	fs := e.flags(c)
	var name string
	var timeout, interval time.Duration
	fs.StringVar(&name, "run", "", "run name (may be left out when there is exactly one run)")
	fs.DurationVar(&timeout, "timeout", 0, "give up after this long (0: wait forever)")
	fs.DurationVar(&interval, "interval", defaultLineInterval, "off a terminal, print a progress line at most this often (the end is noticed at once whatever it is)")
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

	// Progress: a redrawn bar on a terminal, else plain lines. With
	// -o json|csv stdout carries only the final status.
	progress := e.stdout
	if e.g.output != "table" {
		progress = e.stderr
	}
	bar := e.isTerminal(progress)
	ctx := e.ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	last := ""
	var printed time.Time
	st, err := follow(ctx, e, cl, name, func(st api.RunStatus, final bool) {
		line := progressLine(st, bar)
		if line == last {
			return
		}
		if bar {
			// Pad to erase a longer previous line.
			pad := max(len(last)-len(line), 0)
			fmt.Fprintf(progress, "\r%s%s", line, strings.Repeat(" ", pad))
		} else {
			if !final && !printed.IsZero() && time.Since(printed) < interval {
				return
			}
			fmt.Fprintln(progress, line)
			printed = time.Now()
		}
		last = line
	})
	if bar && last != "" {
		fmt.Fprintln(progress)
	}
	if err != nil && e.ctx.Err() == nil && ctx.Err() != nil && st.State == "" {
		// The timeout came before the stream's first event (a loaded
		// machine, a short --timeout): one status request says where the
		// run is, so the message names its state rather than nothing.
		qctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		if cur, qerr := cl.Status(qctx, name); qerr == nil {
			st = cur
		}
		cancel()
	}
	switch {
	case err == nil:
	case e.ctx.Err() != nil:
		return fmt.Errorf("wait: interrupted (run %s keeps running)", name)
	case ctx.Err() != nil && st.State == "":
		return fmt.Errorf("wait: no news of run %s from the daemon within %v", name, timeout)
	case ctx.Err() != nil:
		return fmt.Errorf("wait: run %s is still %s after %v (forward %d/%d, backward %d/%d)",
			name, st.State, timeout, st.ForwardStep, st.Steps, st.BackwardStep, st.Steps)
	default:
		return err
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

// errFinished stops an event stream at the run's end.
var errFinished = errors.New("run finished")

// follow reads the event stream of run name until the run is done or
// failed, calling show with the run's status after every event that
// carries one (the first, a snapshot, at once) and with the final status
// (final set). It returns the final status, or the last one known and why
// it stopped: ctx's error, a deleted run, the daemon gone.
func follow(ctx context.Context, e *env, cl *api.Client, name string, show func(st api.RunStatus, final bool)) (api.RunStatus, error) {
	var st api.RunStatus
	err := cl.Events(ctx, name, "", func(ev api.Event) error {
		if ev.Status != nil {
			st = *ev.Status
		}
		switch ev.State() {
		case "done", "failed":
			return errFinished
		case "deleted":
			return fmt.Errorf("run %s was deleted", name)
		}
		if ev.Status != nil {
			show(st, false)
		}
		return nil
	})
	if !errors.Is(err, errFinished) {
		return st, err
	}
	// The done and failed events carry no status; the daemon stores the
	// state before it announces it, so this is the final one.
	fin, err := cl.Status(e.ctx, name)
	if err != nil {
		return st, err
	}
	show(fin, true)
	return fin, nil
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
