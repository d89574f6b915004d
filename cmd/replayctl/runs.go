package main

import (
	"encoding/csv"
	"fmt"
	"text/tabwriter"

	"github.com/replay-sgd/replay/api"
)

var runsCmd = command{
	name:     "runs",
	synopsis: "",
	summary:  "list runs with their model, data set and progress",
	example:  "replayctl runs\nreplayctl runs -o csv",
	run:      runRuns,
}

func runRuns(e *env, c *command, args []string) error {
	fs := e.flags(c)
	if err := e.parse(c, fs, args); err != nil {
		return helped(err)
	}
	if err := noArgs(c, fs.Args()); err != nil {
		return err
	}
	l, err := e.client().Runs(e.ctx)
	if err != nil {
		return err
	}
	if l.Runs == nil {
		l.Runs = []api.RunStatus{}
	}
	switch e.g.output {
	case "json":
		return writeJSON(e.stdout, l)
	case "csv":
		w := csv.NewWriter(e.stdout)
		w.Write([]string{"name", "state", "preset", "model", "dataset", "lr", "batch", "steps", "forward_step", "backward_step"})
		for _, r := range l.Runs {
			w.Write([]string{r.Name, r.State, r.Spec.Preset, r.Spec.Model, r.Spec.Dataset, ftoa(r.Spec.LR),
				itoa(r.Spec.Batch), itoa(r.Steps), itoa(r.ForwardStep), itoa(r.BackwardStep)})
		}
		w.Flush()
		return w.Error()
	}
	if len(l.Runs) == 0 {
		_, err := fmt.Fprintln(e.stdout, "no runs (start one with `replayctl run start --preset quadratic`)")
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tMODEL\tDATASET\tLR\tBATCH\tFORWARD\tBACKWARD")
	for _, r := range l.Runs {
		// The optimizer beside the learning rate when it is not plain SGD.
		lr := fmt.Sprintf("%g", r.Spec.LR)
		if o := r.Spec.Optimizer; o != "" && o != "sgd" {
			lr += " " + o
		}
		// A run no remote worker can take is marked (`replayctl status
		// RUN` says why).
		state := r.State
		if r.Waiting != "" {
			state += " (backward waits)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d/%d\t%d\n", r.Name, state, r.Spec.Model, r.Spec.Dataset,
			lr, r.Spec.Batch, r.ForwardStep, r.Steps, r.BackwardStep)
	}
	return tw.Flush()
}
