package main

import (
	"context"
	"fmt"

	"github.com/replay-sgd/replay/api"
)

var pauseCmd = command{
	name:     "pause",
	synopsis: "RUN",
	summary:  "pause a run's forward training and backward jobs (state is kept on disk)",
	example:  "replayctl pause fmnist",
	run:      stateChange((*api.Client).Pause),
}

// stateChange is the body of pause and resume: one API call on RUN, then
// the run's new state.
func stateChange(call func(*api.Client, context.Context, string) (api.RunStatus, error)) func(*env, *command, []string) error {
	return func(e *env, c *command, args []string) error {
		name, err := e.parseRunArg(c, args)
		if err != nil {
			return helped(err)
		}
		cl := e.client()
		// Like --run elsewhere, RUN may be left out when there is one run.
		if name, err = e.resolveRunHint(cl, name, "RUN"); err != nil {
			return err
		}
		st, err := call(cl, e.ctx, name)
		if err != nil {
			return err
		}
		if e.g.output == "table" {
			_, err := fmt.Fprintf(e.stdout, "run %s: %s (forward %d/%d, backward %d)\n", st.Name, st.State, st.ForwardStep, st.Steps, st.BackwardStep)
			return err
		}
		return writeStatuses(e, []api.RunStatus{st})
	}
}
