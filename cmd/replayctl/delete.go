package main

import (
	"fmt"
)

var deleteCmd = command{
	name:     "delete",
	synopsis: "RUN",
	summary:  "stop a run and delete all its data (checkpoints, batch log, iterates); RUN is required",
	example:  "replayctl delete fmnist",
	run:      runDelete,
}

func runDelete(e *env, c *command, args []string) error {
	name, err := e.parseRunArg(c, args)
	if err != nil {
		return helped(err)
	}
	// Deleting is not undoable: unlike the other commands, the run is
	// never guessed.
	if name == "" {
		return usagef("delete: RUN is required (see replayctl delete --help)")
	}
	if err := e.client().Delete(e.ctx, name); err != nil {
		return err
	}
	switch e.g.output {
	case "json":
		return writeJSON(e.stdout, map[string]any{"deleted": name})
	case "csv":
		return writeCSV(e.stdout, []string{"deleted"}, []string{name})
	}
	_, err = fmt.Fprintf(e.stdout, "deleted run %s\n", name)
	return err
}
