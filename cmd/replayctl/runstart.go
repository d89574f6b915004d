package main

import (
	"fmt"

	"github.com/replay-sgd/replay/api"
)

var runStartCmd = command{
	name: "run start",
	synopsis: "[--name N] [--preset P] [--dataset D] [--data-path DIR] [--model SPEC] [--lr F] [--batch N] [--steps N]\n" +
		"                         [--seed N] [--window N] [--strategy S] [--reset-at N] [--reset-from forward|backward]\n" +
		"                         [--reset-policy fixed|improve] [--backward-from N] [--eval-every N] [--eval-size N]\n" +
		"                         [--checkpoint-every N]",
	summary: "create and start a run; explicit flags override the preset's values",
	example: "replayctl run start --preset fmnist-mlp --name fmnist --steps 5000 --window 256\n" +
		"replayctl run start --preset quadratic --lr 0.05 --reset-at 100 --reset-at 200",
	run: runRunStart,
}

func runRunStart(e *env, c *command, args []string) error {
	fs := e.flags(c)
	var spec api.RunSpec
	var seed uint64
	fs.StringVar(&spec.Name, "name", "", "run name (default chosen by the daemon)")
	fs.StringVar(&spec.Preset, "preset", "", "preset: quadratic, regression, fmnist-mlp, paper-fig3, fmnist-linear")
	fs.StringVar(&spec.Dataset, "dataset", "", "data set: fashion-mnist, regression-sin, regression-x2, regression-abs, quadratic")
	fs.StringVar(&spec.DataPath, "data-path", "", "directory of the data set's files (Fashion-MNIST IDX)")
	fs.StringVar(&spec.Model, "model", "", "model: mlp:WIDTHxDEPTH (e.g. mlp:500x5, mlp:32), linear, scalar")
	fs.StringVar(&spec.Init, "init", "", "initialisation: he, lecun, glorot, torch")
	fs.StringVar(&spec.Loss, "loss", "", "loss: cross-entropy, mse, quadratic")
	fs.Float64Var(&spec.LR, "lr", 0, "learning rate")
	fs.IntVar(&spec.Batch, "batch", 0, "batch size")
	fs.IntVar(&spec.Steps, "steps", 0, "number of forward steps")
	fs.Uint64Var(&seed, "seed", 0, "random seed (initialisation, batch order)")
	fs.IntVar(&spec.Window, "window", 0, "backward window W: the anchor moves when n − r would exceed W")
	fs.StringVar(&spec.Strategy, "strategy", "", "backward strategy: window, sliding, full, memo")
	fs.IntSliceVar(&spec.ResetAt, "reset-at", nil, "move the anchor at these steps (repeat or comma-separate)")
	fs.StringVar(&spec.ResetFrom, "reset-from", "", "anchor start point at a reset: forward or backward")
	fs.StringVar(&spec.ResetPolicy, "reset-policy", "", "fixed, or improve (keep a new anchor only if it evaluates better)")
	fs.IntVar(&spec.ResetHorizon, "reset-horizon", 0, "steps over which the improve policy compares anchors")
	fs.IntVar(&spec.BackwardFrom, "backward-from", 0, "first step with a backward iterate")
	fs.IntVar(&spec.EvalEvery, "eval-every", 0, "evaluate test loss and accuracy every N steps")
	fs.IntVar(&spec.EvalSize, "eval-size", 0, "size of the fixed evaluation subset")
	fs.IntVar(&spec.CheckpointEvery, "checkpoint-every", 0, "store a forward checkpoint every N steps")
	if err := e.parse(c, fs, args); err != nil {
		return helped(err)
	}
	if err := noArgs(c, fs.Args()); err != nil {
		return err
	}
	if fs.Changed("seed") {
		spec.Seed = &seed // an explicit 0 is a seed, not "the default"
	}
	// Zero means "the preset's value" on the wire, so an explicit zero or a
	// negative number cannot be what the user meant: say so here rather
	// than have it silently replaced by a default.
	for _, f := range []string{"batch", "steps", "window", "eval-every", "eval-size", "checkpoint-every", "reset-horizon"} {
		if fs.Changed(f) {
			if v, _ := fs.GetInt(f); v <= 0 {
				return usagef("run start: --%s %d: must be positive", f, v)
			}
		}
	}
	if fs.Changed("lr") && !(spec.LR > 0) {
		return usagef("run start: --lr %g: must be positive", spec.LR)
	}
	if fs.Changed("backward-from") && spec.BackwardFrom < 0 {
		return usagef("run start: --backward-from %d: must not be negative", spec.BackwardFrom)
	}
	for _, r := range spec.ResetAt {
		if r <= 0 {
			return usagef("run start: --reset-at %d: must be a positive step", r)
		}
	}
	if err := oneOf("run start", "reset-from", spec.ResetFrom, "", "forward", "backward"); err != nil {
		return err
	}
	if err := oneOf("run start", "reset-policy", spec.ResetPolicy, "", "fixed", "improve"); err != nil {
		return err
	}
	st, err := e.client().CreateRun(e.ctx, spec)
	if err != nil {
		return err
	}
	if e.g.output == "table" {
		fmt.Fprintf(e.stdout, "started run %s: %s on %s, lr %g, batch %d, %d steps, window %d (%s)\n",
			st.Name, st.Spec.Model, st.Spec.Dataset, st.Spec.LR, st.Spec.Batch, st.Steps, st.Window, st.Strategy)
		return nil
	}
	return writeStatuses(e, []api.RunStatus{st})
}

// oneOf checks an enumerated flag value.
func oneOf(cmd, flag, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	list := ""
	for _, a := range allowed {
		if a != "" {
			if list != "" {
				list += " or "
			}
			list += a
		}
	}
	return usagef("%s: --%s %q: want %s", cmd, flag, v, list)
}
