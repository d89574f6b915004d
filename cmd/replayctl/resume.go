package main

import (
	"fmt"

	"github.com/replay-sgd/replay/api"
)

var resumeCmd = command{
	name:     "resume",
	synopsis: "RUN",
	summary:  "resume a paused run where it stopped",
	example:  "replayctl resume fmnist",
	run:      runResume,
}

func runResume(e *env, c *command, args []string) error {
	fs := e.flags(c)
	if err := e.parse(c, fs, args); err != nil {
		return helped(err)
	}
	name, err := oneArg(c, fs.Args())
	if err != nil {
		return err
	}
	cl := e.client()
	// Like --run elsewhere, RUN may be left out when there is one run.
	if name, err = e.resolveRunHint(cl, name, "RUN"); err != nil {
		return err
	}
	st, err := cl.Resume(e.ctx, name)
	if err != nil {
		return err
	}
	if e.g.output == "table" {
		_, err := fmt.Fprintf(e.stdout, "run %s: %s (forward %d/%d, backward %d)\n", st.Name, st.State, st.ForwardStep, st.Steps, st.BackwardStep)
		return err
	}
	return writeStatuses(e, []api.RunStatus{st})
}
