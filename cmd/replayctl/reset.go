package main

import (
	"fmt"

	"github.com/replay-sgd/replay/api"
)

var resetCmd = command{
	name:     "reset",
	synopsis: "--at N [--run RUN] [--from forward|backward]",
	summary:  "move the backward anchor of a run to step N (the only run when none is named)",
	example:  "replayctl reset --at 1000\nreplayctl reset --run fmnist --at 1000 --from forward",
	run:      runReset,
}

func runReset(e *env, c *command, args []string) error {
	fs := e.flags(c)
	var name, from string
	var at int
	fs.StringVar(&name, "run", "", "run name (may be left out when there is exactly one run)")
	fs.IntVar(&at, "at", 0, "step of the new anchor (required)")
	fs.StringVar(&from, "from", "backward", "start point at the new anchor: the backward or the forward iterate at N")
	if err := e.parse(c, fs, args); err != nil {
		return helped(err)
	}
	if err := noArgs(c, fs.Args()); err != nil {
		return err
	}
	if !fs.Changed("at") {
		return usagef("reset: --at N is required (see replayctl reset --help)")
	}
	if at < 0 {
		return usagef("reset: --at %d: must not be negative", at)
	}
	if err := oneOf("reset", "from", from, "forward", "backward"); err != nil {
		return err
	}
	cl := e.client()
	name, err := e.resolveRun(cl, name)
	if err != nil {
		return err
	}
	st, err := cl.Reset(e.ctx, name, api.ResetRequest{At: at, From: from})
	if err != nil {
		return err
	}
	if e.g.output == "table" {
		_, err := fmt.Fprintf(e.stdout, "run %s: anchor reset at step %d from the %s iterate (current anchor %d, backward frontier %d)\n",
			name, at, from, st.Anchor.Step, st.BackwardStep)
		return err
	}
	return writeStatuses(e, []api.RunStatus{st})
}
