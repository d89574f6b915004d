package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/replay-sgd/replay/api"
)

var statusCmd = command{
	name:     "status",
	synopsis: "[RUN]",
	summary:  "show forward step, backward frontier, anchor, window, strategy, throughput, ETA and losses of every run (or of RUN)",
	example:  "replayctl status\nreplayctl status fmnist -o json",
	run:      runStatus,
}

func runStatus(e *env, c *command, args []string) error {
	name, err := e.parseRunArg(c, args)
	if err != nil {
		return helped(err)
	}
	cl := e.client()
	var runs []api.RunStatus
	if name != "" {
		st, err := cl.Status(e.ctx, name)
		if err != nil {
			return err
		}
		runs = []api.RunStatus{st}
	} else {
		l, err := cl.Runs(e.ctx)
		if err != nil {
			return err
		}
		runs = l.Runs
	}
	return writeStatuses(e, runs)
}

// writeStatuses prints runs in the chosen format. JSON is always
// {"runs":[…]}, also for a single run, so scripts parse one shape.
func writeStatuses(e *env, runs []api.RunStatus) error {
	if runs == nil {
		runs = []api.RunStatus{}
	}
	switch e.g.output {
	case "json":
		return writeJSON(e.stdout, api.RunList{Runs: runs})
	case "csv":
		w := csv.NewWriter(e.stdout)
		w.Write([]string{"name", "state", "steps", "forward_step", "backward_step", "anchor_step", "anchor_from",
			"window", "strategy", "ops_per_sec", "eta_seconds", "forward_loss", "backward_loss", "reason"})
		for _, r := range runs {
			w.Write([]string{r.Name, r.State, itoa(r.Steps), itoa(r.ForwardStep), itoa(r.BackwardStep),
				itoa(r.Anchor.Step), r.Anchor.From, itoa(r.Window), r.Strategy, ftoa(r.OpsPerSec),
				ftoa(r.ETASeconds), optFloat(r.ForwardLoss), optFloat(r.BackwardLoss), r.Reason})
		}
		w.Flush()
		return w.Error()
	}
	if len(runs) == 0 {
		_, err := fmt.Fprintln(e.stdout, "no runs (start one with `replayctl run start --preset quadratic`)")
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tFORWARD\tBACKWARD\tANCHOR\tWINDOW\tSTRATEGY\tOPS/S\tETA\tLOSS FWD\tLOSS BWD")
	for _, r := range runs {
		state := r.State
		if len(r.PendingReset) > 0 {
			state += fmt.Sprintf(" (reset pending at %v)", r.PendingReset)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%d (%s)\t%d\t%s\t%s\t%s\t%s\t%s\n",
			r.Name, state, r.ForwardStep, r.Steps, r.BackwardStep, r.Anchor.Step, r.Anchor.From,
			r.Window, r.Strategy, rate(r.OpsPerSec), eta(r), tableLoss(r.ForwardLoss), tableLoss(r.BackwardLoss))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range runs {
		if r.State == "failed" && r.Reason != "" {
			fmt.Fprintf(e.stdout, "%s failed: %s\n", r.Name, r.Reason)
		}
	}
	return nil
}

// writeJSON writes v indented, with a final newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func itoa(i int) string { return strconv.Itoa(i) }

// ftoa formats a float for CSV: shortest round-trip form, NaN as "NaN".
func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func optFloat(f *float64) string {
	if f == nil {
		return ""
	}
	return ftoa(*f)
}

func tableLoss(f *float64) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.4g", *f)
}

func rate(f float64) string {
	if f <= 0 || math.IsNaN(f) {
		return "-"
	}
	if f >= 100 {
		return fmt.Sprintf("%.0f", f)
	}
	return fmt.Sprintf("%.3g", f)
}

// eta is the remaining time, "-" when finished or unknown.
func eta(r api.RunStatus) string {
	if r.State == "done" || r.State == "failed" {
		return "-"
	}
	if r.ETASeconds <= 0 || math.IsNaN(r.ETASeconds) || math.IsInf(r.ETASeconds, 0) {
		return "?"
	}
	return fmtDuration(time.Duration(r.ETASeconds * float64(time.Second)))
}

// fmtDuration rounds d to what a person reads: 1h02m, 3m04s, 12s.
func fmtDuration(d time.Duration) string {
	switch {
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%ds", int(math.Ceil(d.Seconds())))
	}
}
