package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

var verifyCmd = command{
	name:     "verify",
	synopsis: "[--run RUN] [--repair]",
	summary:  "re-execute the stored batch log between checkpoints and report every mismatch, missing checkpoint or corruption; --repair recomputes missing checkpoints first",
	example:  "replayctl verify --run fmnist --repair",
	run:      runVerify,
}

// errVerify is returned when verify found problems (exit 1 after the report).
var errVerify = errors.New("verify found problems")

func runVerify(e *env, c *command, args []string) error {
	fs := e.flags(c)
	var name string
	fs.StringVar(&name, "run", "", "run name (may be left out when there is exactly one run)")
	var repair bool
	fs.BoolVar(&repair, "repair", false, "recompute missing checkpoints bitwise from the batch log, then verify")
	if err := e.parse(c, fs, args); err != nil {
		return helped(err)
	}
	if err := noArgs(c, fs.Args()); err != nil {
		return err
	}
	cl := e.client()
	name, err := e.resolveRun(cl, name)
	if err != nil {
		return err
	}
	verify := cl.Verify
	if repair {
		verify = cl.Repair
	}
	rep, err := verify(e.ctx, name)
	if err != nil {
		return err
	}
	switch e.g.output {
	case "json":
		if err := writeJSON(e.stdout, rep); err != nil {
			return err
		}
	case "csv":
		w := csv.NewWriter(e.stdout)
		w.Write([]string{"run", "checkpoints", "steps", "ok", "problems"})
		w.Write([]string{rep.Run, itoa(rep.Checkpoints), itoa(rep.Steps), strconv.FormatBool(rep.OK), strings.Join(rep.Problems, "; ")})
		w.Flush()
		if err := w.Error(); err != nil {
			return err
		}
	default:
		verdict := "ok"
		if !rep.OK {
			verdict = fmt.Sprintf("%d problem(s)", len(rep.Problems))
		}
		if len(rep.Repaired) > 0 {
			fmt.Fprintf(e.stdout, "run %s: repaired checkpoints %s\n", name, joinInts(rep.Repaired))
		}
		fmt.Fprintf(e.stdout, "run %s: %d checkpoints, %d steps re-executed: %s\n", name, rep.Checkpoints, rep.Steps, verdict)
		for _, p := range rep.Problems {
			fmt.Fprintf(e.stdout, "  %s\n", p)
		}
	}
	if !rep.OK {
		return fmt.Errorf("%w: run %s: %d problem(s), first: %s", errVerify, name, len(rep.Problems), first(rep.Problems))
	}
	return nil
}

func first(s []string) string {
	if len(s) == 0 {
		return "(none reported)"
	}
	return s[0]
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, " ")
}
