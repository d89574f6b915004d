package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/replay-sgd/replay/api"
)

var statusCmd = command{
	name:     "status",
	synopsis: "[RUN] [--watch [--interval DURATION]]",
	summary:  "show forward step, backward frontier, anchor, window, strategy, throughput, ETA and losses of every run (or of RUN)",
	example:  "replayctl status\nreplayctl status fmnist -o json\nreplayctl status fmnist --watch",
	run:      runStatus,
}

func runStatus(e *env, c *command, args []string) error {
	fs := e.flags(c)
	var watch bool
	var interval time.Duration
	boolFlag(fs, &watch, "watch", "w", "follow the run (RUN, or the only run) until it is done or failed, as its events arrive")
	fs.DurationVar(&interval, "interval", defaultLineInterval, "with --watch off a terminal, print at most this often")
	if err := e.parse(c, fs, args); err != nil {
		return helped(err)
	}
	name, err := oneArg(c, fs.Args())
	if err != nil {
		return err
	}
	if fs.Changed("interval") && !watch {
		return usagef("status: --interval needs --watch")
	}
	if interval <= 0 {
		return usagef("status: --interval %v: must be positive", interval)
	}
	cl := e.client()
	if watch {
		return watchStatus(e, cl, name, interval)
	}
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

// watchStatus prints the status of one run at every event that changes it
// until the run is done (nil) or failed (an error: exit 1). On a terminal
// the table is redrawn in place; elsewhere a new status is printed at most
// every interval, and the last one always. JSON is one {"runs":[…]} object
// a line; CSV has its header once.
func watchStatus(e *env, cl *api.Client, name string, interval time.Duration) error {
	name, err := e.resolveRunHint(cl, name, "RUN")
	if err != nil {
		return err
	}
	term := e.isTerminal(e.stdout)
	var printed time.Time
	lastLines, last, header := 0, "", true
	st, err := follow(e.ctx, e, cl, name, func(st api.RunStatus, final bool) {
		var buf bytes.Buffer
		sub := *e
		sub.stdout = &buf
		if e.g.output == "json" {
			b, _ := json.Marshal(api.RunList{Runs: []api.RunStatus{st}})
			buf.Write(append(b, '\n'))
		} else if err := writeStatuses(&sub, []api.RunStatus{st}); err != nil {
			return
		}
		out := buf.String()
		if e.g.output == "csv" && !header {
			_, out, _ = strings.Cut(out, "\n")
		}
		if out == last || !final && !term && !printed.IsZero() && time.Since(printed) < interval {
			return
		}
		if term && e.g.output == "table" && lastLines > 0 {
			fmt.Fprintf(e.stdout, "\x1b[%dA\x1b[J", lastLines) // up over the previous table, clear
		}
		io.WriteString(e.stdout, out)
		last, header, printed = out, false, time.Now()
		lastLines = strings.Count(out, "\n")
	})
	switch {
	case err == nil:
	case e.ctx.Err() != nil:
		return nil // interrupted: watching is stopped with Ctrl-C
	default:
		return err
	}
	if st.State == "failed" {
		return fmt.Errorf("run %s failed: %s", name, orUnknown(st.Reason))
	}
	return nil
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
			"window", "strategy", "ops_per_sec", "eta_seconds", "forward_loss", "backward_loss", "reason", "bitwise", "optimizer", "waiting"})
		for _, r := range runs {
			w.Write([]string{r.Name, r.State, itoa(r.Steps), itoa(r.ForwardStep), itoa(r.BackwardStep),
				itoa(r.Anchor.Step), r.Anchor.From, itoa(r.Window), r.Strategy, ftoa(r.OpsPerSec),
				ftoa(r.ETASeconds), optFloat(r.ForwardLoss), optFloat(r.BackwardLoss), r.Reason, strconv.FormatBool(r.Bitwise),
				optimizerName(r.Spec.Optimizer), r.Waiting})
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
		if o := optimizerLine(r.Spec); o != "" {
			fmt.Fprintf(e.stdout, "%s: %s\n", r.Name, o)
		}
	}
	for _, r := range runs {
		if r.Spec.Fingerprint == api.FingerprintAny {
			fmt.Fprintf(e.stdout, "%s: not bitwise (fingerprint %s: remote workers of every machine kind compute it, unchecked)\n", r.Name, orUnknown(r.Spec.Fingerprint))
		}
	}
	for _, r := range runs {
		if r.Waiting != "" {
			fmt.Fprintf(e.stdout, "%s: backward waits: %s\n", r.Name, r.Waiting)
		}
	}
	for _, r := range runs {
		if r.State == "failed" && r.Reason != "" {
			fmt.Fprintf(e.stdout, "%s failed: %s\n", r.Name, r.Reason)
		}
	}
	return nil
}

// optimizerLine describes a run's optimizer and the settings that apply to
// it, or "" for plain SGD without weight decay (the table's default, so
// that the common case stays one line per run).
func optimizerLine(s api.RunSpec) string {
	wd := s.WeightDecay != nil && *s.WeightDecay != 0
	if (s.Optimizer == "" || s.Optimizer == "sgd") && !wd {
		return ""
	}
	out := "optimizer " + s.Optimizer
	for _, f := range []struct {
		name string
		v    *float64
	}{{"momentum", s.Momentum}, {"dampening", s.Dampening}, {"beta1", s.Beta1}, {"beta2", s.Beta2}, {"eps", s.Eps}, {"weight_decay", s.WeightDecay}} {
		if f.v != nil {
			out += fmt.Sprintf(" %s=%g", f.name, *f.v)
		}
	}
	return out
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

// optimizerName is the run's optimizer for CSV: "sgd" for a run stored
// before optimizers were recorded.
func optimizerName(o string) string {
	if o == "" {
		return "sgd"
	}
	return o
}
