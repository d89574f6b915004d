package main

import (
	"encoding/csv"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
)

var modelsCmd = command{
	name:     "models",
	synopsis: "",
	summary:  "list the external models registered at the daemon's start (replayd --torch-model, --model-cmd): name, tensors, data set sizes, fingerprint",
	example:  "replayctl models -o json",
	run:      runModels,
}

func runModels(e *env, c *command, args []string) error {
	fs := e.flags(c)
	if err := e.parse(c, fs, args); err != nil {
		return helped(err)
	}
	if err := noArgs(c, fs.Args()); err != nil {
		return err
	}
	l, err := e.client().Models(e.ctx)
	if err != nil {
		return err
	}
	switch e.g.output {
	case "json":
		return writeJSON(e.stdout, l)
	case "csv":
		// One row per tensor.
		w := csv.NewWriter(e.stdout)
		w.Write([]string{"model", "tensor", "shape", "dtype", "param", "train", "test", "classes"})
		for _, m := range l.Models {
			for _, t := range m.Tensors {
				w.Write([]string{m.Name, t.Name, shapeString(t.Shape), t.DType, fmt.Sprint(t.Param), itoa(m.Train), itoa(m.Test), itoa(m.Classes)})
			}
		}
		w.Flush()
		return w.Error()
	}
	if len(l.Models) == 0 {
		fmt.Fprintln(e.stdout, "no external models: start replayd with --torch-model NAME=FILE.py or --model-cmd NAME=CMD")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tTENSORS\tTHETA\tTRAIN\tTEST\tCLASSES\tFINGERPRINT")
	for _, m := range l.Models {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", m.Name, len(m.Tensors), m.Theta, m.Train, m.Test, m.Classes, clipRunes(fingerprintString(m.Fingerprint), 72))
		for _, t := range m.Tensors {
			kind := "buffer"
			if t.Param {
				kind = "param"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s %s\t\t\t\t\n", t.Name, shapeString(t.Shape), t.DType, kind)
		}
	}
	return tw.Flush()
}

// shapeString is a tensor shape as [d0,d1,…] ([] for a scalar).
func shapeString(shape []int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = itoa(d)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// clipRunes cuts s to at most n runes, marking a cut with "…" (the table
// stays readable; -o json has the whole fingerprint).
func clipRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// fingerprintString is a fingerprint as sorted k=v pairs, the keys that
// tell runtimes apart (torch, threads, device) first.
func fingerprintString(fp map[string]string) string {
	keys := make([]string, 0, len(fp))
	for k := range fp {
		keys = append(keys, k)
	}
	rank := func(k string) int {
		if i := slices.Index([]string{"torch", "threads", "device"}, k); i >= 0 {
			return i
		}
		return 3
	}
	slices.SortFunc(keys, func(a, b string) int {
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra - rb
		}
		return strings.Compare(a, b)
	})
	for i, k := range keys {
		keys[i] = k + "=" + fp[k]
	}
	return strings.Join(keys, " ")
}
